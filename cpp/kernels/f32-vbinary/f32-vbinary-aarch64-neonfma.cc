// f32-vbinary aarch64 (f32-vbinary-neon.h) with the vector divide instruction.
#include "kernels/f32-vbinary/f32-vbinary-neon.h"
#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

struct Aarch64 {
  static float32x4_t div(float32x4_t a, float32x4_t b) { return vdivq_f32(a, b); }
};

}  // namespace

ONNXSTREAM_NEON_VBINARY_KERNELS(aarch64_neonfma, Aarch64)

}  // namespace onnxstream
