// f32-dwconv AVX2+FMA: 16 outputs per iteration; the taps are split over 4 accumulators per vector (taps t, t+1, t+2,
// t+3 into four), so a 3x3 row waits on chains of 3 FMAs instead of 9 (one chain per vector was FMA-latency
// bound at a quarter of the load rate). All taps unrolled for 9 (3x3) and 25 (5x5), bias first, clamp in the
// epilogue; the tail loads whole vectors (rows are readable past n) and stores under a mask.
#include <immintrin.h>

#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

// The 8 outputs from i: sum over taps of rows[t][i..] * w[t], in 4 partial sums (named, so they stay in registers:
// -O2 does not unroll the tap loop).
inline __m256 taps8(size_t t_n, const float** rows, const float* w, size_t i, __m256 bias) {
  __m256 a0 = bias, a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  size_t t = 0;
  for (; t + 4 <= t_n; t += 4) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(rows[t] + i), _mm256_broadcast_ss(w + t), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(rows[t + 1] + i), _mm256_broadcast_ss(w + t + 1), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(rows[t + 2] + i), _mm256_broadcast_ss(w + t + 2), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(rows[t + 3] + i), _mm256_broadcast_ss(w + t + 3), a3);
  }
  for (; t < t_n; t++) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(rows[t] + i), _mm256_broadcast_ss(w + t), a0);
  return _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
}

template <size_t T>
void dwconv(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y, float lo, float hi) {
  const size_t t_n = T ? T : taps;
  const __m256 vb = _mm256_set1_ps(bias), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a0 = taps8(t_n, rows, w, i, vb), a1 = taps8(t_n, rows, w, i + 8, vb);
    _mm256_storeu_ps(y + i, _mm256_min_ps(vhi, _mm256_max_ps(vlo, a0)));
    _mm256_storeu_ps(y + i + 8, _mm256_min_ps(vhi, _mm256_max_ps(vlo, a1)));
  }
  for (; i < n; i += 8) {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i < 8 ? n - i : 8)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 a = taps8(t_n, rows, w, i, vb);  // rows are readable past n (microkernels.h)
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
