// Convolution and pooling over 3 spatial axes: Python pads 1-D and 2-D problems with unit axes.
#pragma once
#include <array>
#include <string>

#include "tensor.h"

namespace onnxstream {
struct Activation;
}

namespace onnxstream {

struct Window {
  std::array<int64_t, 3> kernel{1, 1, 1}, strides{1, 1, 1}, pads_begin{0, 0, 0}, pads_end{0, 0, 0}, dilations{1, 1, 1};
};

// x: [N, C, D, H, W] f32; w: [M, C/group, kD, kH, kW] f32 or f16; bias: [M] or null; y: [N, M, oD, oH, oW].
// act (ops/activation.h, may be null) is applied to each output channel in the epilogue.
void conv(const Tensor& x, const Tensor& w, const Tensor* bias, const Window& win, int64_t group, const Tensor& y,
          const Activation* act = nullptr);
// conv with weights packed at convert time: panels holds, per group, pack_gemm_b (gemm.h) of the group's
// [K, M/group] operand (K = C/group * kD * kH * kW, element (k, m) = w[m, k]), float32 or float16; or, int8, per
// group the qc8w blob of that operand (ops/qc8w.h).
void conv_packed(const Tensor& x, const Tensor& panels, int64_t M, const Tensor* bias, const Window& win,
                 int64_t group, const Tensor& y, const Activation* act = nullptr);
// x: [N, C, D, H, W]; w: [C, M/group, kD, kH, kW]; y: [N, M, oD, oH, oW] with output size fixed by the caller;
// output position o = i * stride - pad_begin + k * dilation.
void conv_transpose(const Tensor& x, const Tensor& w, const Tensor* bias, const Window& win, int64_t group,
                    const Tensor& y);
// op: max, avg, lp. Padding is excluded from averages unless count_include_pad. indices (int64, MaxPool's second
// output, NCDHW-flattened per ONNX storage_order 0) may be null.
void pool(const std::string& op, const Tensor& x, const Window& win, bool count_include_pad, float p, const Tensor& y,
          const Tensor* indices);

}  // namespace onnxstream
