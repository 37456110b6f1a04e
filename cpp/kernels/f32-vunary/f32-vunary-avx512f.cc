// f32-vunary AVX-512F: 16 lanes, masked tail; the same approximations as the AVX2 kernels (f32-vunary-avx2-fma.cc)
// with sigmoid and SiLU built on the full-range exp.
#include <immintrin.h>

#include "kernels/f32-raddstoreexpminusmax/f32-raddstoreexpminusmax-constants.h"
#include "kernels/f32-vunary/f32-vunary-constants.h"
#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

inline __m512 clamp16(__m512 x, __m512 lo, __m512 hi) { return _mm512_min_ps(hi, _mm512_max_ps(lo, x)); }
inline __mmask16 negative(__m512 x) { return _mm512_cmplt_epi32_mask(_mm512_castps_si512(x), _mm512_setzero_si512()); }
inline __m512 abs16(__m512 x) {
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)));
}

inline __m512 exp16(__m512 x) {
  x = clamp16(x, _mm512_set1_ps(kExpMin), _mm512_set1_ps(kExpMax));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kExpLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(kExpMinusLn2Hi), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(kExpMinusLn2Lo), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(kExpC5), r, _mm512_set1_ps(kExpC4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpC3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpC2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpC1));
  const __m512 e = _mm512_fmadd_ps(r, p, _mm512_set1_ps(1.0f));
  const __m512i ni = _mm512_cvtps_epi32(n), h = _mm512_srai_epi32(ni, 1), bias = _mm512_set1_epi32(127);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(h, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(ni, h), bias), 23));
  return _mm512_mul_ps(_mm512_mul_ps(e, s1), s2);
}

inline __m512 sigmoid16(__m512 x) {
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), abs16(x)));
  const __m512 f = _mm512_div_ps(e, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
  return _mm512_mask_blend_ps(negative(x), _mm512_sub_ps(_mm512_set1_ps(1.0f), f), f);
}

template <int NP, int NQ>
inline __m512 odd_rational16(__m512 x, float clamp, const float* P, const float* Q) {
  x = clamp16(x, _mm512_set1_ps(-clamp), _mm512_set1_ps(clamp));
  const __m512 x2 = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(P[NP - 1]);
  for (int i = NP - 2; i >= 0; i--) p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(P[i]));
  __m512 q = _mm512_set1_ps(Q[NQ - 1]);
  for (int i = NQ - 2; i >= 0; i--) q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(Q[i]));
  return _mm512_div_ps(_mm512_mul_ps(x, p), q);
}
inline __m512 erf16(__m512 x) { return odd_rational16<7, 5>(x, kErfClamp, kErfP, kErfQ); }

template <class F>
void vunary(size_t n, const float* x, float* y, F op) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, op(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, op(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace

void f32_vclamp_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams* p) {
  const __m512 lo = _mm512_set1_ps(p->alpha), hi = _mm512_set1_ps(p->beta);
  vunary(n, x, y, [=](__m512 v) { return clamp16(v, lo, hi); });
}
void f32_vlrelu_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams* p) {
  const __m512 a = _mm512_set1_ps(p->alpha);
  vunary(n, x, y, [=](__m512 v) { return _mm512_mask_blend_ps(negative(v), v, _mm512_mul_ps(v, a)); });
}
void f32_vhsigmoid_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams* p) {
  const __m512 a = _mm512_set1_ps(p->alpha), b = _mm512_set1_ps(p->beta);
  vunary(n, x, y, [=](__m512 v) { return clamp16(_mm512_fmadd_ps(v, a, b), _mm512_setzero_ps(), _mm512_set1_ps(1.0f)); });
}
void f32_vhswish_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams*) {
  vunary(n, x, y, [](__m512 v) {
    const __m512 g = _mm512_fmadd_ps(v, _mm512_set1_ps(1.0f / 6), _mm512_set1_ps(0.5f));
    return _mm512_mul_ps(v, clamp16(g, _mm512_setzero_ps(), _mm512_set1_ps(1.0f)));
  });
}
void f32_vsigmoid_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams*) {
  vunary(n, x, y, sigmoid16);
}
void f32_vsilu_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams*) {
  vunary(n, x, y, [](__m512 v) { return _mm512_mul_ps(v, sigmoid16(v)); });
}
void f32_vtanh_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams*) {
  vunary(n, x, y, [](__m512 v) { return odd_rational16<7, 4>(v, kTanhClamp, kTanhP, kTanhQ); });
}
void f32_vexp_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams*) { vunary(n, x, y, exp16); }
void f32_verf_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams*) { vunary(n, x, y, erf16); }
void f32_vgelu_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams*) {
  vunary(n, x, y, [](__m512 v) {
    const __m512 e = erf16(_mm512_mul_ps(v, _mm512_set1_ps(kSqrtHalf)));
    return _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(0.5f)), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
  });
}
void f32_vsqrt_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams*) {
  vunary(n, x, y, [](__m512 v) { return _mm512_sqrt_ps(v); });
}
void f32_vabs_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams*) { vunary(n, x, y, abs16); }
void f32_vneg_ukernel__avx512f(size_t n, const float* x, float* y, const VUnaryParams*) {
  vunary(n, x, y, [](__m512 v) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)));
  });
}

}  // namespace onnxstream
