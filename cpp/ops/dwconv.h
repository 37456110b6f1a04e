// Depthwise 2-D convolution (group == input channels == output channels) on NCHW tensors, row by row with the
// f32-dwconv kernels; never through the GEMM panels, whose 16 columns would hold one channel each.
#pragma once
#include "ops/activation.h"
#include "ops/conv.h"

namespace onnxstream {

// x: [N, C, 1, H, W] f32 (the conv ops' 5-D form, one depth slice), w: [C, kH * kW] f32, bias: [C] or null,
// win: 1 x kH x kW window; y: [N, C, 1, oH, oW] contiguous, y = act(conv + bias).
void dwconv(const Tensor& x, const Tensor& w, const Tensor* bias, const Window& win, const Activation& act,
            const Tensor& y);

}  // namespace onnxstream
