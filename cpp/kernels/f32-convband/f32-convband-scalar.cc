// f32-convband scalar: every CPU (armv6 included); fp16 through the portable conversions of half.h.
#include <cmath>
#include <cstdint>

#include "half.h"
#include "kernels/microkernels.h"

namespace onnxstream {

static inline float load(const void* x, int x_f16, size_t i) {
  return x_f16 ? half_to_float(static_cast<const uint16_t*>(x)[i]) : static_cast<const float*>(x)[i];
}

static inline float silu(float v) { return v / (1.0f + std::exp(-v)); }

void f32_vscaleshift_ukernel__scalar(size_t n, const void* x, int x_f16, float a, float b, int act, float* y) {
  for (size_t i = 0; i < n; i++) {
    const float v = load(x, x_f16, i) * a + b;
    y[i] = act ? silu(v) : v;
  }
}

void f32_vaddstore_ukernel__scalar(size_t n, const float* z, const void* r, int r_f16, void* y, int y_f16) {
  for (size_t i = 0; i < n; i++) {
    const float v = z[i] + (r ? load(r, r_f16, i) : 0.0f);
    if (y_f16) {
      static_cast<uint16_t*>(y)[i] = float_to_half(v);
    } else {
      static_cast<float*>(y)[i] = v;
    }
  }
}

void f32_rsumsq_ukernel__scalar(size_t n, const void* x, int x_f16, float shift, float* sums) {
  float s0 = 0.0f, s1 = 0.0f, q0 = 0.0f, q1 = 0.0f;  // two chains each
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    const float v0 = load(x, x_f16, i) - shift, v1 = load(x, x_f16, i + 1) - shift;
    s0 += v0, s1 += v1, q0 += v0 * v0, q1 += v1 * v1;
  }
  if (i < n) {
    const float v = load(x, x_f16, i) - shift;
    s0 += v, q0 += v * v;
  }
  sums[0] += s0 + s1;
  sums[1] += q0 + q1;
}

}  // namespace onnxstream
