// f32-gemm 16x16 AVX-512F: 16 zmm accumulators; 16 rows beat 14 at UNet row counts (64, 256, 4096 tile exactly).
#include "kernels/f32-gemm/f32-gemm-avx512f.h"
#include "kernels/microkernels.h"

namespace onnxstream {

void f32_gemm_ukernel_16x16__avx512f(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w,
    float* c, size_t c_stride, const float* bias, int accumulate) {
  gemm_avx512f<16, false>(mr, nc, kc, a, a_stride, w, c, c_stride, bias, accumulate);
}

}  // namespace onnxstream
