// f32-dwconv AVX2+FMA: 16 outputs per iteration in two accumulators, all taps unrolled for 9 (3x3) and 25 (5x5)
// (the 9 weights stay in registers), bias first, clamp in the epilogue; the tail loads whole vectors (rows are
// readable past n) and stores under a mask.
#include <immintrin.h>

#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

template <size_t T>
void dwconv(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y, float lo, float hi) {
  const size_t t_n = T ? T : taps;
  const __m256 vb = _mm256_set1_ps(bias), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 a0 = vb, a1 = vb;
    for (size_t t = 0; t < t_n; t++) {
      const __m256 wt = _mm256_broadcast_ss(w + t);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(rows[t] + i), wt, a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(rows[t] + i + 8), wt, a1);
    }
    _mm256_storeu_ps(y + i, _mm256_min_ps(vhi, _mm256_max_ps(vlo, a0)));
    _mm256_storeu_ps(y + i + 8, _mm256_min_ps(vhi, _mm256_max_ps(vlo, a1)));
  }
  for (; i < n; i += 8) {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i < 8 ? n - i : 8)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 a = vb;
    for (size_t t = 0; t < t_n; t++)  // rows are readable past n (microkernels.h)
      a = _mm256_fmadd_ps(_mm256_loadu_ps(rows[t] + i), _mm256_broadcast_ss(w + t), a);
    _mm256_maskstore_ps(y + i, mask, _mm256_min_ps(vhi, _mm256_max_ps(vlo, a)));
  }
}

}  // namespace

void f32_dwconv_ukernel_9p__avx2_fma(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y,
                                     float lo, float hi) {
  dwconv<9>(n, taps, rows, w, bias, y, lo, hi);
}
void f32_dwconv_ukernel_25p__avx2_fma(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y,
                                      float lo, float hi) {
  dwconv<25>(n, taps, rows, w, bias, y, lo, hi);
}
void f32_dwconv_ukernel_up__avx2_fma(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y,
                                     float lo, float hi) {
  dwconv<0>(n, taps, rows, w, bias, y, lo, hi);
}

}  // namespace onnxstream
