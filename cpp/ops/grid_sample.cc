// Per output point: per spatial axis, the source coordinate (denormalized, rounded for nearest, clamped or
// reflected into range) and its taps (index, weight); then for every channel the sum over the taps' product grid.
// Taps that fall outside the input read 0 (zeros), the edge (border) or the mirrored pixel (reflection).
#include "ops/grid_sample.h"

#include <algorithm>
#include <cmath>

#include "parallel.h"

namespace onnxstream {
namespace {

constexpr int kMaxTaps = 4;  // cubic

// x mirrored at lo and hi until it lies in [lo, hi] (torch's reflect_coordinates).
float reflect(float x, float lo, float hi) {
  const float range = hi - lo;
  if (range <= 0) return lo;
  if (x < lo) {
    const float dx = lo - x;
    const int64_t n = (int64_t)(dx / range);
    const float r = dx - n * range;
    return n % 2 == 0 ? lo + r : hi - r;
  }
  if (x > hi) {
    const float dx = x - hi;
    const int64_t n = (int64_t)(dx / range);
    const float r = dx - n * range;
    return n % 2 == 0 ? hi - r : lo + r;
  }
  return x;
}

void cubic_weights(float t, float w[4]) {  // Keys' kernel, a = -0.75, at distances 1 + t, t, 1 - t, 2 - t
  const float a = -0.75f;
  const float d0 = t + 1, d3 = 2 - t, s = 1 - t;
  w[0] = ((a * d0 - 5 * a) * d0 + 8 * a) * d0 - 4 * a;
  w[1] = ((a + 2) * t - (a + 3)) * t * t + 1;
  w[2] = ((a + 2) * s - (a + 3)) * s * s + 1;
  w[3] = ((a * d3 - 5 * a) * d3 + 8 * a) * d3 - 4 * a;
}

struct AxisTaps {
  int n = 0;
  int64_t index[kMaxTaps];  // -1: outside the input (zeros padding)
  float weight[kMaxTaps];
};

AxisTaps axis_taps(float g, int64_t size, GridMode mode, GridPadding padding, bool align_corners) {
  float c = align_corners ? (g + 1) / 2 * (size - 1) : ((g + 1) * size - 1) / 2;
  if (mode == GridMode::nearest) c = std::nearbyint(c);  // halves to even, as torch
  const float lo = align_corners ? 0.0f : -0.5f, hi = align_corners ? size - 1.0f : size - 0.5f;
  // A point outside is moved inside first, except for cubic, whose four taps are padded one by one (as
  // onnxruntime and torch do: ONNX's reference clamps the point for border padding too).
  if ((c < lo || c > hi) && mode != GridMode::cubic) {
    if (padding == GridPadding::border) c = std::min(std::max(c, 0.0f), size - 1.0f);
    else if (padding == GridPadding::reflection) c = reflect(c, lo, hi);
  }
  AxisTaps t;
  if (mode == GridMode::nearest) {
    t.n = 1;
    t.index[0] = (int64_t)c;  // (truncation: c is whole here, or in (-1, 0) after a reflection)
    t.weight[0] = 1;
  } else {
    const float f = std::floor(c), r = c - f;
    const int64_t i0 = (int64_t)f;
    if (mode == GridMode::linear) {
      t.n = 2;
      t.index[0] = i0, t.index[1] = i0 + 1;
      t.weight[0] = 1 - r, t.weight[1] = r;
    } else {
      t.n = 4;
      for (int k = 0; k < 4; k++) t.index[k] = i0 - 1 + k;
      cubic_weights(r, t.weight);
    }
  }
  for (int k = 0; k < t.n; k++) {  // where each tap reads
    int64_t i = t.index[k];
    if (i >= 0 && i < size) continue;
    if (padding == GridPadding::zeros) i = -1;
    else if (padding == GridPadding::border) i = std::min<int64_t>(std::max<int64_t>(i, 0), size - 1);
    else i = std::min<int64_t>(std::max<int64_t>((int64_t)reflect((float)i, lo, hi), 0), size - 1);
    t.index[k] = i;
  }
  return t;
}

}  // namespace

void grid_sample(const Tensor& x, const Tensor& grid, GridMode mode, GridPadding padding, bool align_corners,
                 const Tensor& y) {
  for (const Tensor* t : {&x, &grid, &y}) {
    check(t->dtype == DType::f32, "GridSample computes in float32");
    check(t->contiguous(), "GridSample: internal: tensors must be contiguous");
  }
  const int nd = x.ndim - 2;
  check(nd >= 1 && nd <= 3, "GridSample supports 1 to 3 spatial axes");
  check(grid.ndim == nd + 2 && grid.shape[nd + 1] == nd && grid.shape[0] == x.shape[0],
        "GridSample: grid must be [N, *out, " + std::to_string(nd) + "] for an input with " + std::to_string(nd) +
            " spatial axes");
  check(y.ndim == x.ndim && y.shape[0] == x.shape[0] && y.shape[1] == x.shape[1], "GridSample: internal: y shape");
  check(mode != GridMode::cubic || nd == 2, "GridSample: cubic mode needs a 4-D input");
  const int64_t N = x.shape[0], C = x.shape[1];
  int64_t in_points = 1, out_points = 1, stride[3] = {1, 1, 1};
  for (int a = nd - 1; a >= 0; a--) {
    stride[a] = in_points;
    in_points *= x.shape[2 + a];
    out_points *= grid.shape[1 + a];
  }
  const float* xp = x.ptr<float>();
  const float* gp = grid.ptr<float>();
  float* yp = y.ptr<float>();
  parallel_for(N * out_points, std::max<int64_t>(1, 1024 / std::max<int64_t>(C, 1)), [&](int64_t p0, int64_t p1) {
    int64_t offset[kMaxTaps * kMaxTaps * kMaxTaps];
    float weight[kMaxTaps * kMaxTaps * kMaxTaps];
    for (int64_t p = p0; p < p1; p++) {
      const int64_t n = p / out_points, o = p % out_points;
      const float* g = gp + p * nd;
      // The tap grid: every combination of one tap per axis (outermost axis first), outside ones dropped.
      int taps = 1;
      offset[0] = 0, weight[0] = 1;
      for (int a = 0; a < nd; a++) {
        const AxisTaps t = axis_taps(g[nd - 1 - a], x.shape[2 + a], mode, padding, align_corners);
        int kept = 0;
        for (int i = taps - 1; i >= 0; i--) {  // in place, from the end: entry i is read before it is written
          const int64_t base = offset[i];
          const float w = weight[i];
          for (int k = t.n - 1; k >= 0; k--) {
            offset[i * t.n + k] = t.index[k] < 0 ? -1 : base + t.index[k] * stride[a];
            weight[i * t.n + k] = t.index[k] < 0 ? 0.0f : w * t.weight[k];
          }
        }
        taps *= t.n;
        for (int i = 0; i < taps; i++)  // drop the taps outside the input (zeros padding)
          if (offset[i] >= 0) offset[kept] = offset[i], weight[kept++] = weight[i];
        taps = kept;
      }
      for (int64_t c = 0; c < C; c++) {
        const float* plane = xp + (n * C + c) * in_points;
        float sum = 0;
        for (int i = 0; i < taps; i++) sum += weight[i] * plane[offset[i]];
        yp[(n * C + c) * out_points + o] = sum;
      }
    }
  });
}

}  // namespace onnxstream
