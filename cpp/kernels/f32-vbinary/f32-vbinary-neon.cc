// f32-vbinary armv7 NEON (f32-vbinary-neon.h): division by a reciprocal estimate and two Newton steps.
#include "kernels/f32-vunary/f32-div-neon.h"
#include "kernels/f32-vbinary/f32-vbinary-neon.h"
#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

struct Armv7 {
  static float32x4_t div(float32x4_t a, float32x4_t b) { return div_neon_armv7(a, b); }
};

}  // namespace

ONNXSTREAM_NEON_VBINARY_KERNELS(neon, Armv7)

}  // namespace onnxstream
