// The pieces a fused conv runs per band of output rows (runtime/ops/fused_conv.py): the prologue turns a band of
// stored input (float32 or fp16) into the conv's float32 input, normalized and activated on the way; the
// epilogue adds the residual and stores the band as float32 or fp16, unshuffling sub-pixel phases; GroupNorm
// statistics are accumulated band by band so the normalized tensor never exists whole.
#pragma once
#include "tensor.h"

namespace onnxstream {

// x: [N, C, Hx, W] f32 or f16; y: [N, C, R, W] f32; both with unit stride along W.
// y[n, c, i, :] = act(a * x[n, c, row0 + i, :] + b) with (a, b) = scale_shift[n, :, c] ([N, 2, C] f32), or
// (1, 0) when scale_shift is null; act is SiLU when silu. y may be x itself (row0 = 0).
void conv_band_prologue(const Tensor& x, int64_t row0, const Tensor* scale_shift, bool silu, const Tensor& y);

// y: [N, M, R, Wy] f32 or f16, rows y_row0.. of the output; residual: null or shaped like y (f32 or f16).
// s == 1: z is [N, M, R, Wy] f32 and y = z + residual.
// s > 1, a sub-pixel conv: z is [N, M*s*s, Rz, Wz] f32 holding conv output rows z_row0.., phase (p, q) of output
// channel m in z channel (m*s + p)*s + q (so column blocks of z channels hold whole channels), and
// y[n, m, o, w] = z[n, (m*s + o%s)*s + w%s, o/s - z_row0 + off_h[o%s], w/s + off_w[w%s]] + residual.
void conv_band_epilogue(const Tensor& z, const Tensor* residual, int64_t s, int64_t y_row0, int64_t z_row0,
                        const int64_t* off_h, const int64_t* off_w, const Tensor& y);

// Accumulates, per image n and group g, the sums of (x - shift) and (x - shift)^2 over x: [N, C, R, W] f32 or f16
// (unit W stride) into sums: [N, G, 2] f64. shift: [N, G] f32, set from x[n, g*C/G, 0, 0] when first (a value of
// the group keeps E[x^2] - E[x]^2 from cancelling when |mean| >> std).
void group_norm_stats(const Tensor& x, int64_t groups, bool first, const Tensor& shift, const Tensor& sums);

// scale_shift: [N, 2, C] f32, the per-channel (a, b) with a*x + b = (x - mean) / sqrt(var + eps) * gamma + beta,
// from sums / shift of group_norm_stats over count elements per group; gamma, beta: [C] f32.
void group_norm_scale_shift(const Tensor& sums, const Tensor& shift, double count, const Tensor& gamma,
                            const Tensor& beta, float eps, const Tensor& scale_shift);

}  // namespace onnxstream
