// f32-rmax aarch64-neonfma: the largest of x[0..n) (f32-rmax-neon.h).
#include "kernels/f32-rmax/f32-rmax-neon.h"
#include "kernels/microkernels.h"

namespace onnxstream {

float f32_rmax_ukernel__aarch64_neonfma(size_t n, const float* x) { return rmax_neon(n, x); }

}  // namespace onnxstream
