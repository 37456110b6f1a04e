// Separable resampling: one axis at a time, each output index a weighted sum of a few input indices.
#pragma once
#include "tensor.h"

namespace onnxstream {

// y[..., o, ...] = sum_t weights[o, t] * x[..., index[o, t], ...] along `axis`. index: [out, taps] int64,
// weights: [out, taps] float32; x, y float32 with equal shapes except along axis.
void resample_axis(const Tensor& x, int axis, const Tensor& index, const Tensor& weights, const Tensor& y);

}  // namespace onnxstream
