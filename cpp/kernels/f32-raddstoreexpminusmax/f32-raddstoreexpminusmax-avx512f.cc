// f32-raddstoreexpminusmax AVX-512F: y[i] = exp(x[i] - max), returns the sum; 16 lanes, masked tail.
#include <immintrin.h>

#include "kernels/f32-raddstoreexpminusmax/f32-raddstoreexpminusmax-constants.h"
#include "kernels/microkernels.h"

namespace onnxstream {

static inline __m512 exp_rr2_p5(__m512 t) {
  const __m512 magic = _mm512_set1_ps(kExpMagicBias);
  __m512 n = _mm512_fmadd_ps(t, _mm512_set1_ps(kExpLog2e), magic);
  const __m512 s = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(n), 23));  // 2^n
  n = _mm512_sub_ps(n, magic);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(kExpMinusLn2Hi), t);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(kExpMinusLn2Lo), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(kExpC5), r, _mm512_set1_ps(kExpC4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpC3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpC2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpC1));
  r = _mm512_mul_ps(r, s);
  const __m512 f = _mm512_fmadd_ps(r, p, s);
  const __mmask16 underflow = _mm512_cmp_ps_mask(t, _mm512_set1_ps(kExpCutoff), _CMP_LT_OS);
  return _mm512_maskz_mov_ps((__mmask16)~underflow, f);
}

float f32_raddstoreexpminusmax_ukernel__avx512f(size_t n, const float* x, float max, float* y) {
  const __m512 vmax = _mm512_set1_ps(max);
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 e0 = exp_rr2_p5(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmax));
    const __m512 e1 = exp_rr2_p5(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vmax));
    _mm512_storeu_ps(y + i, e0);
    _mm512_storeu_ps(y + i + 16, e1);
    sum0 = _mm512_add_ps(sum0, e0);
    sum1 = _mm512_add_ps(sum1, e1);
  }
  for (; i < n; i += 16) {
    const size_t rest = n - i < 16 ? n - i : 16;
    const __mmask16 mask = (__mmask16)((1u << rest) - 1);
    const __m512 e = exp_rr2_p5(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), vmax));
    _mm512_mask_storeu_ps(y + i, mask, e);
    sum0 = _mm512_mask_add_ps(sum0, mask, sum0, e);  // lanes past n add nothing
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
}

}  // namespace onnxstream
