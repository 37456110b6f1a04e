// f32-raddstoreexpminusmax neon: y[i] = exp(x[i] - max), returns the sum (f32-raddstoreexpminusmax-neon.h).
#include "kernels/f32-raddstoreexpminusmax/f32-raddstoreexpminusmax-neon.h"
#include "kernels/microkernels.h"

namespace onnxstream {

float f32_raddstoreexpminusmax_ukernel__neon(size_t n, const float* x, float max, float* y) {
  return raddstoreexpminusmax_neon(n, x, max, y);
}

}  // namespace onnxstream
