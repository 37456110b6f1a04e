// f32-raddstoreexpminusmax AVX2+FMA: y[i] = exp(x[i] - max), returns the sum; 8 lanes, masked tail.
#include <immintrin.h>

#include "kernels/f32-raddstoreexpminusmax/f32-exp-avx2-fma.h"
#include "kernels/microkernels.h"

namespace onnxstream {

float f32_raddstoreexpminusmax_ukernel__avx2_fma(size_t n, const float* x, float max, float* y) {
  const __m256 vmax = _mm256_set1_ps(max);
  __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 e0 = exp_rr2_p5(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
    const __m256 e1 = exp_rr2_p5(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vmax));
    _mm256_storeu_ps(y + i, e0);
    _mm256_storeu_ps(y + i + 8, e1);
    sum0 = _mm256_add_ps(sum0, e0);
    sum1 = _mm256_add_ps(sum1, e1);
  }
  for (; i < n; i += 8) {
    const size_t rest = n - i < 8 ? n - i : 8;
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rest), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 e = exp_rr2_p5(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), vmax));
    e = _mm256_and_ps(e, _mm256_castsi256_ps(mask));  // lanes past n add nothing
    _mm256_maskstore_ps(y + i, mask, e);
    sum0 = _mm256_add_ps(sum0, e);
  }
  __m256 sum = _mm256_add_ps(sum0, sum1);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
  s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
  return _mm_cvtss_f32(s4);
}

}  // namespace onnxstream
