// Integer matrix multiplication of 8-bit tensors with zero points, exact in int32 (MatMulInteger, ConvInteger and
// the QLinear ops before their requantization).
#pragma once
#include "tensor.h"

namespace onnxstream {

// y[b, m, n] = sum_k (a[b, m, k] - a_zp[m]) * (w[b, k, n] - w_zp[b, n]).
// a: [B, M, K] uint8 or int8, any strides (batch stride 0 = broadcast); w: [B, K, N] uint8 or int8, any strides;
// a_zp: [M] int32 (stride 0 for one zero point); w_zp: [B, N] int32 (strides 0 to broadcast);
// y: [B, M, N] int32 contiguous. |sums| must fit int32 (K < 2^15 for 8-bit operands).
void qgemm(const Tensor& a, const Tensor& a_zp, const Tensor& w, const Tensor& w_zp, const Tensor& y);

}  // namespace onnxstream
