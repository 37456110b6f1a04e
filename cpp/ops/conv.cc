// Convolution as implicit GEMM over tiles of output pixels, ConvTranspose as GEMM + col2im, and direct pooling.
// Scratch is bounded per tile (a full im2col of an SD1.5 3x3 conv would be tens of MB).
#include "ops/conv.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include "dispatch.h"
#include "ops/activation.h"
#include "ops/gemm.h"
#include "ops/qc8w.h"
#include "parallel.h"

namespace onnxstream {
namespace {

// Floats of im2col / GEMM-output scratch per tile: 2 MB keeps the tile in L2/L3 on desktops and small on a Pi.
constexpr int64_t kTileFloats = int64_t(1) << 19;
// Window values im2col gathers per k-major stage before transposing them into the [pixels, kc] block: a 16 x tile
// stage (12 KB at 192 pixels) stays in L1.
constexpr int64_t kStageK = 16;

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

// rowmax[i] = max over input rows [ha, hb) of row[i] (NaN kept), for i < W; -inf when the range is empty (all
// padding). One pass over the rows per 4 columns, so rowmax is stored once.
#if defined(__SSE2__)
// The running max (NaN kept) of 16 consecutive floats over several loads, in four registers: four independent
// chains instead of one (one chain was bound by maxps latency and the loop around it).
struct Max16 {
  __m128 b0 = _mm_set1_ps(-std::numeric_limits<float>::infinity()), b1 = b0, b2 = b0, b3 = b0;
  __m128 n0 = _mm_setzero_ps(), n1 = n0, n2 = n0, n3 = n0;
  void add(const float* p) {
    const __m128 v0 = _mm_loadu_ps(p), v1 = _mm_loadu_ps(p + 4), v2 = _mm_loadu_ps(p + 8), v3 = _mm_loadu_ps(p + 12);
    b0 = _mm_max_ps(v0, b0), b1 = _mm_max_ps(v1, b1), b2 = _mm_max_ps(v2, b2), b3 = _mm_max_ps(v3, b3);
    n0 = _mm_or_ps(n0, _mm_cmpunord_ps(v0, v0)), n1 = _mm_or_ps(n1, _mm_cmpunord_ps(v1, v1));
    n2 = _mm_or_ps(n2, _mm_cmpunord_ps(v2, v2)), n3 = _mm_or_ps(n3, _mm_cmpunord_ps(v3, v3));
  }
  void store(float* y) const {
    _mm_storeu_ps(y, _mm_or_ps(b0, n0)), _mm_storeu_ps(y + 4, _mm_or_ps(b1, n1));
    _mm_storeu_ps(y + 8, _mm_or_ps(b2, n2)), _mm_storeu_ps(y + 12, _mm_or_ps(b3, n3));
  }
};
#endif

void max_rows(const char* x, int64_t row_bytes, int64_t ha, int64_t hb, int64_t W, float* rowmax) {
  const float* row0 = reinterpret_cast<const float*>(x + ha * row_bytes);
  const int64_t step = row_bytes / 4;
  int64_t i = 0;
#if defined(__SSE2__)
  // 16 columns at a time: four independent max chains per row, not one (the loop was bound by maxps latency).
  for (; i + 16 <= W; i += 16) {
    Max16 m;
    for (int64_t h = 0; h < hb - ha; h++) m.add(row0 + h * step + i);
    m.store(rowmax + i);
  }
  for (; i + 4 <= W; i += 4) {
    __m128 best = _mm_set1_ps(-std::numeric_limits<float>::infinity()), nan = _mm_setzero_ps();
    for (int64_t h = 0; h < hb - ha; h++) {
      const __m128 v = _mm_loadu_ps(row0 + h * step + i);
      best = _mm_max_ps(v, best);  // (returns best when either is NaN: the NaN lanes are ORed in after)
      nan = _mm_or_ps(nan, _mm_cmpunord_ps(v, v));
    }
    _mm_storeu_ps(rowmax + i, _mm_or_ps(best, nan));
  }
#endif
  for (; i < W; i++) {
    float best = -std::numeric_limits<float>::infinity();
    for (int64_t h = 0; h < hb - ha; h++) {
      const float v = row0[h * step + i];
      best = v > best || v != v ? v : best;
    }
    rowmax[i] = best;
  }
}

// y[ow] for output columns ow in [a, a + 4j) <= b, each the max (NaN kept) of the kw values of rowmax from
// ow * sw - pw, all inside the row; returns the first column not done. Strides 1 and 2 (the CNN cases) only.
int64_t max_columns(const float* rowmax, int64_t W, int64_t a, int64_t b, int64_t sw, int64_t pw, int64_t kw,
                    float* y) {
  int64_t ow = a;
#if defined(__SSE2__)
  if (sw == 1) {  // 16 outputs at a time: four independent chains
    for (; ow + 16 <= b; ow += 16) {
      Max16 m;
      for (int64_t j = 0; j < kw; j++) m.add(rowmax + ow - pw + j);
      m.store(y + ow);
    }
  }
  if (sw == 1 || sw == 2) {
    // Stride 2 loads 8 values per tap, one past the 4th output's last: that one must be inside the row too.
    for (; ow + 4 <= b && (sw == 1 || (ow + 3) * 2 - pw + kw < W); ow += 4) {
      const float* r = rowmax + ow * sw - pw;
      __m128 best = _mm_set1_ps(-std::numeric_limits<float>::infinity()), nan = _mm_setzero_ps();
      for (int64_t j = 0; j < kw; j++) {
        const __m128 v = sw == 1 ? _mm_loadu_ps(r + j)
                                 : _mm_shuffle_ps(_mm_loadu_ps(r + j), _mm_loadu_ps(r + j + 4), _MM_SHUFFLE(2, 0, 2, 0));
        best = _mm_max_ps(v, best);
        nan = _mm_or_ps(nan, _mm_cmpunord_ps(v, v));
      }
      _mm_storeu_ps(y + ow, _mm_or_ps(best, nan));
    }
  }
#endif
  return ow;
}

// ConvTranspose may crop with negative pads (an output_shape larger than the natural size). Values come from
// graph.json, so they are bounded too: products of two of them stay far from int64 overflow.
void check_window(const Window& win, bool allow_negative_pads = false) {
  constexpr int64_t kMax = int64_t(1) << 31;
  for (int i = 0; i < 3; i++) {
    check(win.kernel[i] >= 1 && win.strides[i] >= 1 && win.dilations[i] >= 1 &&
              (allow_negative_pads || (win.pads_begin[i] >= 0 && win.pads_end[i] >= 0)),
          "window: kernel, strides and dilations must be >= 1 and pads >= 0");
    check(win.kernel[i] <= kMax && win.strides[i] <= kMax && win.dilations[i] <= kMax &&
              std::abs(win.pads_begin[i]) <= kMax && std::abs(win.pads_end[i]) <= kMax,
          "window: kernel, strides, dilations and pads must be below 2^31");
  }
}

// dst[j * ld_dst + i] = src[i * ld_src + j] for i < rows, j < cols (floats), in 16x16 blocks: a block writes 16 dst
// rows a full 64-byte line each (dst rows are often 16 KB apart; a taller block would thrash one L1 set). 4x4
// register transposes where SSE is baseline, one element at a time for the edges and elsewhere.
void transpose(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst, int64_t ld_dst) {
  for (int64_t j0 = 0; j0 < cols; j0 += 16) {
    const int64_t j1 = std::min(cols, j0 + 16);
    for (int64_t i0 = 0; i0 < rows; i0 += 16) {
      const int64_t i1 = std::min(rows, i0 + 16);
      int64_t j = j0;
#if defined(__SSE2__)
      for (; j + 4 <= j1; j += 4) {
        int64_t i = i0;
        for (; i + 4 <= i1; i += 4) {
          const float* s = src + i * ld_src + j;
          __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + ld_src);
          __m128 r2 = _mm_loadu_ps(s + 2 * ld_src), r3 = _mm_loadu_ps(s + 3 * ld_src);
          _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
          float* d = dst + j * ld_dst + i;
          _mm_storeu_ps(d, r0);
          _mm_storeu_ps(d + ld_dst, r1);
          _mm_storeu_ps(d + 2 * ld_dst, r2);
          _mm_storeu_ps(d + 3 * ld_dst, r3);
        }
        for (; i < i1; i++)
          for (int64_t c = 0; c < 4; c++) dst[(j + c) * ld_dst + i] = src[i * ld_src + j + c];
      }
#endif
      for (; j < j1; j++)
        for (int64_t i = i0; i < i1; i++) dst[j * ld_dst + i] = src[i * ld_src + j];
    }
  }
}

// dst[i] = src[i] for i < n: inline, as runs are a few dozen floats and a memcpy call costs as much.
inline void copy_floats(const float* src, int64_t n, float* dst) {
  int64_t i = 0;
#if defined(__SSE2__)
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(dst + i, _mm_loadu_ps(src + i));
#endif
  for (; i < n; i++) dst[i] = src[i];
}

// Outputs [lo, hi) of a run of `run` outputs whose first reads input column iw0 (stride sw) read columns inside
// [0, in[2]); the rest fall into the padding.
inline void inside_span(const Geometry& g, int64_t sw, int64_t iw0, int64_t run, int64_t& lo, int64_t& hi) {
  lo = std::min(run, iw0 < 0 ? (-iw0 + sw - 1) / sw : 0);
  hi = std::max(lo, std::min(run, iw0 < g.in[2] ? (g.in[2] - 1 - iw0) / sw + 1 : 0));
}

// inside_span of a whole output row (starting at ow = 0) per kernel column kw, as [lo, hi] pairs: the divisions
// by the stride done once per conv, not once per window row (a 1-D conv over a few frames has K rows of 4 pixels).
std::vector<int64_t> row_spans(const Geometry& g, const Window& win) {
  std::vector<int64_t> spans(2 * win.kernel[2]);
  for (int64_t kw = 0; kw < win.kernel[2]; kw++)
    inside_span(g, win.strides[2], -win.pads_begin[2] + kw * win.dilations[2], g.out[2], spans[2 * kw],
                spans[2 * kw + 1]);
  return spans;
}

// stage[j][i] = window value k0 + j = (c, kd, kh, kw) of output pixel p0 + i, for j < kn and i < pt; zero where the
// window falls into the padding. k-major, so each window value is a few runs of one input row (contiguous for
// stride 1) with the padding clamped once per output row; transpose() then makes the [pixels, kc] operand.
// x points at channel 0 of this group in image n (byte strides xs[] for c, d, h, w).
void im2col_kmajor(const char* x, const int64_t* xs, const Geometry& g, const Window& win, const int64_t* row_lohi,
                   int64_t p0, int64_t pt, int64_t k0, int64_t kn, float* stage) {
  const int64_t kw_n = win.kernel[2], kh_n = win.kernel[1], sw = win.strides[2], step = xs[3] / 4;
  const int64_t ow0 = p0 % g.out[2], oh0 = (p0 / g.out[2]) % g.out[1], od0 = p0 / (g.out[2] * g.out[1]);
  // k = ((c * kd_n + kd) * kh_n + kh) * kw_n + kw, stepped rather than divided per row: with few pixels per
  // tile (a 1-D conv over 4 frames) the divisions cost more than the copies.
  int64_t kw = k0 % kw_n, kh = (k0 / kw_n) % kh_n, kd = (k0 / (kw_n * kh_n)) % win.kernel[0];
  const char* xc = x + k0 / (kw_n * kh_n * win.kernel[0]) * xs[0];
  for (int64_t j = 0; j < kn; j++, kw++) {
    if (kw == kw_n) {
      kw = 0;
      if (++kh == kh_n) {
        kh = 0;
        if (++kd == win.kernel[0]) kd = 0, xc += xs[0];
      }
    }
    float* dst = stage + j * pt;
    int64_t ow = ow0, oh = oh0, od = od0;
    for (int64_t p = 0; p < pt;) {
      const int64_t id = od * win.strides[0] - win.pads_begin[0] + kd * win.dilations[0];
      const int64_t ih = oh * win.strides[1] - win.pads_begin[1] + kh * win.dilations[1];
      const int64_t run = std::min(pt - p, g.out[2] - ow);  // pixels left in this output row
      float* d = dst + p;
      if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1]) {
        std::fill(d, d + run, 0.0f);
      } else {
        const int64_t iw0 = ow * sw - win.pads_begin[2] + kw * win.dilations[2];
        int64_t lo, hi;
        if (ow == 0) {
          lo = std::min(run, row_lohi[2 * kw]);
          hi = std::max(lo, std::min(run, row_lohi[2 * kw + 1]));
        } else {
          inside_span(g, sw, iw0, run, lo, hi);
        }
        const float* row = reinterpret_cast<const float*>(xc + id * xs[1] + ih * xs[2]);
        std::fill(d, d + lo, 0.0f);
        if (sw * step == 1) {
          copy_floats(row + iw0 + lo, hi - lo, d + lo);
        } else {
          for (int64_t i = lo; i < hi; i++) d[i] = row[(iw0 + i * sw) * step];
        }
        std::fill(d + hi, d + run, 0.0f);
      }
      p += run;
      ow = 0;
      if (++oh == g.out[1]) oh = 0, od++;
    }
  }
}

// One conv task: output pixels [p0, p0 + pt) of one image and group, output channels [n0, n1) of the group.
// Per kc block of K: im2col the pixels once, then sweep them against the pre-packed weight panels (nc columns at
// a time so the panels stay in L2), accumulating a pixel-major tile that is transposed into y at the end.
struct ConvTask {
  const char* x;      // image n, channel 0 of the group
  const char* panels; // the group's ceil(Mg/16) x [K][16] weights (int8: its qc8w blob, qc8w.h)
  const float* scales;  // the group's qc8w scales [Mg] or null
  const float* bias;  // the group's [Mg] or null
  float* y;           // image n, output channel 0 of the group: [Mg, P]
  int64_t channel0;   // the group's first output channel (for per-channel activations)
  const Activation* act;  // or null
  const int64_t* row_spans;  // row_spans(g, win)
};

void conv_task(const GemmConfig& cfg, GemmUkernel ukernel, size_t w_size, const ConvTask& t, const int64_t* xs,
               const Geometry& g, const Window& win, bool direct, int64_t K, int64_t P, int64_t p0, int64_t pt,
               int64_t n0, int64_t n1, std::vector<float>& scratch) {
  const int64_t MR = cfg.mr, kc_max = (K + (K + cfg.kc - 1) / cfg.kc - 1) / ((K + cfg.kc - 1) / cfg.kc);
  const int64_t cols = n1 - n0, nc_max = (int64_t)cfg.nc;
  const size_t a_floats = (size_t)(pt * kc_max), acc_floats = (size_t)(pt * cols), stage_floats = (size_t)(kStageK * pt);
  if (scratch.size() < a_floats + acc_floats + stage_floats) scratch.resize(a_floats + acc_floats + stage_floats);
  float* a = scratch.data();                           // [pt][kc]
  float* acc = scratch.data() + a_floats;              // [pt][cols]
  float* stage = scratch.data() + a_floats + acc_floats;  // [kStageK][pt]
  for (int64_t kb = 0; kb < K; kb += kc_max) {
    const int64_t kc = std::min(kc_max, K - kb);
    // a = im2col block [pt][kc], built kStageK window values at a time in k-major order and transposed
    // (a 1x1 stride-1 unpadded conv transposes straight from x: its channel rows are the k-major block).
    for (int64_t kk = 0; kk < kc; kk += kStageK) {
      const int64_t kn = std::min(kStageK, kc - kk);
      if (direct) {
        const float* src = reinterpret_cast<const float*>(t.x + (kb + kk) * xs[0]) + p0;
        transpose(src, xs[0] / 4, kn, pt, a + kk, kc);
      } else {
        im2col_kmajor(t.x, xs, g, win, t.row_spans, p0, pt, kb + kk, kn, stage);
        transpose(stage, pt, kn, pt, a + kk, kc);
      }
    }
    for (int64_t nb = n0; nb < n1; nb += nc_max) {
      const int64_t ne = std::min(n1, nb + nc_max);
      for (int64_t m = 0; m < pt; m += MR) {
        const int64_t mr = std::min(MR, pt - m);
        for (int64_t n = nb; n < ne; n += kPanelWidth) {
          const char* wp = t.panels + (size_t)((n / kPanelWidth * K + kb) * kPanelWidth) * w_size;
          const float* bias = kb == 0 && t.bias ? t.bias + n : nullptr;
          if (t.scales)
            cfg.qc8w(mr, std::min<int64_t>(kPanelWidth, ne - n), kc, a + m * kc, kc * 4, wp, t.scales + n,
                     acc + m * cols + (n - n0), cols * 4, bias, kb > 0);
          else
            ukernel(mr, std::min<int64_t>(kPanelWidth, ne - n), kc, a + m * kc, kc * 4, wp, acc + m * cols + (n - n0),
                    cols * 4, bias, kb > 0);
        }
      }
    }
  }
  // y[n, p0 + i] = acc[i][n - n0]: pixel-major tile to channel-major output.
  transpose(acc, cols, pt, cols, t.y + n0 * P + p0, P);
  if (t.act)
    for (int64_t n = n0; n < n1; n++) activate(*t.act, t.channel0 + n, t.y + n * P + p0, (size_t)pt);
}

// conv with weights already in panels ([group][ceil(Mg/16)][K][16], float32 or float16; int8: a qc8w blob per group).
void conv_panels(const Tensor& x, const char* panels, DType w_dtype, const Tensor* bias, const Window& win,
                 int64_t group, const Tensor& y, const Activation* act) {
  const GemmConfig& cfg = gemm_config();
  check(cfg.nr == kPanelWidth, "conv: packed weights need 16-column kernels");
  const int64_t N = x.shape[0], C = x.shape[1], M = y.shape[1], Cg = C / group, Mg = M / group;
  const int64_t K = Cg * win.kernel[0] * win.kernel[1] * win.kernel[2];
  const Geometry g = geometry(x, y);
  const int64_t P = g.out_pixels();
  const size_t w_size = dtype_size(w_dtype);
  const GemmUkernel ukernel = w_dtype == DType::f16 ? cfg.f16w : cfg.f32w;
  const int64_t xs[4] = {x.strides[1], x.strides[2], x.strides[3], x.strides[4]};
  // 1x1, stride 1, no padding, pixels at a float stride of 1: pixel p of channel c is x[c * xs[0] + p].
  bool direct = flat_pixels(x) && x.strides[4] == 4 && x.strides[1] % 4 == 0;
  for (int i = 0; i < 3; i++)
    direct = direct && win.kernel[i] == 1 && win.strides[i] == 1 && win.pads_begin[i] == 0 && win.pads_end[i] == 0;
  const bool qc8w = w_dtype == DType::i8;
  const int64_t group_bytes = qc8w ? qc8w_blob_bytes(K, Mg) : packed_gemm_b_elements(K, Mg) * (int64_t)w_size;
  const int64_t n_panels = (Mg + kPanelWidth - 1) / kPanelWidth;
  // Pixel tiles of a few MR rows: the im2col block [tile, kc] stays in L2 and each weight panel loaded from
  // L2/L3 feeds tile/MR microkernel calls. Then split channels until both threads have ~4 tasks each.
  const int64_t MR = cfg.mr, tile = std::min(P, MR * std::max<int64_t>(1, 192 / MR));
  const int64_t p_tiles = (P + tile - 1) / tile, threads = num_threads();
  const int64_t target = threads == 1 ? 1 : 4 * threads;
  const int64_t nn = std::max<int64_t>(1, std::min(n_panels, (target + N * group * p_tiles - 1) / (N * group * p_tiles)));
  float* out = y.ptr<float>();
  const std::vector<int64_t> spans = row_spans(g, win);
  parallel_for(N * group * p_tiles * nn, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> scratch;
    for (int64_t t = t0; t < t1; t++) {
      const int64_t in = t % nn, ip = t / nn % p_tiles, gi = t / (nn * p_tiles) % group, n = t / (nn * p_tiles * group);
      const char* group_panels = panels + gi * group_bytes;
      ConvTask task{bytes(x) + n * x.strides[0] + gi * Cg * x.strides[1], group_panels,
                    qc8w ? reinterpret_cast<const float*>(group_panels + qc8w_scales_offset(K, Mg)) : nullptr,
                    bias ? bias->ptr<float>() + gi * Mg : nullptr, out + n * y.strides[0] / 4 + gi * Mg * P,
                    gi * Mg, act && act->kind != Activation::none ? act : nullptr, spans.data()};
      const int64_t p0 = ip * tile, pt = std::min(tile, P - p0);
      const int64_t n0 = std::min<int64_t>(Mg, n_panels * in / nn * kPanelWidth);
      const int64_t n1 = std::min<int64_t>(Mg, n_panels * (in + 1) / nn * kPanelWidth);
      if (n0 < n1) conv_task(cfg, ukernel, w_size, task, xs, g, win, direct, K, P, p0, pt, n0, n1, scratch);
    }
  });
}

// Checks shared by conv and conv_packed; returns K = C/group * kernel volume.
int64_t check_conv(const Tensor& x, DType w_dtype, int64_t M, const Tensor* bias, const Window& win, int64_t group,
                   const Tensor& y) {
  check(x.ndim == 5 && y.ndim == 5, "conv expects 5-D x, w and y (N, C, D, H, W)");
  check(x.dtype == DType::f32 && y.dtype == DType::f32, "conv: input and output must be float32");
  check(w_dtype == DType::f32 || w_dtype == DType::f16 || w_dtype == DType::i8,
        "conv: weights must be float32, float16 or int8 (qc8w blobs, pre-packed)");
  // Batch items may be apart (y a channel block of a wider output, written one weight block at a time).
  check(y.shape[0] <= 1 || y.strides[0] % 4 == 0, "conv: output must be float-aligned");
  check(y.shape[1] <= 1 || y.strides[1] == y.shape[2] * y.shape[3] * y.shape[4] * 4, "conv: output channels must be contiguous");
  check(flat_pixels(y) && (y.shape[4] <= 1 || y.strides[4] == 4), "conv: output pixels must be contiguous");
  check(x.strides[3] % 4 == 0 && reinterpret_cast<uintptr_t>(x.data) % 4 == 0, "conv: input must be float-aligned");
  check_window(win);
  const int64_t N = x.shape[0], C = x.shape[1];
  check(group >= 1 && C % group == 0 && M % group == 0, "conv: channels must divide evenly into groups");
  check(y.shape[0] == N && y.shape[1] == M, "conv: output must be [N, M, ...]");
  if (bias) check(bias->dtype == DType::f32 && bias->numel() == M && bias->contiguous(), "conv: bias must be [M] float32");
  const Geometry g = geometry(x, y);
  for (int i = 0; i < 3; i++) {
    int64_t span = (win.kernel[i] - 1) * win.dilations[i] + 1;
    check(g.out[i] == (g.in[i] + win.pads_begin[i] + win.pads_end[i] - span) / win.strides[i] + 1 || g.out[i] == 0,
          "conv: output size does not match input, kernel, strides, pads and dilations");
  }
  return C / group * win.kernel[0] * win.kernel[1] * win.kernel[2];
}

}  // namespace

void conv(const Tensor& x, const Tensor& w, const Tensor* bias, const Window& win, int64_t group, const Tensor& y,
          const Activation* act) {
  check(w.ndim == 5, "conv expects 5-D x, w and y (N, C, D, H, W)");
  check(w.contiguous(), "conv: weights must be contiguous");
  check(w.dtype == DType::f32 || w.dtype == DType::f16, "conv: weights must be float32 or float16");
  const int64_t M = w.shape[0], K = check_conv(x, w.dtype, M, bias, win, group, y), Mg = M / group;
  check(w.shape[1] == x.shape[1] / group, "conv: weight channels (dim 1) must equal input channels / group");
  for (int i = 0; i < 3; i++) check(w.shape[2 + i] == win.kernel[i], "conv: kernel shape differs from weight shape");
  if (x.shape[0] == 0 || M == 0 || y.numel() == 0) return;
  // Runtime weights: pack once per call (constant weights arrive pre-packed through conv_packed).
  // w[m, c, kd, kh, kw] of group gi viewed as [K, Mg]: K steps by one element, Mg by K elements.
  const size_t es = dtype_size(w.dtype);
  const int64_t group_elems = packed_gemm_b_elements(K, Mg);
  std::vector<char> panels((size_t)(group * group_elems) * es);
  for (int64_t gi = 0; gi < group; gi++) {
    Tensor wk = make(w.dtype, {K, Mg}, {1, K}, bytes(w) + gi * Mg * K * es);
    pack_gemm_b(wk, make(w.dtype, {group_elems}, {1}, panels.data() + gi * group_elems * es));
  }
  conv_panels(x, panels.data(), w.dtype, bias, win, group, y, act);
}

void conv_packed(const Tensor& x, const Tensor& panels, int64_t M, const Tensor* bias, const Window& win,
                 int64_t group, const Tensor& y, const Activation* act) {
  const int64_t K = check_conv(x, panels.dtype, M, bias, win, group, y);
  const bool qc8w = panels.dtype == DType::i8;
  check(panels.contiguous() && panels.numel() == group * (qc8w ? qc8w_blob_bytes(K, M / group)
                                                               : packed_gemm_b_elements(K, M / group)),
        "conv_packed: panels must be contiguous and hold group x packed_gemm_b_elements(K, M / group) weights "
        "(int8: group x qc8w_blob_bytes(K, M / group))");
  check(reinterpret_cast<uintptr_t>(panels.data) % 4 == 0, "conv_packed: panels must be 4-byte aligned");
  if (x.shape[0] == 0 || M == 0 || y.numel() == 0) return;
  conv_panels(x, static_cast<const char*>(panels.data), panels.dtype, bias, win, group, y, act);
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
            // Input pixel p0 + p as (id, ih, iw), stepped rather than divided per pixel (the divisions were
            // most of a 2x2/2 upsampling's time).
            int64_t iw = p0 % g.in[2], ih = (p0 / g.in[2]) % g.in[1], id = p0 / (g.in[2] * g.in[1]);
            for (int64_t p = 0; p < pt; p++, iw++) {
              if (iw == g.in[2]) {
                iw = 0;
                if (++ih == g.in[1]) ih = 0, id++;
              }
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
  if (op_kind == 0 && !indices && win.kernel[0] == 1 && win.dilations[1] == 1 && win.dilations[2] == 1 &&
      (x.shape[4] <= 1 || x.strides[4] == 4)) {
    // 2-D max pooling without indices (the CNN case), separably: per output row, the max over its window's input
    // rows (contiguous, vectorized), then per output pixel the max over its window's columns of that row.
    const int64_t H = g.in[1], W = g.in[2], OH = g.out[1], OW = g.out[2];
    const int64_t kh = win.kernel[1], kw = win.kernel[2], sh = win.strides[1], sw = win.strides[2];
    const int64_t ph = win.pads_begin[1], pw = win.pads_begin[2], hs = x.strides[3];
    parallel_for(x.shape[0] * C * g.out[0], 1, [&](int64_t r0, int64_t r1) {
      thread_local std::vector<float> rowmax;
      rowmax.resize((size_t)W);
      for (int64_t r = r0; r < r1; r++) {
        const int64_t od = r % g.out[0], id = od * win.strides[0] - win.pads_begin[0];
        const char* xp = bytes(x) + (r / g.out[0] / C) * x.strides[0] + (r / g.out[0] % C) * x.strides[1] +
                         id * x.strides[2];
        float* o = out + r * OH * OW;
        const bool depth_ok = id >= 0 && id < g.in[0];
        for (int64_t oh = 0; oh < OH; oh++) {
          const int64_t h0 = oh * sh - ph;
          const int64_t ha = std::max<int64_t>(h0, 0), hb = depth_ok ? std::min<int64_t>(h0 + kh, H) : ha;
          max_rows(xp, hs, ha, hb, W, rowmax.data());
          // Output columns [a, b) have their whole window inside the row: 4 at a time for strides 1 and 2.
          const int64_t a = std::min(OW, (pw + sw - 1) / sw), b = std::max(a, std::min(OW, (W - kw + pw) / sw + 1));
          const int64_t done = max_columns(rowmax.data(), W, a, b, sw, pw, kw, o + oh * OW);
          for (int64_t ow = 0; ow < OW; ow++) {
            if (ow == a) ow = done;
            if (ow >= OW) break;
            const int64_t w0 = ow * sw - pw;
            const int64_t wa = std::max<int64_t>(w0, 0), wb = std::min<int64_t>(w0 + kw, W);
            float best = -std::numeric_limits<float>::infinity();
            bool nan = false;  // (tracked apart: a branch per tap would mispredict on every other pixel)
            for (int64_t iw = wa; iw < wb; iw++) {
              const float v = rowmax[iw];
              best = v > best ? v : best;
              nan |= v != v;
            }
            o[oh * OW + ow] = nan ? std::numeric_limits<float>::quiet_NaN() : best;
          }
        }
      }
    });
    return;
  }
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
            // Per axis, the kernel taps [lo, hi) that land inside the input, and how many land inside the padded
            // extent (they count for count_include_pad; past it, ceil_mode's overhang, never). Only the taps
            // inside are visited, so the work is bounded by the input, not by the kernel size.
            int64_t lo[3], hi[3], padded_count = 1;
            for (int i = 0; i < 3; i++) {
              const int64_t s = start[i], d = win.dilations[i], k = win.kernel[i], n = g.in[i];
              lo[i] = std::min(k, s < 0 ? (-s + d - 1) / d : 0);
              hi[i] = std::max(lo[i], std::min(k, s < n ? (n - 1 - s) / d + 1 : 0));
              padded_count *= std::min(k, s < n + win.pads_end[i] ? (n + win.pads_end[i] - 1 - s) / d + 1 : 0);
            }
            float best = -std::numeric_limits<float>::infinity(), sum = 0.0f;
            int64_t best_at = -1, count = 0;
            for (int64_t kd = lo[0]; kd < hi[0]; kd++) {
              int64_t id = start[0] + kd * win.dilations[0];
              for (int64_t kh = lo[1]; kh < hi[1]; kh++) {
                int64_t ih = start[1] + kh * win.dilations[1];
                for (int64_t kw = lo[2]; kw < hi[2]; kw++) {
                  int64_t iw = start[2] + kw * win.dilations[2];
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
