// Band prologue/epilogue and GroupNorm statistics for fused convs; the conv itself is conv_packed (ops/conv.h).
#include "ops/conv_band.h"

#include <cmath>
#include <vector>

#include "dispatch.h"
#include "parallel.h"

namespace onnxstream {
namespace {

bool float_or_half(const Tensor& t) { return t.dtype == DType::f32 || t.dtype == DType::f16; }

const char* row(const Tensor& t, int64_t n, int64_t c, int64_t h) {
  return static_cast<const char*>(t.data) + n * t.strides[0] + c * t.strides[1] + h * t.strides[2];
}

void check_rows(const Tensor& t, const char* what) {
  check(t.ndim == 4 && float_or_half(t), std::string("conv band: ") + what + " must be 4-D float32 or float16");
  check(t.shape[3] <= 1 || t.strides[3] == (int64_t)dtype_size(t.dtype),
        std::string("conv band: ") + what + " rows must be contiguous");
}

}  // namespace

void conv_band_prologue(const Tensor& x, int64_t row0, const Tensor* scale_shift, bool silu, const Tensor& y) {
  check_rows(x, "input");
  check_rows(y, "prologue output");
  check(y.dtype == DType::f32, "conv band: prologue output must be float32");
  const int64_t N = y.shape[0], C = y.shape[1], R = y.shape[2], W = y.shape[3];
  check(x.shape[0] == N && x.shape[1] == C && x.shape[3] == W && row0 >= 0 && row0 + R <= x.shape[2],
        "conv band: prologue rows out of range");
  if (scale_shift)
    check(scale_shift->dtype == DType::f32 && scale_shift->contiguous() && scale_shift->numel() == N * 2 * C,
          "conv band: scale_shift must be [N, 2, C] float32");
  const ConvBandConfig& cfg = convband_config();
  const float* ss = scale_shift ? scale_shift->ptr<float>() : nullptr;
  const int x_f16 = x.dtype == DType::f16;
  parallel_for(N * C * R, std::max<int64_t>(1, 4096 / std::max<int64_t>(W, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const int64_t i = r % R, c = r / R % C, n = r / (R * C);
      const float a = ss ? ss[(n * 2) * C + c] : 1.0f, b = ss ? ss[(n * 2 + 1) * C + c] : 0.0f;
      cfg.scaleshift((size_t)W, row(x, n, c, row0 + i), x_f16, a, b, silu,
                     reinterpret_cast<float*>(const_cast<char*>(row(y, n, c, i))));
    }
  });
}

void conv_band_epilogue(const Tensor& z, const Tensor* residual, int64_t s, int64_t y_row0, int64_t z_row0,
                        const int64_t* off_h, const int64_t* off_w, const Tensor& y) {
  check_rows(z, "conv output");
  check_rows(y, "output");
  check(z.dtype == DType::f32, "conv band: conv output must be float32");
  const int64_t N = y.shape[0], M = y.shape[1], R = y.shape[2], W = y.shape[3];
  if (residual) {
    check_rows(*residual, "residual");
    for (int i = 0; i < 4; i++)
      check(residual->shape[i] == y.shape[i], "conv band: residual must be shaped like the output");
  }
  check(s >= 1 && z.shape[0] == N && z.shape[1] == s * s * M, "conv band: conv output channels do not match");
  if (s == 1) check(z.shape[2] == R && z.shape[3] == W, "conv band: conv output must be shaped like the output");
  for (int64_t p = 0; p < s && s > 1; p++) {
    // Every row and column the unshuffle reads must lie inside z (z rows grow with output rows).
    const int64_t last = y_row0 + R - 1;
    const int64_t lo = y_row0 / s - z_row0 + off_h[y_row0 % s], hi = last / s - z_row0 + off_h[last % s];
    check(off_h[p] >= 0 && off_w[p] >= 0 && (R == 0 || (lo >= 0 && hi < z.shape[2])) &&
              (W - 1) / s + off_w[p] < z.shape[3],
          "conv band: sub-pixel rows or columns out of range");
  }
  const ConvBandConfig& cfg = convband_config();
  const int y_f16 = y.dtype == DType::f16, r_f16 = residual && residual->dtype == DType::f16;
  parallel_for(N * M * R, std::max<int64_t>(1, 4096 / std::max<int64_t>(W, 1)), [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> line;
    for (int64_t r = r0; r < r1; r++) {
      const int64_t i = r % R, m = r / R % M, n = r / (R * M);
      const float* src;
      if (s == 1) {
        src = reinterpret_cast<const float*>(row(z, n, m, i));
      } else {
        // Interleave the s column phases of output row o into one contiguous row.
        if ((int64_t)line.size() < W) line.resize(W);
        const int64_t o = y_row0 + i, p = o % s, zr = o / s - z_row0 + off_h[p];
        for (int64_t q = 0; q < s; q++) {
          const float* zq = reinterpret_cast<const float*>(row(z, n, (m * s + p) * s + q, zr)) + off_w[q];
          for (int64_t w = q, j = 0; w < W; w += s, j++) line[w] = zq[j];
        }
        src = line.data();
      }
      cfg.addstore((size_t)W, src, residual ? row(*residual, n, m, i) : nullptr, r_f16,
                   const_cast<char*>(row(y, n, m, i)), y_f16);
    }
  });
}

void group_norm_stats(const Tensor& x, int64_t groups, bool first, const Tensor& shift, const Tensor& sums) {
  check_rows(x, "GroupNorm input");
  const int64_t N = x.shape[0], C = x.shape[1], R = x.shape[2], W = x.shape[3];
  check(groups > 0 && C % groups == 0, "GroupNorm: " + std::to_string(C) + " channels do not split into " +
                                           std::to_string(groups) + " groups");
  check(shift.dtype == DType::f32 && shift.contiguous() && shift.numel() == N * groups,
        "group_norm_stats: shift must be [N, groups] float32");
  check(sums.dtype == DType::f64 && sums.contiguous() && sums.numel() == N * groups * 2,
        "group_norm_stats: sums must be [N, groups, 2] float64");
  const ConvBandConfig& cfg = convband_config();
  const int64_t per = C / groups;
  const int x_f16 = x.dtype == DType::f16;
  float* sh = shift.ptr<float>();
  double* acc = sums.ptr<double>();
  parallel_for(N * groups, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t ng = g0; ng < g1; ng++) {
      const int64_t n = ng / groups, c0 = ng % groups * per;
      if (first) {
        float v[2] = {0.0f, 0.0f};  // x[n, c0, 0, 0] through the kernel: it knows how to read fp16
        if (R > 0 && W > 0) cfg.rsumsq(1, row(x, n, c0, 0), x_f16, 0.0f, v);
        sh[ng] = v[0];
      }
      double s = 0, q = 0;
      for (int64_t c = c0; c < c0 + per; c++)
        for (int64_t i = 0; i < R; i++) {
          float part[2] = {0.0f, 0.0f};  // one row in float, rows summed in double
          cfg.rsumsq((size_t)W, row(x, n, c, i), x_f16, sh[ng], part);
          s += part[0], q += part[1];
        }
      acc[ng * 2] += s;
      acc[ng * 2 + 1] += q;
    }
  });
}

void group_norm_scale_shift(const Tensor& sums, const Tensor& shift, double count, const Tensor& gamma,
                            const Tensor& beta, float eps, const Tensor& scale_shift) {
  const int64_t C = gamma.numel(), G = shift.shape[shift.ndim - 1], N = shift.numel() / std::max<int64_t>(G, 1);
  check(sums.dtype == DType::f64 && shift.dtype == DType::f32 && gamma.dtype == DType::f32 &&
            beta.dtype == DType::f32 && scale_shift.dtype == DType::f32,
        "group_norm_scale_shift: sums float64, the rest float32");
  check(G > 0 && C % G == 0 && beta.numel() == C && sums.numel() == N * G * 2 && scale_shift.numel() == N * 2 * C &&
            gamma.contiguous() && beta.contiguous() && scale_shift.contiguous() && count > 0,
        "group_norm_scale_shift: shapes do not match");
  const double* acc = sums.ptr<double>();
  const float* sh = shift.ptr<float>();
  const float* ga = gamma.ptr<float>();
  const float* be = beta.ptr<float>();
  float* out = scale_shift.ptr<float>();
  const int64_t per = C / G;
  for (int64_t n = 0; n < N; n++)
    for (int64_t g = 0; g < G; g++) {
      const double m1 = acc[(n * G + g) * 2] / count, m2 = acc[(n * G + g) * 2 + 1] / count;
      const double mean = sh[n * G + g] + m1, inv_std = 1.0 / std::sqrt(std::max(m2 - m1 * m1, 0.0) + (double)eps);
      for (int64_t c = g * per; c < (g + 1) * per; c++) {
        out[(n * 2) * C + c] = (float)(inv_std * ga[c]);
        out[(n * 2 + 1) * C + c] = (float)(be[c] - mean * inv_std * ga[c]);
      }
    }
}

}  // namespace onnxstream
