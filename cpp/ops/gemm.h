// Matrix multiplication. Weights may be float32 or float16 (converted inside the kernel, never as a whole copy).
#pragma once
#include "tensor.h"

namespace onnxstream {

// y[b] = a[b] @ w[b] (+ bias). a: [B, M, K] float32, any strides (batch stride 0 = broadcast);
// w: [B, K, N] float32 or float16, any strides; bias: [N] float32 or null; y: [B, M, N] contiguous float32.
void matmul(const Tensor& a, const Tensor& w, const Tensor* bias, const Tensor& y);
// Integer matmul for int32/int64 tensors (same layout rules, no bias).
void matmul_int(const Tensor& a, const Tensor& w, const Tensor& y);

}  // namespace onnxstream
