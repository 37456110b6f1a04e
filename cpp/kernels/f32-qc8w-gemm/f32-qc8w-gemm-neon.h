// Template for the NEON qc8w GEMM microkernels (armv7 neon-vfpv4 and aarch64): MR rows x CW columns of q-register
// accumulators per pass, 16 / CW passes over the 16-column panel; int8 weights widened with vmovl_s8 / vmovl_s16 /
// vcvtq_f32_s32, the per-column scale applied once at the end (contract: microkernels.h).
// Included only by *-neon.cc and *-aarch64-neonfma.cc files.
#pragma once
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/f32-gemm/f32-gemm-neon.h"  // neon_store_tile
#include "kernels/gemm-tile-rows.h"

namespace onnxstream {

// b[q] = float(p[4q .. 4q + 3]) for q < CW / 4; CW is 8 or 16.
template <int CW>
inline void qc8w_widen(const int8_t* p, float32x4_t* b) {
  if constexpr (CW == 16) {
    const int8x16_t v = vld1q_s8(p);
    const int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_s8(vget_high_s8(v));
    b[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
    b[1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(lo)));
    b[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
    b[3] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(hi)));
  } else {
    static_assert(CW == 8, "qc8w NEON kernels walk the panel 8 or 16 columns at a time");
    const int16x8_t v = vmovl_s8(vld1_s8(p));
    b[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(v)));
    b[1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(v)));
  }
}

template <int MR, int CW>
inline void qc8w_gemm_neon(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w,
                           const float* scale, float* c, size_t c_stride, const float* bias, int accumulate) {
  constexpr int Q = CW / 4;  // q registers per row
  const float* ar[MR];
  float* cr[MR];
  gemm_tile_rows<MR>(mr, a, a_stride, c, c_stride, ar, cr);
  const int8_t* wp = static_cast<const int8_t*>(w);  // [kc][16] int8
  for (size_t j0 = 0; j0 < nc; j0 += CW) {
    const size_t cols = nc - j0 < (size_t)CW ? nc - j0 : (size_t)CW;
    float32x4_t acc[MR][Q];
    for (int i = 0; i < MR; i++)
      for (int q = 0; q < Q; q++) acc[i][q] = vdupq_n_f32(0.0f);
    for (size_t k = 0; k < kc; k++) {
      float32x4_t b[Q];
      qc8w_widen<CW>(wp + k * 16 + j0, b);
      for (int i = 0; i < MR; i++) {
        const float32x4_t av = vld1q_dup_f32(ar[i] + k);
        for (int q = 0; q < Q; q++) acc[i][q] = vfmaq_f32(acc[i][q], b[q], av);
      }
    }
    // c = init + scale * acc, init = c (accumulate), bias or 0; partial column groups go through tmp.
    float tmp[CW] = {};
    float32x4_t s[Q], init[Q];
    std::memcpy(tmp, scale + j0, cols * 4);
    for (int q = 0; q < Q; q++) s[q] = vld1q_f32(tmp + 4 * q);
    if (bias) std::memcpy(tmp, bias + j0, cols * 4);
    for (int q = 0; q < Q; q++) init[q] = bias ? vld1q_f32(tmp + 4 * q) : vdupq_n_f32(0.0f);
    // All rows' c are read before any is written: rows past mr alias the last real row.
    for (int i = 0; i < MR; i++) {
      if (accumulate) std::memcpy(tmp, cr[i] + j0, cols * 4);
      for (int q = 0; q < Q; q++) acc[i][q] = vfmaq_f32(accumulate ? vld1q_f32(tmp + 4 * q) : init[q], acc[i][q], s[q]);
    }
    neon_store_tile<MR, CW>(cr, acc, j0, cols, tmp);
  }
}

}  // namespace onnxstream
