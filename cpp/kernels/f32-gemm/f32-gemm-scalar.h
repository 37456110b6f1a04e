// Template for the portable {MR}x16 GEMM microkernels (f32-gemm and f32-f16w-gemm), for armv6 and every CPU.
// The 16-column panel is walked in groups of 4 columns so MR x 4 accumulators fit in registers (VFP has 32).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/gemm-tile-rows.h"

#include "half.h"

namespace onnxstream {

template <int MR, bool kF16Weights>
inline void gemm_scalar(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w, float* c,
                        size_t c_stride, const float* bias, int accumulate) {
  const float* ar[MR];
  float* cr[MR];
  gemm_tile_rows<MR>(mr, a, a_stride, c, c_stride, ar, cr);
  for (size_t j0 = 0; j0 < nc; j0 += 4) {
    float acc[MR][4];
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < 4; j++) {
        size_t col = j0 + j;
        acc[i][j] = col >= nc ? 0.0f : accumulate ? cr[i][col] : bias ? bias[col] : 0.0f;
      }
    for (size_t k = 0; k < kc; k++) {
      float b[4];
      for (int j = 0; j < 4; j++) {
        if (kF16Weights) b[j] = half_to_float(static_cast<const uint16_t*>(w)[k * 16 + j0 + j]);
        else b[j] = static_cast<const float*>(w)[k * 16 + j0 + j];
      }
      for (int i = 0; i < MR; i++) {
        const float av = ar[i][k];
        for (int j = 0; j < 4; j++) acc[i][j] += av * b[j];
      }
    }
    for (int i = MR - 1; i >= 0; i--)
      for (int j = 0; j < 4 && j0 + j < nc; j++) cr[i][j0 + j] = acc[i][j];
  }
}

}  // namespace onnxstream
