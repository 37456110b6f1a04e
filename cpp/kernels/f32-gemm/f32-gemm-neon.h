// Template for the NEON GEMM microkernels (armv7 neon-vfpv4 and aarch64): MR rows x CW columns of q-register
// accumulators per pass, 16 / CW passes over the 16-column panel (armv7 has 16 q registers, aarch64 32).
// fp16 panels are widened with vcvt_f32_f16. Included only by *-neon.cc and *-aarch64-neonfma.cc files.
#pragma once
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/gemm-tile-rows.h"

namespace onnxstream {

// Stores columns [j0, j0 + cols) of the tile's rows, the real last row after its aliases; a partial column group
// goes through tmp.
template <int MR, int CW>
inline void neon_store_tile(float* const* cr, float32x4_t (*acc)[CW / 4], size_t j0, size_t cols, float* tmp) {
  for (int i = MR - 1; i >= 0; i--) {
    if (cols == (size_t)CW) {
      for (int q = 0; q < CW / 4; q++) vst1q_f32(cr[i] + j0 + 4 * q, acc[i][q]);
    } else {
      for (int q = 0; q < CW / 4; q++) vst1q_f32(tmp + 4 * q, acc[i][q]);
      std::memcpy(cr[i] + j0, tmp, cols * 4);
    }
  }
}

template <int MR, int CW, bool kF16Weights>
inline void gemm_neon(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w, float* c,
                      size_t c_stride, const float* bias, int accumulate) {
  constexpr int Q = CW / 4;  // q registers per row
  const float* ar[MR];
  float* cr[MR];
  gemm_tile_rows<MR>(mr, a, a_stride, c, c_stride, ar, cr);
  for (size_t j0 = 0; j0 < nc; j0 += CW) {
    const size_t cols = nc - j0 < (size_t)CW ? nc - j0 : (size_t)CW;
    float tmp[CW] = {};  // partial column groups go through here
    float32x4_t acc[MR][Q];
    float32x4_t init[Q];
    if (bias) std::memcpy(tmp, bias + j0, cols * 4);
    for (int q = 0; q < Q; q++) init[q] = bias ? vld1q_f32(tmp + 4 * q) : vdupq_n_f32(0.0f);
    for (int i = 0; i < MR; i++) {
      const float* src = cr[i] + j0;
      if (accumulate && cols < (size_t)CW) {
        std::memcpy(tmp, src, cols * 4);
        src = tmp;
      }
      for (int q = 0; q < Q; q++) acc[i][q] = accumulate ? vld1q_f32(src + 4 * q) : init[q];
    }
    for (size_t k = 0; k < kc; k++) {
      float32x4_t b[Q];
      if (kF16Weights) {
        const uint16_t* wp = static_cast<const uint16_t*>(w) + k * 16 + j0;
        for (int q = 0; q < Q; q++) b[q] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(wp + 4 * q)));
      } else {
        const float* wp = static_cast<const float*>(w) + k * 16 + j0;
        for (int q = 0; q < Q; q++) b[q] = vld1q_f32(wp + 4 * q);
      }
      for (int i = 0; i < MR; i++) {
        const float32x4_t av = vld1q_dup_f32(ar[i] + k);
        for (int q = 0; q < Q; q++) acc[i][q] = vfmaq_f32(acc[i][q], b[q], av);
      }
    }
    neon_store_tile<MR, CW>(cr, acc, j0, cols, tmp);
  }
}

}  // namespace onnxstream
