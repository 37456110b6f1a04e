// Template for the {MR}x16 AVX-512F qc8w GEMM microkernels: one zmm accumulator per row, one 16-byte panel row of
// int8 weights per k widened with vpmovsxbd + vcvtdq2ps, the per-column scale applied once at the end
// (contract: microkernels.h). Included only by *-avx512f.cc files, which CMake compiles with -mavx512f -mfma -mf16c.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/gemm-tile-rows.h"

namespace onnxstream {

template <int MR>
inline void qc8w_gemm_avx512f(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w,
                              const float* scale, float* c, size_t c_stride, const float* bias, int accumulate) {
  const float* ar[MR];
  float* cr[MR];
  gemm_tile_rows<MR>(mr, a, a_stride, c, c_stride, ar, cr);
  const __mmask16 mask = nc >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nc) - 1);

  __m512 acc[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) acc[i] = _mm512_setzero_ps();

  const int8_t* wp = static_cast<const int8_t*>(w);  // [kc][16] int8
  for (size_t k = 0; k < kc; k++) {
    const __m512 b = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(wp + k * 16))));
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(ar[i][k]), b, acc[i]);
  }

  // c = init + scale * acc, init = c (accumulate), bias or 0.
  const __m512 s = _mm512_maskz_loadu_ps(mask, scale);
  const __m512 init = bias ? _mm512_maskz_loadu_ps(mask, bias) : _mm512_setzero_ps();
  // All rows' c are read before any is written: rows past mr alias the last real row.
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) acc[i] = _mm512_fmadd_ps(acc[i], s, accumulate ? _mm512_maskz_loadu_ps(mask, cr[i]) : init);
#pragma GCC unroll 16
  for (int i = MR - 1; i >= 0; i--) _mm512_mask_storeu_ps(cr[i], mask, acc[i]);
}

}  // namespace onnxstream
