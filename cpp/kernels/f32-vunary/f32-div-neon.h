// a / b on armv7 NEON, which has no vector divide: a reciprocal estimate refined by two Newton steps (about 1 ulp;
// b = 0 gives +-inf, b = inf gives 0, as vrecps handles 0 * inf). Used by the armv7 f32-vunary and f32-vbinary
// kernels; included only by *-neon.cc files.
#pragma once
#include <arm_neon.h>

namespace onnxstream {

inline float32x4_t div_neon_armv7(float32x4_t a, float32x4_t b) {
  float32x4_t r = vrecpeq_f32(b);
  r = vmulq_f32(r, vrecpsq_f32(b, r));
  r = vmulq_f32(r, vrecpsq_f32(b, r));
  return vmulq_f32(a, r);
}

}  // namespace onnxstream
