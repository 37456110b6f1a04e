// Template for the {MR}x16 AVX2+FMA qc8w GEMM microkernels: int8 panels widened in registers (vpmovsxbd +
// vcvtdq2ps), two ymm accumulators per row, the per-column scale applied once at the end (contract: microkernels.h).
// Included only by *-avx2-fma.cc files, which CMake compiles with -mavx2 -mfma -mf16c.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/gemm-tile-rows.h"

#include "kernels/f32-gemm/f32-gemm-avx2-fma.h"  // avx2_lane_mask, avx2_store_tile

namespace onnxstream {

template <int MR>
inline void qc8w_gemm_avx2_fma(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w,
                               const float* scale, float* c, size_t c_stride, const float* bias, int accumulate) {
  const float* ar[MR];
  float* cr[MR];
  gemm_tile_rows<MR>(mr, a, a_stride, c, c_stride, ar, cr);
  const __m256i mask_lo = avx2_lane_mask(nc < 8 ? nc : 8), mask_hi = avx2_lane_mask(nc > 8 ? nc - 8 : 0);

  __m256 lo[MR], hi[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) lo[i] = hi[i] = _mm256_setzero_ps();

  const int8_t* wp = static_cast<const int8_t*>(w);  // [kc][16] int8
  for (size_t k = 0; k < kc; k++) {
    const __m256 b_lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(wp + k * 16))));
    const __m256 b_hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(wp + k * 16 + 8))));
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      const __m256 av = _mm256_broadcast_ss(ar[i] + k);
      lo[i] = _mm256_fmadd_ps(av, b_lo, lo[i]);
      hi[i] = _mm256_fmadd_ps(av, b_hi, hi[i]);
    }
  }

  // c = init + scale * acc, init = c (accumulate), bias or 0.
  const __m256 scale_lo = _mm256_maskload_ps(scale, mask_lo), scale_hi = _mm256_maskload_ps(scale + 8, mask_hi);
  const __m256 bias_lo = bias ? _mm256_maskload_ps(bias, mask_lo) : _mm256_setzero_ps();
  const __m256 bias_hi = bias ? _mm256_maskload_ps(bias + 8, mask_hi) : _mm256_setzero_ps();
  // All rows' c are read before any is written: rows past mr alias the last real row.
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) {
    lo[i] = _mm256_fmadd_ps(lo[i], scale_lo, accumulate ? _mm256_maskload_ps(cr[i], mask_lo) : bias_lo);
    hi[i] = _mm256_fmadd_ps(hi[i], scale_hi, accumulate ? _mm256_maskload_ps(cr[i] + 8, mask_hi) : bias_hi);
  }
  avx2_store_tile<MR>(cr, lo, hi, nc, mask_lo, mask_hi);
}

}  // namespace onnxstream
