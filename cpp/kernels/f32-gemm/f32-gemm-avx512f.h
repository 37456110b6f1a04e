// Template for the {MR}x16 AVX-512F GEMM microkernels (f32-gemm and f32-f16w-gemm): one zmm accumulator per row,
// one 16-column panel row of weights per k (fp16 panels widened with vcvtph2ps), A broadcast from memory.
// Included only by *-avx512f.cc files, which CMake compiles with -mavx512f -mfma -mf16c.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/gemm-tile-rows.h"

namespace onnxstream {

template <int MR, bool kF16Weights>
inline void gemm_avx512f(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w, float* c,
                         size_t c_stride, const float* bias, int accumulate) {
  const float* ar[MR];
  float* cr[MR];
  gemm_tile_rows<MR>(mr, a, a_stride, c, c_stride, ar, cr);
  const __mmask16 mask = nc >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nc) - 1);

  __m512 acc[MR];
  const __m512 init = bias ? _mm512_maskz_loadu_ps(mask, bias) : _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) acc[i] = accumulate ? _mm512_maskz_loadu_ps(mask, cr[i]) : init;

  size_t k = 0;
  if (MR == 1) {  // one row: 4 chains over k hide the FMA latency that MR rows hide otherwise
    __m512 part[3] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    auto row = [w](size_t k) {
      return kF16Weights ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(static_cast<const uint16_t*>(w) + k * 16)))
                         : _mm512_loadu_ps(static_cast<const float*>(w) + k * 16);
    };
    for (; k + 4 <= kc; k += 4) {
      acc[0] = _mm512_fmadd_ps(_mm512_set1_ps(ar[0][k]), row(k), acc[0]);
#pragma GCC unroll 3
      for (int j = 0; j < 3; j++) part[j] = _mm512_fmadd_ps(_mm512_set1_ps(ar[0][k + 1 + j]), row(k + 1 + j), part[j]);
    }
    acc[0] = _mm512_add_ps(_mm512_add_ps(acc[0], part[0]), _mm512_add_ps(part[1], part[2]));
  }
  if (kF16Weights) {
    const uint16_t* wp = static_cast<const uint16_t*>(w);  // [kc][16] fp16
    for (; k < kc; k++) {
      const __m512 b = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(wp + k * 16)));
#pragma GCC unroll 16
      for (int i = 0; i < MR; i++) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(ar[i][k]), b, acc[i]);
    }
  } else {
    const float* wp = static_cast<const float*>(w);  // [kc][16] float32
    for (; k < kc; k++) {
      const __m512 b = _mm512_loadu_ps(wp + k * 16);
#pragma GCC unroll 16
      for (int i = 0; i < MR; i++) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(ar[i][k]), b, acc[i]);
    }
  }

  // Store in reverse so the real last row is written after its aliases (same values either way).
#pragma GCC unroll 16
  for (int i = MR - 1; i >= 0; i--) _mm512_mask_storeu_ps(cr[i], mask, acc[i]);
}

}  // namespace onnxstream
