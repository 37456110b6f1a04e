// Elementwise ops over same-shaped strided tensors (inputs arrive broadcast, with zero strides).
#pragma once
#include <string>

#include "tensor.h"

namespace onnxstream {

// Unary ops by code, resolved once from the name (unary_code; elementwise.cc lists the names in this order).
enum class UnaryOp : int {
  relu, sigmoid, tanh, exp, log, sqrt, sin, cos, tan, asin, acos, atan, sinh, cosh, asinh, acosh, atanh, erf, neg,
  abs, reciprocal, floor, ceil, round, sign, softplus, softsign, leaky_relu, elu, celu, selu, hard_sigmoid,
  hard_swish, thresholded_relu, mish, silu, gelu, gelu_tanh, clip, not_, bitwise_not, isnan, isinf, isposinf,
  isneginf, count
};
int unary_code(const std::string& name);  // throws for an unknown name
// y = op(x). Float ops take alpha/beta where ONNX has such attributes (LeakyRelu alpha, HardSigmoid alpha/beta,
// Clip min/max, ...). isnan/isinf write bool. float32 ops with an f32-vunary kernel run it, split across threads.
void unary(UnaryOp op, const Tensor& x, const Tensor& y, float alpha, float beta);
// Binary ops by code (binary_code); the first six are the f32-vbinary kernels' ops, in VBinaryOp order.
enum class BinaryOp : int {
  add, sub, mul, div, max, min, equal, less, greater, less_equal, greater_equal, prelu, pow, fmod, mod, and_, or_,
  xor_, bitwise_and, bitwise_or, bitwise_xor, shift_left, shift_right, count
};
int binary_code(const std::string& name);
// y = a op b. Comparisons write bool.
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& y);
// y = cond ? a : b
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& y);
// y = x converted to y's dtype
void cast(const Tensor& x, const Tensor& y);

}  // namespace onnxstream
