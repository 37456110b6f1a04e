// f32-gemm 6x16 aarch64 NEON (float32 weights): 24 q accumulators + 4 weight + 1 broadcast of 32 registers; from f32-gemm-neon.h.
#include "kernels/f32-gemm/f32-gemm-neon.h"
#include "kernels/microkernels.h"

namespace onnxstream {

void f32_gemm_ukernel_6x16__aarch64_neonfma(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
    const void* w, float* c, size_t c_stride, const float* bias, int accumulate) {
  gemm_neon<6, 16, false>(mr, nc, kc, a, a_stride, w, c, c_stride, bias, accumulate);
}

}  // namespace onnxstream
