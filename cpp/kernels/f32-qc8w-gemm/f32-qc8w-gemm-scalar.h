// Template for the portable {MR}x16 qc8w GEMM microkernels, for armv6 and every CPU: 4-column groups of
// MR x 4 accumulators, int8 weights converted one by one, the per-column scale applied once at the end
// (contract: microkernels.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/gemm-tile-rows.h"

namespace onnxstream {

template <int MR>
inline void qc8w_gemm_scalar(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w,
                             const float* scale, float* c, size_t c_stride, const float* bias, int accumulate) {
  const float* ar[MR];
  float* cr[MR];
  gemm_tile_rows<MR>(mr, a, a_stride, c, c_stride, ar, cr);
  const int8_t* wp = static_cast<const int8_t*>(w);  // [kc][16] int8
  for (size_t j0 = 0; j0 < nc; j0 += 4) {
    float acc[MR][4] = {};
    for (size_t k = 0; k < kc; k++) {
      float b[4];
      for (int j = 0; j < 4; j++) b[j] = (float)wp[k * 16 + j0 + j];
      for (int i = 0; i < MR; i++) {
        const float av = ar[i][k];
        for (int j = 0; j < 4; j++) acc[i][j] += av * b[j];
      }
    }
    // All rows' c are read before any is written: rows past mr alias the last real row.
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < 4 && j0 + j < nc; j++) {
        const size_t col = j0 + j;
        acc[i][j] = (accumulate ? cr[i][col] : bias ? bias[col] : 0.0f) + scale[col] * acc[i][j];
      }
    for (int i = MR - 1; i >= 0; i--)
      for (int j = 0; j < 4 && j0 + j < nc; j++) cr[i][j0 + j] = acc[i][j];
  }
}

}  // namespace onnxstream
