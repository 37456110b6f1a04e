// f32-vbinary armv7 NEON (f32-vbinary-neon.h): division by a reciprocal estimate and two Newton steps.
#include "kernels/f32-vbinary/f32-vbinary-neon.h"
#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

struct Armv7 {
  static float32x4_t div(float32x4_t a, float32x4_t b) {
    float32x4_t r = vrecpeq_f32(b);
    r = vmulq_f32(r, vrecpsq_f32(b, r));
    r = vmulq_f32(r, vrecpsq_f32(b, r));
    return vmulq_f32(a, r);
  }
};

}  // namespace

ONNXSTREAM_NEON_VBINARY_KERNELS(neon, Armv7)

}  // namespace onnxstream
