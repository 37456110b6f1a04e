// Normalizations. float32 activations; statistics accumulated in double for stability.
#pragma once
#include "tensor.h"

namespace onnxstream {

// x, y: [rows, n]; scale, bias: [n] or null. mean, inv_std: [rows] float32 or null (LayerNormalization's extra outputs).
void layer_norm(const Tensor& x, const Tensor* scale, const Tensor* bias, float eps, const Tensor& y,
                const Tensor* mean, const Tensor* inv_std);
// x, y: [rows, n]; y = x / sqrt(mean(x^2) + eps) * scale, scale: [n] (RMSNormalization).
void rms_norm(const Tensor& x, const Tensor& scale, float eps, const Tensor& y);
// x, y: [N, C, S]; statistics over (C/groups channels x S) per group; scale, bias: [C] applied per channel.
// InstanceNormalization is groups == C.
void group_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, int64_t groups, float eps, const Tensor& y);
// x, y: [N, C, S]; y = (x - mean[c]) / sqrt(var[c] + eps) * scale[c] + bias[c].
void batch_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, const Tensor& mean, const Tensor& var,
                float eps, const Tensor& y);

}  // namespace onnxstream
