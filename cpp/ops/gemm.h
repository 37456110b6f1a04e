// Matrix multiplication. Weights may be float32 or float16 (converted inside the kernel, never as a whole copy).
#pragma once
#include "tensor.h"

namespace onnxstream {

// y[b] = a[b] @ w[b] (+ bias). a: [B, M, K] float32, any strides (batch stride 0 = broadcast);
// w: [B, K, N] float32 or float16, any strides; bias: [N] float32 or null; y: [B, M, N] contiguous float32.
void matmul(const Tensor& a, const Tensor& w, const Tensor* bias, const Tensor& y);
// Weights packed once (at convert time) into 16-column panels, the layout every ISA's kernels read:
// panels: ceil(N/16) x [K][16] of float32 or float16, columns >= N of the last panel zero.
int64_t packed_gemm_b_elements(int64_t K, int64_t N);
// w: [K, N] float32 or float16, any strides -> panels: 1-D contiguous tensor of packed_gemm_b_elements(K, N).
void pack_gemm_b(const Tensor& w, const Tensor& panels);
// y[b] = a[b] @ W (+ bias) with W pre-packed (pack_gemm_b, or an int8 qc8w blob: ops/qc8w.h) and shared by every
// batch. a: [B, M, K] any strides.
void matmul_packed(const Tensor& a, const Tensor& panels, int64_t K, int64_t N, const Tensor* bias, const Tensor& y);
// Integer matmul for int32/int64 tensors (same layout rules, no bias).
void matmul_int(const Tensor& a, const Tensor& w, const Tensor& y);

}  // namespace onnxstream
