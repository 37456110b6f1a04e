// AVX2+FMA building blocks of f32-vunary, also used by the fused-conv row kernels (f32-convband: SiLU) so that
// each activation has one implementation per ISA. Included only by *-avx2-fma.cc files.
#pragma once
#include <immintrin.h>

#include "kernels/f32-raddstoreexpminusmax/f32-exp-avx2-fma.h"
#include "kernels/f32-vunary/f32-vunary-constants.h"

namespace onnxstream {

static inline __m256 clamp8(__m256 x, __m256 lo, __m256 hi) {  // NaN stays NaN
  return _mm256_min_ps(hi, _mm256_max_ps(lo, x));
}

// exp(x) for every float x (rr2-p5, 2^n as two factors).
static inline __m256 exp8(__m256 x) {
  x = clamp8(x, _mm256_set1_ps(kExpMin), _mm256_set1_ps(kExpMax));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kExpLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(kExpMinusLn2Hi), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(kExpMinusLn2Lo), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(kExpC5), r, _mm256_set1_ps(kExpC4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpC3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpC2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpC1));
  const __m256 e = _mm256_fmadd_ps(r, p, _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n), h = _mm256_srai_epi32(ni, 1), bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(e, s1), s2);
}

// sigmoid from e = exp(-|x|): e / (1 + e) for x < 0, 1 - that above.
static inline __m256 sigmoid8(__m256 x) {
  const __m256 e = exp_rr2_p5(_mm256_or_ps(x, _mm256_set1_ps(-0.0f)));
  const __m256 f = _mm256_div_ps(e, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  return _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), f), f, x);  // sign bit of x picks f
}

static inline __m256 silu8(__m256 x) {
  const __m256 e = exp_rr2_p5(_mm256_or_ps(x, _mm256_set1_ps(-0.0f)));
  const __m256 num = _mm256_blendv_ps(_mm256_set1_ps(1.0f), e, x);
  return _mm256_mul_ps(x, _mm256_div_ps(num, _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
}

template <int NP, int NQ>
static inline __m256 odd_rational8(__m256 x, float clamp, const float* P, const float* Q) {
  x = clamp8(x, _mm256_set1_ps(-clamp), _mm256_set1_ps(clamp));
  const __m256 x2 = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(P[NP - 1]);
  for (int i = NP - 2; i >= 0; i--) p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(P[i]));
  __m256 q = _mm256_set1_ps(Q[NQ - 1]);
  for (int i = NQ - 2; i >= 0; i--) q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(Q[i]));
  return _mm256_div_ps(_mm256_mul_ps(x, p), q);
}

static inline __m256 tanh8(__m256 x) { return odd_rational8<7, 4>(x, kTanhClamp, kTanhP, kTanhQ); }
static inline __m256 erf8(__m256 x) { return odd_rational8<7, 5>(x, kErfClamp, kErfP, kErfQ); }

}  // namespace onnxstream
