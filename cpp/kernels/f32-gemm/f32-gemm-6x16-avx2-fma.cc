// f32-gemm 6x16 AVX2+FMA: 12 ymm accumulators + 2 weight + 1 broadcast = 15 of 16 registers; from f32-gemm-avx2-fma.h.
#include "kernels/f32-gemm/f32-gemm-avx2-fma.h"
#include "kernels/microkernels.h"

namespace onnxstream {

void f32_gemm_ukernel_6x16__avx2_fma(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w,
    float* c, size_t c_stride, const float* bias, int accumulate) {
  gemm_avx2_fma<6, false>(mr, nc, kc, a, a_stride, w, c, c_stride, bias, accumulate);
}

}  // namespace onnxstream
