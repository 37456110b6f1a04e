// Template of the NEON f32-vunary kernels (armv7 neon-vfpv4 and aarch64): 4 lanes, 2 vectors per iteration, the
// tail through a padded copy; the approximations of the AVX2 kernels. The including file passes `Arch` with
// div(a, b) and sqrt(x) (aarch64 has both instructions; armv7 refines reciprocal estimates).
// Included only by *-neon.cc and *-aarch64-neonfma.cc files.
#pragma once
#include <arm_neon.h>

#include <cstddef>
#include <cstring>

#include "kernels/f32-raddstoreexpminusmax/f32-raddstoreexpminusmax-constants.h"
#include "kernels/f32-vunary/f32-vunary-constants.h"
#include "kernels/microkernels.h"

namespace onnxstream {
namespace neon_vunary {

inline float32x4_t clamp4(float32x4_t x, float32x4_t lo, float32x4_t hi) {
  // vmaxq/vminq return NaN when either input is NaN, so NaN stays NaN.
  return vminq_f32(hi, vmaxq_f32(lo, x));
}
inline uint32x4_t negative(float32x4_t x) { return vcltq_s32(vreinterpretq_s32_f32(x), vdupq_n_s32(0)); }

inline float32x4_t exp4(float32x4_t x) {
  x = clamp4(x, vdupq_n_f32(kExpMin), vdupq_n_f32(kExpMax));
  const float32x4_t magic = vdupq_n_f32(0x1.8p23f);  // rounds to the nearest integer
  const float32x4_t n = vsubq_f32(vfmaq_f32(magic, x, vdupq_n_f32(kExpLog2e)), magic);
  float32x4_t r = vfmaq_f32(x, n, vdupq_n_f32(kExpMinusLn2Hi));
  r = vfmaq_f32(r, n, vdupq_n_f32(kExpMinusLn2Lo));
  float32x4_t p = vfmaq_f32(vdupq_n_f32(kExpC4), vdupq_n_f32(kExpC5), r);
  p = vfmaq_f32(vdupq_n_f32(kExpC3), p, r);
  p = vfmaq_f32(vdupq_n_f32(kExpC2), p, r);
  p = vfmaq_f32(vdupq_n_f32(kExpC1), p, r);
  const float32x4_t e = vfmaq_f32(vdupq_n_f32(1.0f), r, p);
  const int32x4_t ni = vcvtq_s32_f32(n), h = vshrq_n_s32(ni, 1), bias = vdupq_n_s32(127);
  const float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(h, bias), 23));
  const float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vsubq_s32(ni, h), bias), 23));
  return vmulq_f32(vmulq_f32(e, s1), s2);
}

template <class Arch>
inline float32x4_t sigmoid4(float32x4_t x) {
  const float32x4_t e = exp4(vnegq_f32(vabsq_f32(x)));
  const float32x4_t f = Arch::div(e, vaddq_f32(vdupq_n_f32(1.0f), e));
  return vbslq_f32(negative(x), f, vsubq_f32(vdupq_n_f32(1.0f), f));
}

template <class Arch, int NP, int NQ>
inline float32x4_t odd_rational4(float32x4_t x, float clamp, const float* P, const float* Q) {
  x = clamp4(x, vdupq_n_f32(-clamp), vdupq_n_f32(clamp));
  const float32x4_t x2 = vmulq_f32(x, x);
  float32x4_t p = vdupq_n_f32(P[NP - 1]);
  for (int i = NP - 2; i >= 0; i--) p = vfmaq_f32(vdupq_n_f32(P[i]), p, x2);
  float32x4_t q = vdupq_n_f32(Q[NQ - 1]);
  for (int i = NQ - 2; i >= 0; i--) q = vfmaq_f32(vdupq_n_f32(Q[i]), q, x2);
  return Arch::div(vmulq_f32(x, p), q);
}

template <class F>
inline void run(size_t n, const float* x, float* y, F op) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + i + 4);
    vst1q_f32(y + i, op(a));
    vst1q_f32(y + i + 4, op(b));
  }
  for (; i < n; i += 4) {
    const size_t rest = n - i < 4 ? n - i : 4;
    float tmp[4] = {0, 0, 0, 0};
    std::memcpy(tmp, x + i, rest * 4);
    vst1q_f32(tmp, op(vld1q_f32(tmp)));
    std::memcpy(y + i, tmp, rest * 4);
  }
}

template <class Arch>
struct Kernels {
  static void clamp(size_t n, const float* x, float* y, const VUnaryParams* p) {
    const float32x4_t lo = vdupq_n_f32(p->alpha), hi = vdupq_n_f32(p->beta);
    run(n, x, y, [=](float32x4_t v) { return clamp4(v, lo, hi); });
  }
  static void lrelu(size_t n, const float* x, float* y, const VUnaryParams* p) {
    const float32x4_t a = vdupq_n_f32(p->alpha);
    run(n, x, y, [=](float32x4_t v) { return vbslq_f32(negative(v), vmulq_f32(v, a), v); });
  }
  static void hsigmoid(size_t n, const float* x, float* y, const VUnaryParams* p) {
    const float32x4_t a = vdupq_n_f32(p->alpha), b = vdupq_n_f32(p->beta);
    run(n, x, y, [=](float32x4_t v) { return clamp4(vfmaq_f32(b, v, a), vdupq_n_f32(0.0f), vdupq_n_f32(1.0f)); });
  }
  static void hswish(size_t n, const float* x, float* y, const VUnaryParams*) {
    run(n, x, y, [](float32x4_t v) {
      const float32x4_t g = vfmaq_f32(vdupq_n_f32(0.5f), v, vdupq_n_f32(1.0f / 6));
      return vmulq_f32(v, clamp4(g, vdupq_n_f32(0.0f), vdupq_n_f32(1.0f)));
    });
  }
  static void sigmoid(size_t n, const float* x, float* y, const VUnaryParams*) { run(n, x, y, sigmoid4<Arch>); }
  static void silu(size_t n, const float* x, float* y, const VUnaryParams*) {
    run(n, x, y, [](float32x4_t v) { return vmulq_f32(v, sigmoid4<Arch>(v)); });
  }
  static void tanh(size_t n, const float* x, float* y, const VUnaryParams*) {
    run(n, x, y, [](float32x4_t v) { return odd_rational4<Arch, 7, 4>(v, kTanhClamp, kTanhP, kTanhQ); });
  }
  static void exp(size_t n, const float* x, float* y, const VUnaryParams*) { run(n, x, y, exp4); }
  static void erf(size_t n, const float* x, float* y, const VUnaryParams*) {
    run(n, x, y, [](float32x4_t v) { return odd_rational4<Arch, 7, 5>(v, kErfClamp, kErfP, kErfQ); });
  }
  static void gelu(size_t n, const float* x, float* y, const VUnaryParams*) {
    run(n, x, y, [](float32x4_t v) {
      const float32x4_t e = odd_rational4<Arch, 7, 5>(vmulq_f32(v, vdupq_n_f32(kSqrtHalf)), kErfClamp, kErfP, kErfQ);
      return vmulq_f32(vmulq_f32(v, vdupq_n_f32(0.5f)), vaddq_f32(vdupq_n_f32(1.0f), e));
    });
  }
  static void sqrt(size_t n, const float* x, float* y, const VUnaryParams*) { run(n, x, y, Arch::sqrt); }
  static void abs(size_t n, const float* x, float* y, const VUnaryParams*) {
    run(n, x, y, [](float32x4_t v) { return vabsq_f32(v); });
  }
  static void neg(size_t n, const float* x, float* y, const VUnaryParams*) {
    run(n, x, y, [](float32x4_t v) { return vnegq_f32(v); });
  }
};

}  // namespace neon_vunary
}  // namespace onnxstream

// Defines the 13 kernels of one NEON ISA from neon_vunary::Kernels<Arch>.
#define ONNXSTREAM_NEON_VUNARY_KERNELS(isa, Arch)                                                            \
  void f32_vclamp_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::clamp(n, x, y, p); } \
  void f32_vlrelu_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::lrelu(n, x, y, p); } \
  void f32_vhsigmoid_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::hsigmoid(n, x, y, p); } \
  void f32_vhswish_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::hswish(n, x, y, p); } \
  void f32_vsigmoid_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::sigmoid(n, x, y, p); } \
  void f32_vsilu_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::silu(n, x, y, p); } \
  void f32_vtanh_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::tanh(n, x, y, p); } \
  void f32_vexp_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::exp(n, x, y, p); } \
  void f32_verf_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::erf(n, x, y, p); } \
  void f32_vgelu_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::gelu(n, x, y, p); } \
  void f32_vsqrt_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::sqrt(n, x, y, p); } \
  void f32_vabs_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::abs(n, x, y, p); } \
  void f32_vneg_ukernel__##isa(size_t n, const float* x, float* y, const VUnaryParams* p) { neon_vunary::Kernels<Arch>::neg(n, x, y, p); }
