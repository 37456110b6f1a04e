// f32-dwconv AVX-512F: 32 outputs per iteration in two accumulators, taps unrolled for 9 and 25, bias first, clamp
// in the epilogue, masked tail.
#include <immintrin.h>

#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

template <size_t T>
void dwconv(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y, float lo, float hi) {
  const size_t t_n = T ? T : taps;
  const __m512 vb = _mm512_set1_ps(bias), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 a0 = vb, a1 = vb;
    for (size_t t = 0; t < t_n; t++) {
      const __m512 wt = _mm512_set1_ps(w[t]);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(rows[t] + i), wt, a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(rows[t] + i + 16), wt, a1);
    }
    _mm512_storeu_ps(y + i, _mm512_min_ps(vhi, _mm512_max_ps(vlo, a0)));
    _mm512_storeu_ps(y + i + 16, _mm512_min_ps(vhi, _mm512_max_ps(vlo, a1)));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    __m512 a = vb;
    for (size_t t = 0; t < t_n; t++) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, rows[t] + i), _mm512_set1_ps(w[t]), a);
    _mm512_mask_storeu_ps(y + i, m, _mm512_min_ps(vhi, _mm512_max_ps(vlo, a)));
  }
}

}  // namespace

void f32_dwconv_ukernel_9p__avx512f(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y,
                                    float lo, float hi) {
  dwconv<9>(n, taps, rows, w, bias, y, lo, hi);
}
void f32_dwconv_ukernel_25p__avx512f(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y,
                                     float lo, float hi) {
  dwconv<25>(n, taps, rows, w, bias, y, lo, hi);
}
void f32_dwconv_ukernel_up__avx512f(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y,
                                    float lo, float hi) {
  dwconv<0>(n, taps, rows, w, bias, y, lo, hi);
}

}  // namespace onnxstream
