// f32-vunary armv7 NEON (f32-vunary-neon.h): no vector divide or square root on armv7, so division is a reciprocal
// estimate refined by two Newton steps (about 1 ulp) and square roots are taken lane by lane by VFP.
#include <cmath>

#include "kernels/f32-vunary/f32-div-neon.h"
#include "kernels/f32-vunary/f32-vunary-neon.h"

namespace onnxstream {
namespace {

struct Armv7 {
  static float32x4_t div(float32x4_t a, float32x4_t b) { return div_neon_armv7(a, b); }
  static float32x4_t sqrt(float32x4_t x) {
    float t[4];
    vst1q_f32(t, x);
    for (float& v : t) v = std::sqrt(v);
    return vld1q_f32(t);
  }
};

}  // namespace

ONNXSTREAM_NEON_VUNARY_KERNELS(neon, Armv7)

}  // namespace onnxstream
