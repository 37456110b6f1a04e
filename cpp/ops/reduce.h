// Reductions along the middle axis of a contiguous [outer, n, inner] view; Python moves the reduced axes there.
#pragma once
#include <string>

#include "tensor.h"

namespace onnxstream {

// y[o, i] = op over j of x[o, j, i]. op: sum, mean, max, min, prod, sum_square, l1, l2, log_sum, log_sum_exp.
// x and y share a dtype (float32, float64, int32, int64, ...). n == 0 gives the op's identity.
void reduce(const std::string& op, const Tensor& x, const Tensor& y);
// y[o, i] = index (int64) of the max/min over j; ties pick the first, or the last with select_last.
void arg_reduce(bool is_max, bool select_last, const Tensor& x, const Tensor& y);
// op: softmax, log_softmax, hardmax along j. float32 or float64.
void softmax(const std::string& op, const Tensor& x, const Tensor& y);
// Running sum along j.
void cumsum(const Tensor& x, const Tensor& y, bool exclusive, bool reverse);
// The k largest (or smallest) along j, in order (stable: lower index first among equals); indices int64.
void topk(const Tensor& x, int64_t k, bool largest, const Tensor& values, const Tensor& indices);

}  // namespace onnxstream
