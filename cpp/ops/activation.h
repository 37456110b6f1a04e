// Activations fused into the epilogue of convolutions (the converter's fuse_activation pass picks them): one row
// of output values is activated while it is still in cache, by the f32-vunary kernels.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "dispatch.h"
#include "tensor.h"

namespace onnxstream {

struct Activation {
  enum Kind { none, clamp, leaky_relu, hard_sigmoid, hard_swish, sigmoid, silu, prelu } kind = none;
  float alpha = 0, beta = 0;     // clamp [alpha, beta]; leaky_relu slope alpha; hard_sigmoid alpha * x + beta
  const float* slope = nullptr;  // prelu: one slope per output channel
};

// "relu", "clip" (alpha, beta = min, max), "leaky_relu", "hard_sigmoid", "hard_swish", "sigmoid", "silu",
// "prelu" (slope per channel) or "" -> Activation.
inline Activation activation(const std::string& op, float alpha, float beta, const float* slope) {
  Activation a;
  a.alpha = alpha, a.beta = beta;
  if (op.empty()) return a;
  if (op == "relu") a.kind = Activation::clamp, a.alpha = 0.0f, a.beta = INFINITY;
  else if (op == "clip") a.kind = Activation::clamp;
  else if (op == "leaky_relu") a.kind = Activation::leaky_relu;
  else if (op == "hard_sigmoid") a.kind = Activation::hard_sigmoid;
  else if (op == "hard_swish") a.kind = Activation::hard_swish;
  else if (op == "sigmoid") a.kind = Activation::sigmoid;
  else if (op == "silu") a.kind = Activation::silu;
  else if (op == "prelu") a.kind = Activation::prelu, a.slope = slope;
  else throw Error("unknown fused activation '" + op + "'");
  check(a.kind != Activation::prelu || slope, "prelu activation needs a slope per channel");
  return a;
}

// y[i] = act(y[i]) for i < n, the values of output channel `channel`.
inline void activate(const Activation& a, int64_t channel, float* y, size_t n) {
  if (a.kind == Activation::none || n == 0) return;
  static const VUnaryOp ops[] = {kVClamp, kVClamp, kVLeakyRelu, kVHardSigmoid, kVHardSwish, kVSigmoid, kVSilu,
                                 kVLeakyRelu};
  VUnaryParams p{a.kind == Activation::prelu ? a.slope[channel] : a.alpha, a.beta};
  vunary_config().ukernel[ops[a.kind]](n, y, y, &p);
}

}  // namespace onnxstream
