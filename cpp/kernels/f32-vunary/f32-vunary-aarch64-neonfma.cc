// f32-vunary aarch64 (f32-vunary-neon.h) with the vector divide and square root instructions.
#include "kernels/f32-vunary/f32-vunary-neon.h"

namespace onnxstream {
namespace {

struct Aarch64 {
  static float32x4_t div(float32x4_t a, float32x4_t b) { return vdivq_f32(a, b); }
  static float32x4_t sqrt(float32x4_t x) { return vsqrtq_f32(x); }
};

}  // namespace

ONNXSTREAM_NEON_VUNARY_KERNELS(aarch64_neonfma, Aarch64)

}  // namespace onnxstream
