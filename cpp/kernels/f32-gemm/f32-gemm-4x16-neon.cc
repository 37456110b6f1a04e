// f32-gemm 4x16 armv7 NEON-VFPv4 (float32 weights): two passes of 8 columns, 8 q accumulators of 16 registers; from f32-gemm-neon.h.
#include "kernels/f32-gemm/f32-gemm-neon.h"
#include "kernels/microkernels.h"

namespace onnxstream {

void f32_gemm_ukernel_4x16__neon(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w,
    float* c, size_t c_stride, const float* bias, int accumulate) {
  gemm_neon<4, 8, false>(mr, nc, kc, a, a_stride, w, c, c_stride, bias, accumulate);
}

}  // namespace onnxstream
