// Rotary position embedding (RotaryEmbedding, opset 23): each pair (x1, x2) of the first rotary_dim features of
// a head is rotated by its position's angle: (x1 cos - x2 sin, x1 sin + x2 cos).
#pragma once
#include "tensor.h"

namespace onnxstream {

// x, y: [B, S, H, D] float32 views (any strides, the innermost axis contiguous): y may be x's layout transposed.
// cos, sin: [B, S, rotary_dim / 2] float32 (any strides: a position table broadcast over the batch is fine).
// interleaved: pairs are (x[2i], x[2i+1]); else (x[i], x[i + rotary_dim / 2]). Features past rotary_dim are copied.
void rotary_embedding(const Tensor& x, const Tensor& cos, const Tensor& sin, int64_t rotary_dim, bool interleaved,
                      const Tensor& y);

}  // namespace onnxstream
