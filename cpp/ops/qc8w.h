// int8 weights with per-output-channel scales (qc8w), stored as one self-contained blob per [K, N] GEMM operand:
//   ceil(N/16) panels [K][16] int8 (columns >= N of the last panel zero), then N float32 scales zero-padded to a
//   multiple of 16. W[k, n] ~= q[k, n] * scale[n]. A column block cut at a multiple of 16 columns is a blob of the
//   same format. The qc8w GEMM kernels (kernels/microkernels.h) read it as is.
#pragma once
#include "tensor.h"

namespace onnxstream {

// Bytes of the blob of a [K, N] operand; the scales start at byte qc8w_scales_offset(K, N).
int64_t qc8w_blob_bytes(int64_t K, int64_t N);
int64_t qc8w_scales_offset(int64_t K, int64_t N);
// Symmetric quantization of w: [K, N] float32 (any strides) into blob (1-D contiguous int8 of qc8w_blob_bytes):
// scale[n] = max_k |w[k, n]| / 127 (1 for an all-zero column), q = round-half-even(w / scale) clamped to
// [-127, 127]. Weights must be finite.
void pack_gemm_b_qc8w(const Tensor& w, const Tensor& blob);

}  // namespace onnxstream
