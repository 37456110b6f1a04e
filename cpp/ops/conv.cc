// Convolution as implicit GEMM over tiles of output pixels, ConvTranspose as GEMM + col2im, and direct pooling.
// Scratch is bounded per tile (a full im2col of an SD1.5 3x3 conv would be tens of MB).
#include "ops/conv.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/gemm.h"
#include "parallel.h"

namespace onnxstream {
namespace {

// Floats of im2col / GEMM-output scratch per tile: 2 MB keeps the tile in L2/L3 on desktops and small on a Pi.
constexpr int64_t kTileFloats = int64_t(1) << 19;

inline const char* bytes(const Tensor& t) { return static_cast<const char*>(t.data); }

Tensor make(DType dtype, std::initializer_list<int64_t> shape, std::initializer_list<int64_t> strides_elems,
            const void* data) {
  Tensor t;
  t.dtype = dtype;
  t.ndim = (int)shape.size();
  int i = 0;
  for (int64_t s : shape) t.shape[i++] = s;
  i = 0;
  for (int64_t s : strides_elems) t.strides[i++] = s * (int64_t)dtype_size(dtype);
  t.data = const_cast<void*>(data);
  return t;
}

// Spatial geometry shared by conv, conv_transpose and pool: input extent in[], output extent out[].
struct Geometry {
  int64_t in[3], out[3];
  int64_t in_pixels() const { return in[0] * in[1] * in[2]; }
  int64_t out_pixels() const { return out[0] * out[1] * out[2]; }
};

Geometry geometry(const Tensor& x, const Tensor& y) {
  Geometry g;
  for (int i = 0; i < 3; i++) g.in[i] = x.shape[2 + i], g.out[i] = y.shape[2 + i];
  return g;
}

// Pixel p of every channel sits at p * (W stride): the spatial axes can be walked as one.
bool flat_pixels(const Tensor& x) {
  return (x.shape[3] == 1 || x.strides[3] == x.shape[4] * x.strides[4]) &&
         (x.shape[2] == 1 || x.strides[2] == x.shape[3] * x.shape[4] * x.strides[4]);
}

// ConvTranspose may crop with negative pads (an output_shape larger than the natural size).
void check_window(const Window& win, bool allow_negative_pads = false) {
  for (int i = 0; i < 3; i++)
    check(win.kernel[i] >= 1 && win.strides[i] >= 1 && win.dilations[i] >= 1 &&
              (allow_negative_pads || (win.pads_begin[i] >= 0 && win.pads_end[i] >= 0)),
          "window: kernel, strides and dilations must be >= 1 and pads >= 0");
}

// col[k, p - p0] for k = (c, kd, kh, kw) over channels [c0, c0 + C) and output pixels [p0, p1); zero where the
// window falls into the padding. x points at image n (byte strides xs[] for c, d, h, w).
void im2col(const char* x, const int64_t* xs, int64_t c0, int64_t C, const Geometry& g, const Window& win,
            int64_t p0, int64_t p1, float* col) {
  const int64_t kk = win.kernel[0] * win.kernel[1] * win.kernel[2], P = p1 - p0;
  parallel_for(C * kk, std::max<int64_t>(1, 4096 / std::max<int64_t>(P, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      int64_t c = r / kk, k = r % kk;
      int64_t kw = k % win.kernel[2], kh = (k / win.kernel[2]) % win.kernel[1], kd = k / (win.kernel[2] * win.kernel[1]);
      const char* xc = x + (c0 + c) * xs[0];
      float* dst = col + r * P;
      // Walk output pixels with counters instead of dividing per element.
      int64_t ow = p0 % g.out[2], oh = (p0 / g.out[2]) % g.out[1], od = p0 / (g.out[2] * g.out[1]);
      for (int64_t p = 0; p < P;) {
        int64_t id = od * win.strides[0] - win.pads_begin[0] + kd * win.dilations[0];
        int64_t ih = oh * win.strides[1] - win.pads_begin[1] + kh * win.dilations[1];
        int64_t run = std::min(P - p, g.out[2] - ow);  // pixels left in this output row
        if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1]) {
          std::fill(dst + p, dst + p + run, 0.0f);
        } else {
          const char* row = xc + id * xs[1] + ih * xs[2];
          int64_t iw = ow * win.strides[2] - win.pads_begin[2] + kw * win.dilations[2];
          for (int64_t j = 0; j < run; j++, iw += win.strides[2])
            dst[p + j] = (iw >= 0 && iw < g.in[2]) ? *reinterpret_cast<const float*>(row + iw * xs[3]) : 0.0f;
        }
        p += run;
        ow = 0;
        if (++oh == g.out[1]) oh = 0, od++;
      }
    }
  });
}

// y[c0 + m, p0 + p] = tile[p, m]: the GEMM writes pixel-major tiles, the output is channel-major.
void store_transposed(const float* tile, int64_t P, int64_t Mg, float* y, int64_t y_channel_stride) {
  parallel_for(Mg, std::max<int64_t>(1, 4096 / std::max<int64_t>(P, 1)), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; m++) {
      float* dst = y + m * y_channel_stride;
      for (int64_t p = 0; p < P; p++) dst[p] = tile[p * Mg + m];
    }
  });
}

}  // namespace

void conv(const Tensor& x, const Tensor& w, const Tensor* bias, const Window& win, int64_t group, const Tensor& y) {
  check(x.ndim == 5 && w.ndim == 5 && y.ndim == 5, "conv expects 5-D x, w and y (N, C, D, H, W)");
  check(x.dtype == DType::f32 && y.dtype == DType::f32, "conv: input and output must be float32");
  check(w.dtype == DType::f32 || w.dtype == DType::f16, "conv: weights must be float32 or float16");
  check(y.contiguous(), "conv: output must be contiguous");
  check(w.contiguous(), "conv: weights must be contiguous");
  check_window(win);
  const int64_t N = x.shape[0], C = x.shape[1], M = w.shape[0];
  check(group >= 1 && C % group == 0 && M % group == 0, "conv: channels must divide evenly into groups");
  const int64_t Cg = C / group, Mg = M / group;
  check(w.shape[1] == Cg, "conv: weight channels (dim 1) must equal input channels / group");
  for (int i = 0; i < 3; i++) check(w.shape[2 + i] == win.kernel[i], "conv: kernel shape differs from weight shape");
  check(y.shape[0] == N && y.shape[1] == M, "conv: output must be [N, M, ...]");
  if (bias) check(bias->dtype == DType::f32 && bias->numel() == M && bias->contiguous(), "conv: bias must be [M] float32");
  const Geometry g = geometry(x, y);
  for (int i = 0; i < 3; i++) {
    int64_t span = (win.kernel[i] - 1) * win.dilations[i] + 1;
    check(g.out[i] == (g.in[i] + win.pads_begin[i] + win.pads_end[i] - span) / win.strides[i] + 1 || g.out[i] == 0,
          "conv: output size does not match input, kernel, strides, pads and dilations");
  }
  const int64_t K = Cg * win.kernel[0] * win.kernel[1] * win.kernel[2], P = g.out_pixels();
  if (N == 0 || M == 0 || P == 0) return;
  float* out = y.ptr<float>();
  bool pointwise = K == Cg;
  for (int i = 0; i < 3; i++)
    pointwise = pointwise && win.strides[i] == 1 && win.pads_begin[i] == 0 && win.pads_end[i] == 0;
  // ... and pixel p must sit at p * (W stride) in memory.
  pointwise = pointwise && flat_pixels(x);
  // Tile output pixels so the im2col scratch [K, tile] and the GEMM output [tile, Mg] stay bounded.
  const int64_t tile = std::min(P, std::max<int64_t>(16, kTileFloats / std::max(K, Mg)));
  std::vector<float> col(pointwise ? 0 : K * tile), acc(tile * Mg);
  const int64_t xs[4] = {x.strides[1], x.strides[2], x.strides[3], x.strides[4]};
  const size_t es = dtype_size(w.dtype);
  for (int64_t n = 0; n < N; n++) {
    const char* xn = bytes(x) + n * x.strides[0];
    for (int64_t p0 = 0; p0 < P; p0 += tile) {
      const int64_t pt = std::min(tile, P - p0);
      for (int64_t gi = 0; gi < group; gi++) {
        Tensor a;
        if (pointwise) {
          // 1x1 stride 1: x viewed as [pixels, C] is already the operand (a transposed view, W stride = pixel step).
          a = make(DType::f32, {1, pt, K}, {0, 0, 0}, xn + gi * Cg * x.strides[1] + p0 * x.strides[4]);
          a.strides[1] = x.strides[4];
          a.strides[2] = x.strides[1];
        } else {
          im2col(xn, xs, gi * Cg, Cg, g, win, p0, p0 + pt, col.data());
          a = make(DType::f32, {1, pt, K}, {0, 1, pt}, col.data());  // col is [K, pt]: a transposed view
        }
        // w[m, c, kd, kh, kw] of group gi viewed as [K, Mg]: K steps by one element, Mg by K elements.
        Tensor wk = make(w.dtype, {1, K, Mg}, {0, 1, K}, bytes(w) + gi * Mg * K * es);
        Tensor b, *bp = nullptr;
        if (bias) b = make(DType::f32, {Mg}, {1}, bias->ptr<float>() + gi * Mg), bp = &b;
        Tensor yt = make(DType::f32, {1, pt, Mg}, {0, Mg, 1}, acc.data());
        matmul(a, wk, bp, yt);
        store_transposed(acc.data(), pt, Mg, out + (n * M + gi * Mg) * P + p0, P);
      }
    }
  }
}

void conv_transpose(const Tensor& x, const Tensor& w, const Tensor* bias, const Window& win, int64_t group,
                    const Tensor& y) {
  check(x.ndim == 5 && w.ndim == 5 && y.ndim == 5, "conv_transpose expects 5-D x, w and y (N, C, D, H, W)");
  check(x.dtype == DType::f32 && y.dtype == DType::f32, "conv_transpose: input and output must be float32");
  check(w.dtype == DType::f32 || w.dtype == DType::f16, "conv_transpose: weights must be float32 or float16");
  check(y.contiguous() && w.contiguous(), "conv_transpose: output and weights must be contiguous");
  check_window(win, true);
  const int64_t N = x.shape[0], C = x.shape[1];
  check(group >= 1 && C % group == 0, "conv_transpose: input channels must divide evenly into groups");
  check(w.shape[0] == C, "conv_transpose: weight dim 0 must equal input channels");
  const int64_t Cg = C / group, Mg = w.shape[1], M = Mg * group;
  for (int i = 0; i < 3; i++) check(w.shape[2 + i] == win.kernel[i], "conv_transpose: kernel shape differs from weight shape");
  check(y.shape[0] == N && y.shape[1] == M, "conv_transpose: output must be [N, group * w.shape[1], ...]");
  if (bias) check(bias->dtype == DType::f32 && bias->numel() == M && bias->contiguous(), "conv_transpose: bias must be [M] float32");
  const Geometry g = geometry(x, y);
  const int64_t kk = win.kernel[0] * win.kernel[1] * win.kernel[2], Kc = Mg * kk;  // GEMM columns per group
  const int64_t Pin = g.in_pixels(), Pout = g.out_pixels();
  float* out = y.ptr<float>();
  // Start from the bias; col2im accumulates into the output.
  parallel_for(N * M, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) std::fill(out + r * Pout, out + (r + 1) * Pout, bias ? bias->ptr<float>()[r % M] : 0.0f);
  });
  if (N == 0 || Pin == 0 || Pout == 0 || M == 0) return;
  check(flat_pixels(x), "conv_transpose: the input's spatial axes must be contiguous");
  const int64_t tile = std::min(Pin, std::max<int64_t>(16, kTileFloats / std::max<int64_t>(Kc, 1)));
  std::vector<float> acc(tile * Kc);
  const size_t es = dtype_size(w.dtype);
  for (int64_t n = 0; n < N; n++) {
    const char* xn = bytes(x) + n * x.strides[0];
    for (int64_t p0 = 0; p0 < Pin; p0 += tile) {
      const int64_t pt = std::min(tile, Pin - p0);
      for (int64_t gi = 0; gi < group; gi++) {
        // acc[p, (m, kd, kh, kw)] = sum_c x[c, p] * w[c, m, kd, kh, kw]: x as a transposed view, w rows as-is.
        Tensor a = make(DType::f32, {1, pt, Cg}, {0, 0, 0}, xn + gi * Cg * x.strides[1] + p0 * x.strides[4]);
        a.strides[1] = x.strides[4];
        a.strides[2] = x.strides[1];
        Tensor wk = make(w.dtype, {1, Cg, Kc}, {0, Kc, 1}, bytes(w) + gi * Cg * Kc * es);
        Tensor yt = make(DType::f32, {1, pt, Kc}, {0, Kc, 1}, acc.data());
        matmul(a, wk, nullptr, yt);
        // col2im: each thread owns whole output channels, so the scatter-adds never race.
        float* yg = out + (n * M + gi * Mg) * Pout;
        parallel_for(Mg, 1, [&](int64_t m0, int64_t m1) {
          for (int64_t m = m0; m < m1; m++) {
            float* ym = yg + m * Pout;
            for (int64_t p = 0; p < pt; p++) {
              int64_t q = p0 + p, iw = q % g.in[2], ih = (q / g.in[2]) % g.in[1], id = q / (g.in[2] * g.in[1]);
              const float* src = acc.data() + p * Kc + m * kk;
              for (int64_t kd = 0; kd < win.kernel[0]; kd++) {
                int64_t od = id * win.strides[0] - win.pads_begin[0] + kd * win.dilations[0];
                if (od < 0 || od >= g.out[0]) continue;
                for (int64_t kh = 0; kh < win.kernel[1]; kh++) {
                  int64_t oh = ih * win.strides[1] - win.pads_begin[1] + kh * win.dilations[1];
                  if (oh < 0 || oh >= g.out[1]) continue;
                  const float* s = src + (kd * win.kernel[1] + kh) * win.kernel[2];
                  float* row = ym + (od * g.out[1] + oh) * g.out[2];
                  for (int64_t kw = 0; kw < win.kernel[2]; kw++) {
                    int64_t ow = iw * win.strides[2] - win.pads_begin[2] + kw * win.dilations[2];
                    if (ow >= 0 && ow < g.out[2]) row[ow] += s[kw];
                  }
                }
              }
            }
          }
        });
      }
    }
  }
}

void pool(const std::string& op, const Tensor& x, const Window& win, bool count_include_pad, float p, const Tensor& y,
          const Tensor* indices) {
  check(x.ndim == 5 && y.ndim == 5, "pool expects 5-D x and y (N, C, D, H, W)");
  check(x.dtype == DType::f32 && y.dtype == DType::f32, "pool: input and output must be float32");
  check(y.contiguous(), "pool: output must be contiguous");
  check(op == "max" || op == "avg" || op == "lp", "pool: op must be max, avg or lp, got " + op);
  check(!indices || op == "max", "pool: indices are only produced by max pooling");
  if (indices)
    check(indices->dtype == DType::i64 && indices->contiguous() && indices->numel() == y.numel(),
          "pool: indices must be int64 shaped like the output");
  check_window(win);
  check(y.shape[0] == x.shape[0] && y.shape[1] == x.shape[1], "pool: output must be [N, C, ...] like the input");
  const Geometry g = geometry(x, y);
  const int64_t C = x.shape[1], Pout = g.out_pixels();
  const int64_t op_kind = op == "max" ? 0 : op == "avg" ? 1 : 2;
  float* out = y.ptr<float>();
  int64_t* idx_out = indices ? indices->ptr<int64_t>() : nullptr;
  parallel_for(x.shape[0] * C, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const char* xp = bytes(x) + (r / C) * x.strides[0] + (r % C) * x.strides[1];
      int64_t o = r * Pout;
      for (int64_t od = 0; od < g.out[0]; od++)
        for (int64_t oh = 0; oh < g.out[1]; oh++)
          for (int64_t ow = 0; ow < g.out[2]; ow++, o++) {
            const int64_t start[3] = {od * win.strides[0] - win.pads_begin[0], oh * win.strides[1] - win.pads_begin[1],
                                      ow * win.strides[2] - win.pads_begin[2]};
            float best = -std::numeric_limits<float>::infinity(), sum = 0.0f;
            int64_t best_at = -1, count = 0, padded_count = 0;
            for (int64_t kd = 0; kd < win.kernel[0]; kd++) {
              int64_t id = start[0] + kd * win.dilations[0];
              for (int64_t kh = 0; kh < win.kernel[1]; kh++) {
                int64_t ih = start[1] + kh * win.dilations[1];
                for (int64_t kw = 0; kw < win.kernel[2]; kw++) {
                  int64_t iw = start[2] + kw * win.dilations[2];
                  // Positions inside the padded extent count for count_include_pad; past it (ceil_mode) never.
                  bool in_padded = id < g.in[0] + win.pads_end[0] && ih < g.in[1] + win.pads_end[1] &&
                                   iw < g.in[2] + win.pads_end[2];
                  padded_count += in_padded;
                  if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1] || iw < 0 || iw >= g.in[2]) continue;
                  float v = *reinterpret_cast<const float*>(xp + id * x.strides[2] + ih * x.strides[3] + iw * x.strides[4]);
                  count++;
                  if (op_kind == 0) {
                    if (v > best || best_at < 0) best = v, best_at = (id * g.in[1] + ih) * g.in[2] + iw;
                  } else if (op_kind == 1) {
                    sum += v;
                  } else {
                    sum += std::pow(std::fabs(v), p);
                  }
                }
              }
            }
            if (op_kind == 0) {
              out[o] = best;
              if (idx_out) idx_out[o] = best_at < 0 ? -1 : r * g.in_pixels() + best_at;
            } else if (op_kind == 1) {
              int64_t d = count_include_pad ? padded_count : count;
              out[o] = d > 0 ? sum / (float)d : 0.0f;
            } else {
              out[o] = std::pow(sum, 1.0f / p);
            }
          }
    }
  });
}

}  // namespace onnxstream
