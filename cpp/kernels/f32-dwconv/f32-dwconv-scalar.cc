// f32-dwconv scalar (every CPU, armv6 included): 4 outputs per iteration, taps unrolled for 9 and 25.
#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

template <size_t T>
void dwconv(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y, float lo, float hi) {
  const size_t t_n = T ? T : taps;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float a0 = bias, a1 = bias, a2 = bias, a3 = bias;
    for (size_t t = 0; t < t_n; t++) {
      const float* r = rows[t] + i;
      const float wt = w[t];
      a0 += r[0] * wt, a1 += r[1] * wt, a2 += r[2] * wt, a3 += r[3] * wt;
    }
    y[i] = clampf(a0, lo, hi), y[i + 1] = clampf(a1, lo, hi), y[i + 2] = clampf(a2, lo, hi), y[i + 3] = clampf(a3, lo, hi);
  }
  for (; i < n; i++) {
    float a = bias;
    for (size_t t = 0; t < t_n; t++) a += rows[t][i] * w[t];
    y[i] = clampf(a, lo, hi);
  }
}

}  // namespace

void f32_dwconv_ukernel_9p__scalar(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y,
                                   float lo, float hi) {
  dwconv<9>(n, taps, rows, w, bias, y, lo, hi);
}
void f32_dwconv_ukernel_25p__scalar(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y,
                                    float lo, float hi) {
  dwconv<25>(n, taps, rows, w, bias, y, lo, hi);
}
void f32_dwconv_ukernel_up__scalar(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y,
                                   float lo, float hi) {
  dwconv<0>(n, taps, rows, w, bias, y, lo, hi);
}

}  // namespace onnxstream
