// f32-vunary AVX2+FMA: 8 lanes, 2 vectors per iteration, masked loads and stores for the tail. exp: rr2-p5
// (about 2 ulp); sigmoid and SiLU from exp(-|x|) (a few ulp); tanh and erf: rational functions
// (f32-vunary-constants.h, 3-4 ulp); the rest exact up to FMA rounding.
#include "kernels/f32-vunary/f32-vunary-avx2-fma.h"

#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

template <class Op>
void vunary(size_t n, const float* x, float* y, const VUnaryParams* params) {
  const Op op(*params);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    _mm256_storeu_ps(y + i, op(a));
    _mm256_storeu_ps(y + i + 8, op(b));
  }
  for (; i < n; i += 8) {
    if (n - i >= 8) {
      _mm256_storeu_ps(y + i, op(_mm256_loadu_ps(x + i)));
      continue;
    }
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(y + i, mask, op(_mm256_maskload_ps(x + i, mask)));
  }
}

struct Clamp {
  __m256 lo, hi;
  explicit Clamp(const VUnaryParams& p) : lo(_mm256_set1_ps(p.alpha)), hi(_mm256_set1_ps(p.beta)) {}
  __m256 operator()(__m256 x) const { return clamp8(x, lo, hi); }
};
struct LeakyRelu {
  __m256 alpha;
  explicit LeakyRelu(const VUnaryParams& p) : alpha(_mm256_set1_ps(p.alpha)) {}
  __m256 operator()(__m256 x) const { return _mm256_blendv_ps(x, _mm256_mul_ps(x, alpha), x); }
};
struct HardSigmoid {
  __m256 alpha, beta;
  explicit HardSigmoid(const VUnaryParams& p) : alpha(_mm256_set1_ps(p.alpha)), beta(_mm256_set1_ps(p.beta)) {}
  __m256 operator()(__m256 x) const {
    return clamp8(_mm256_fmadd_ps(x, alpha, beta), _mm256_setzero_ps(), _mm256_set1_ps(1.0f));
  }
};
struct HardSwish {
  explicit HardSwish(const VUnaryParams&) {}
  __m256 operator()(__m256 x) const {
    const __m256 g = _mm256_fmadd_ps(x, _mm256_set1_ps(1.0f / 6), _mm256_set1_ps(0.5f));
    return _mm256_mul_ps(x, clamp8(g, _mm256_setzero_ps(), _mm256_set1_ps(1.0f)));
  }
};
#define SIMPLE_OP(Name, expr)                        \
  struct Name {                                      \
    explicit Name(const VUnaryParams&) {}            \
    __m256 operator()(__m256 x) const { return expr; } \
  };
SIMPLE_OP(Sigmoid, sigmoid8(x))
SIMPLE_OP(Silu, silu8(x))
SIMPLE_OP(Tanh, tanh8(x))
SIMPLE_OP(Exp, exp8(x))
SIMPLE_OP(Erf, erf8(x))
SIMPLE_OP(Gelu, _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)),
                              _mm256_add_ps(_mm256_set1_ps(1.0f), erf8(_mm256_mul_ps(x, _mm256_set1_ps(kSqrtHalf))))))
SIMPLE_OP(Sqrt, _mm256_sqrt_ps(x))
SIMPLE_OP(Abs, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x))
SIMPLE_OP(Neg, _mm256_xor_ps(_mm256_set1_ps(-0.0f), x))
#undef SIMPLE_OP

}  // namespace

#define DEFINE(fn, Op) \
  void fn(size_t n, const float* x, float* y, const VUnaryParams* p) { vunary<Op>(n, x, y, p); }
DEFINE(f32_vclamp_ukernel__avx2_fma, Clamp)
DEFINE(f32_vlrelu_ukernel__avx2_fma, LeakyRelu)
DEFINE(f32_vhsigmoid_ukernel__avx2_fma, HardSigmoid)
DEFINE(f32_vhswish_ukernel__avx2_fma, HardSwish)
DEFINE(f32_vsigmoid_ukernel__avx2_fma, Sigmoid)
DEFINE(f32_vsilu_ukernel__avx2_fma, Silu)
DEFINE(f32_vtanh_ukernel__avx2_fma, Tanh)
DEFINE(f32_vexp_ukernel__avx2_fma, Exp)
DEFINE(f32_verf_ukernel__avx2_fma, Erf)
DEFINE(f32_vgelu_ukernel__avx2_fma, Gelu)
DEFINE(f32_vsqrt_ukernel__avx2_fma, Sqrt)
DEFINE(f32_vabs_ukernel__avx2_fma, Abs)
DEFINE(f32_vneg_ukernel__avx2_fma, Neg)
#undef DEFINE

}  // namespace onnxstream
