// f32-vbinary AVX2: 8 lanes, 2 vectors per iteration, masked tail; a broadcast operand is loaded once.
#include <immintrin.h>

#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

template <class Op>
void vbinary(size_t n, const float* a, int a_scalar, const float* b, int b_scalar, float* y) {
  const Op op;
  const __m256 va = _mm256_broadcast_ss(a), vb = _mm256_broadcast_ss(b);
  auto load_a = [&](size_t i) { return a_scalar ? va : _mm256_loadu_ps(a + i); };
  auto load_b = [&](size_t i) { return b_scalar ? vb : _mm256_loadu_ps(b + i); };
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 r0 = op(load_a(i), load_b(i)), r1 = op(load_a(i + 8), load_b(i + 8));
    _mm256_storeu_ps(y + i, r0);
    _mm256_storeu_ps(y + i + 8, r1);
  }
  for (; i < n; i += 8) {
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i < 8 ? n - i : 8)),
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 x = a_scalar ? va : _mm256_maskload_ps(a + i, m), z = b_scalar ? vb : _mm256_maskload_ps(b + i, m);
    _mm256_maskstore_ps(y + i, m, op(x, z));
  }
}

struct Add { __m256 operator()(__m256 a, __m256 b) const { return _mm256_add_ps(a, b); } };
struct Sub { __m256 operator()(__m256 a, __m256 b) const { return _mm256_sub_ps(a, b); } };
struct Mul { __m256 operator()(__m256 a, __m256 b) const { return _mm256_mul_ps(a, b); } };
struct Div { __m256 operator()(__m256 a, __m256 b) const { return _mm256_div_ps(a, b); } };
// max_ps/min_ps return b when either is NaN: put a back where a is NaN.
struct Max {
  __m256 operator()(__m256 a, __m256 b) const {
    return _mm256_blendv_ps(_mm256_max_ps(a, b), a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  }
};
struct Min {
  __m256 operator()(__m256 a, __m256 b) const {
    return _mm256_blendv_ps(_mm256_min_ps(a, b), a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  }
};

}  // namespace

#define DEFINE(name, Op)                                                                              \
  void f32_##name##_ukernel__avx2_fma(size_t n, const float* a, int as, const float* b, int bs, float* y) { \
    vbinary<Op>(n, a, as, b, bs, y);                                                                    \
  }
DEFINE(vadd, Add)
DEFINE(vsub, Sub)
DEFINE(vmul, Mul)
DEFINE(vdiv, Div)
DEFINE(vmax, Max)
DEFINE(vmin, Min)
#undef DEFINE

}  // namespace onnxstream
