// Packs 16-bit weights w[kc][nc] (byte strides) into ceil(nc/16) panels [kc][16], zero-padding the last panel.
// Type-blind copy: fp16 weights stay fp16 (half the bytes) for every ISA's f32-f16w-gemm kernels.
#include <cstring>

#include "kernels/microkernels.h"

namespace onnxstream {

void x16_packw_ukernel_x16__scalar(size_t kc, size_t nc, const void* w, ptrdiff_t k_stride, ptrdiff_t n_stride,
                                   void* packed) {
  const char* src = static_cast<const char*>(w);
  uint16_t* out = static_cast<uint16_t*>(packed);
  const size_t panels = (nc + 15) / 16;
  for (size_t p = 0; p < panels; p++) {
    const size_t n0 = p * 16, cols = nc - n0 < 16 ? nc - n0 : 16;
    uint16_t* panel = out + p * kc * 16;  // [kc][16]
    for (size_t k = 0; k < kc; k++) {
      const char* row = src + (ptrdiff_t)k * k_stride + (ptrdiff_t)n0 * n_stride;
      uint16_t* dst = panel + k * 16;
      if (n_stride == 2 && cols == 16) {
        std::memcpy(dst, row, 32);  // the common case: a contiguous row segment
      } else {
        for (size_t j = 0; j < cols; j++) std::memcpy(dst + j, row + (ptrdiff_t)j * n_stride, 2);
        for (size_t j = cols; j < 16; j++) dst[j] = 0;
      }
    }
  }
}

}  // namespace onnxstream
