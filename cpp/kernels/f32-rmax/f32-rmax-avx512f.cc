// f32-rmax AVX-512F: the largest of x[0..n), -inf for n = 0; 16 lanes, masked tail.
#include <immintrin.h>

#include <cmath>

#include "kernels/microkernels.h"

namespace onnxstream {

float f32_rmax_ukernel__avx512f(size_t n, const float* x) {
  const __m512 minus_inf = _mm512_set1_ps(-INFINITY);
  __m512 m0 = minus_inf, m1 = minus_inf;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
  }
  for (; i < n; i += 16) {
    const size_t rest = n - i < 16 ? n - i : 16;
    m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(minus_inf, (__mmask16)((1u << rest) - 1), x + i));
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

}  // namespace onnxstream
