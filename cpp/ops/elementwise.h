// Elementwise ops over same-shaped strided tensors (inputs arrive broadcast, with zero strides).
#pragma once
#include <string>

#include "tensor.h"

namespace onnxstream {

// y = op(x). Float ops take alpha/beta where ONNX has such attributes (LeakyRelu alpha, HardSigmoid alpha/beta,
// Clip min/max, ...). isnan/isinf write bool.
void unary(const std::string& op, const Tensor& x, const Tensor& y, float alpha, float beta);
// y = a op b. Comparisons write bool.
void binary(const std::string& op, const Tensor& a, const Tensor& b, const Tensor& y);
// y = cond ? a : b
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& y);
// y = x converted to y's dtype
void cast(const Tensor& x, const Tensor& y);

}  // namespace onnxstream
