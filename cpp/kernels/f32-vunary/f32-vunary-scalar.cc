// f32-vunary scalar (every CPU, armv6 included): libm's exp, tanh and erf, so results are within an ulp or two.
#include <cmath>

#include "kernels/f32-vunary/f32-vunary-constants.h"
#include "kernels/microkernels.h"

namespace onnxstream {
namespace {

template <class F>
inline void map(size_t n, const float* x, float* y, F f) {
  for (size_t i = 0; i < n; i++) y[i] = f(x[i]);
}

inline float clampf(float v, float lo, float hi) { return v != v ? v : (v < lo ? lo : (v > hi ? hi : v)); }
inline float sigmoidf(float v) {  // from exp(-|v|), so it never overflows
  const float e = std::exp(-std::fabs(v)), f = e / (1.0f + e);
  return v < 0 ? f : 1.0f - f;
}

}  // namespace

void f32_vclamp_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams* p) {
  const float lo = p->alpha, hi = p->beta;
  map(n, x, y, [=](float v) { return clampf(v, lo, hi); });
}
void f32_vlrelu_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams* p) {
  const float a = p->alpha;
  map(n, x, y, [=](float v) { return std::signbit(v) ? v * a : v; });
}
void f32_vhsigmoid_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams* p) {
  const float a = p->alpha, b = p->beta;
  map(n, x, y, [=](float v) { return clampf(v * a + b, 0.0f, 1.0f); });
}
void f32_vhswish_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams*) {
  map(n, x, y, [](float v) { return v * clampf(v * (1.0f / 6) + 0.5f, 0.0f, 1.0f); });
}
void f32_vsigmoid_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams*) {
  map(n, x, y, sigmoidf);
}
void f32_vsilu_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams*) {
  map(n, x, y, [](float v) { return v * sigmoidf(v); });
}
void f32_vtanh_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams*) {
  map(n, x, y, [](float v) { return std::tanh(v); });
}
void f32_vexp_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams*) {
  map(n, x, y, [](float v) { return std::exp(v); });
}
void f32_verf_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams*) {
  map(n, x, y, [](float v) { return std::erf(v); });
}
void f32_vgelu_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams*) {
  map(n, x, y, [](float v) { return 0.5f * v * (1.0f + std::erf(v * kSqrtHalf)); });
}
void f32_vsqrt_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams*) {
  map(n, x, y, [](float v) { return std::sqrt(v); });
}
void f32_vabs_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams*) {
  map(n, x, y, [](float v) { return std::fabs(v); });
}
void f32_vneg_ukernel__scalar(size_t n, const float* x, float* y, const VUnaryParams*) {
  map(n, x, y, [](float v) { return -v; });
}

}  // namespace onnxstream
