// f32-rmax AVX2: the largest of x[0..n), -inf for n = 0; 8 lanes, tail lanes filled with -inf.
#include <immintrin.h>

#include <cmath>

#include "kernels/microkernels.h"

namespace onnxstream {

float f32_rmax_ukernel__avx2_fma(size_t n, const float* x) {
  const __m256 minus_inf = _mm256_set1_ps(-INFINITY);
  __m256 m0 = minus_inf, m1 = minus_inf;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
  }
  for (; i < n; i += 8) {
    const size_t rest = n - i < 8 ? n - i : 8;
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rest), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 v = _mm256_blendv_ps(minus_inf, _mm256_maskload_ps(x + i, mask), _mm256_castsi256_ps(mask));
    m0 = _mm256_max_ps(m0, v);
  }
  m0 = _mm256_max_ps(m0, m1);
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

}  // namespace onnxstream
