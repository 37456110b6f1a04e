// Fused attention: y = softmax(q @ kt + mask) @ v without materializing the [M, N] score matrix
// (at a 64x64 SD latent it would be 4096 x 4096 per head: 1 GB for batch 2).
#pragma once
#include "tensor.h"

namespace onnxstream {

// q: [B, H, M, D]; kt: [B, H, D, N] (keys transposed, as exporters emit them); v: [B, H, N, Dv];
// kt and v may have any strides (they are packed into panels); q rows need a contiguous innermost axis.
// mask: null or additive, broadcast to [B, H, M, N] (zero strides); y: [B, H, M, Dv] contiguous. All float32.
// Rows whose keys are all masked out give NaN (like Softmax), or 0 with zero_empty_rows.
void attention(const Tensor& q, const Tensor& kt, const Tensor& v, const Tensor* mask, const Tensor& y,
               bool zero_empty_rows);

}  // namespace onnxstream
