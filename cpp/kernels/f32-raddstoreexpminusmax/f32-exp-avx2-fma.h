// exp(t) for t <= 0 in 8 AVX2+FMA lanes: range reduction by ln 2 in two parts, degree-5 polynomial, 0 below the
// cutoff (constants: f32-raddstoreexpminusmax-constants.h). Shared by the softmax and SiLU kernels; included only
// by *-avx2-fma.cc files.
#pragma once
#include <immintrin.h>

#include "kernels/f32-raddstoreexpminusmax/f32-raddstoreexpminusmax-constants.h"

namespace onnxstream {

static inline __m256 exp_rr2_p5(__m256 t) {
  const __m256 magic = _mm256_set1_ps(kExpMagicBias);
  __m256 n = _mm256_fmadd_ps(t, _mm256_set1_ps(kExpLog2e), magic);
  const __m256 s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(n), 23));  // 2^n
  n = _mm256_sub_ps(n, magic);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(kExpMinusLn2Hi), t);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(kExpMinusLn2Lo), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(kExpC5), r, _mm256_set1_ps(kExpC4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpC3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpC2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpC1));
  r = _mm256_mul_ps(r, s);
  const __m256 f = _mm256_fmadd_ps(r, p, s);
  return _mm256_andnot_ps(_mm256_cmp_ps(t, _mm256_set1_ps(kExpCutoff), _CMP_LT_OS), f);
}

}  // namespace onnxstream
