// f32-vbinary scalar (every CPU, armv6 included).
#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

template <class F>
inline void vbinary(size_t n, const float* a, int a_scalar, const float* b, int b_scalar, float* y, F f) {
  const float va = *a, vb = *b;
  if (b_scalar) {
    for (size_t i = 0; i < n; i++) y[i] = f(a[i], vb);
  } else if (a_scalar) {
    for (size_t i = 0; i < n; i++) y[i] = f(va, b[i]);
  } else {
    for (size_t i = 0; i < n; i++) y[i] = f(a[i], b[i]);
  }
}

}  // namespace

#define DEFINE(name, expr)                                                                          \
  void f32_##name##_ukernel__scalar(size_t n, const float* a, int as, const float* b, int bs, float* y) { \
    vbinary(n, a, as, b, bs, y, [](float u, float v) { return expr; });                               \
  }
DEFINE(vadd, u + v)
DEFINE(vsub, u - v)
DEFINE(vmul, u * v)
DEFINE(vdiv, u / v)
DEFINE(vmax, (u != u || u > v) ? u : v)
DEFINE(vmin, (u != u || u < v) ? u : v)
#undef DEFINE

}  // namespace onnxstream
