// f32-vbinary AVX-512F: 16 lanes, masked tail; a broadcast operand is loaded once.
#include <immintrin.h>

#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

template <class Op>
void vbinary(size_t n, const float* a, int a_scalar, const float* b, int b_scalar, float* y) {
  const Op op;
  const __m512 va = _mm512_set1_ps(*a), vb = _mm512_set1_ps(*b);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, op(a_scalar ? va : _mm512_loadu_ps(a + i), b_scalar ? vb : _mm512_loadu_ps(b + i)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, op(a_scalar ? va : _mm512_maskz_loadu_ps(m, a + i),
                                       b_scalar ? vb : _mm512_maskz_loadu_ps(m, b + i)));
  }
}

struct Add { __m512 operator()(__m512 a, __m512 b) const { return _mm512_add_ps(a, b); } };
struct Sub { __m512 operator()(__m512 a, __m512 b) const { return _mm512_sub_ps(a, b); } };
struct Mul { __m512 operator()(__m512 a, __m512 b) const { return _mm512_mul_ps(a, b); } };
struct Div { __m512 operator()(__m512 a, __m512 b) const { return _mm512_div_ps(a, b); } };
struct Max {  // NaN in a kept (max_ps returns b when either is NaN)
  __m512 operator()(__m512 a, __m512 b) const {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), _mm512_max_ps(a, b), a);
  }
};
struct Min {
  __m512 operator()(__m512 a, __m512 b) const {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), _mm512_min_ps(a, b), a);
  }
};

}  // namespace

#define DEFINE(name, Op)                                                                             \
  void f32_##name##_ukernel__avx512f(size_t n, const float* a, int as, const float* b, int bs, float* y) { \
    vbinary<Op>(n, a, as, b, bs, y);                                                                   \
  }
DEFINE(vadd, Add)
DEFINE(vsub, Sub)
DEFINE(vmul, Mul)
DEFINE(vdiv, Div)
DEFINE(vmax, Max)
DEFINE(vmin, Min)
#undef DEFINE

}  // namespace onnxstream
