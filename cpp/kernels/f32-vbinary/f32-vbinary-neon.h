// Template of the NEON f32-vbinary kernels (armv7 and aarch64): 4 lanes, 2 vectors per iteration, scalar tail.
// `Arch` supplies div (aarch64 has the instruction; armv7 refines a reciprocal estimate). vmaxq/vminq already
// return NaN when either input is NaN. Included only by *-neon.cc and *-aarch64-neonfma.cc files.
#pragma once
#include <arm_neon.h>

#include <cstddef>

namespace onnxstream {
namespace neon_vbinary {

template <class V, class S>
inline void run(size_t n, const float* a, int a_scalar, const float* b, int b_scalar, float* y, V vop, S sop) {
  const float32x4_t va = vdupq_n_f32(*a), vb = vdupq_n_f32(*b);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float32x4_t r0 = vop(a_scalar ? va : vld1q_f32(a + i), b_scalar ? vb : vld1q_f32(b + i));
    const float32x4_t r1 = vop(a_scalar ? va : vld1q_f32(a + i + 4), b_scalar ? vb : vld1q_f32(b + i + 4));
    vst1q_f32(y + i, r0);
    vst1q_f32(y + i + 4, r1);
  }
  for (; i < n; i++) y[i] = sop(a_scalar ? *a : a[i], b_scalar ? *b : b[i]);
}

}  // namespace neon_vbinary
}  // namespace onnxstream

#define ONNXSTREAM_NEON_VBINARY_KERNEL(name, isa, vexpr, sexpr)                                      \
  void f32_##name##_ukernel__##isa(size_t n, const float* a, int as, const float* b, int bs, float* y) { \
    neon_vbinary::run(n, a, as, b, bs, y, [](float32x4_t u, float32x4_t v) { return vexpr; },          \
                      [](float u, float v) { return sexpr; });                                         \
  }
#define ONNXSTREAM_NEON_VBINARY_KERNELS(isa, Arch)                                                      \
  ONNXSTREAM_NEON_VBINARY_KERNEL(vadd, isa, vaddq_f32(u, v), u + v)                                     \
  ONNXSTREAM_NEON_VBINARY_KERNEL(vsub, isa, vsubq_f32(u, v), u - v)                                     \
  ONNXSTREAM_NEON_VBINARY_KERNEL(vmul, isa, vmulq_f32(u, v), u * v)                                     \
  ONNXSTREAM_NEON_VBINARY_KERNEL(vdiv, isa, Arch::div(u, v), u / v)                                     \
  ONNXSTREAM_NEON_VBINARY_KERNEL(vmax, isa, vmaxq_f32(u, v), (u != u || u > v) ? u : v)                 \
  ONNXSTREAM_NEON_VBINARY_KERNEL(vmin, isa, vminq_f32(u, v), (u != u || u < v) ? u : v)
