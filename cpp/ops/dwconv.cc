// Depthwise convolution: per (image, channel) plane, the input rows are copied once into zero-padded rows split
// into stride phases (phase p holds padded columns p, p + s, p + 2s, ...), so that every tap of every output row
// reads one contiguous run; then each output row is one f32-dwconv kernel call (bias first, clamp in the kernel,
// other activations on the row while it is in L1).
#include "ops/dwconv.h"

#include <algorithm>
#include <vector>

#include "parallel.h"

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace onnxstream {

namespace {

// Input row src[0, W) into the stride phases of a padded row: padded column pw + iw goes to phase (pw + iw) % sw,
// index (pw + iw) / sw. Stride 2 deinterleaves 4 column pairs per step where SSE is baseline.
void split_phases(const float* src, int64_t W, int64_t pw, int64_t sw, int64_t phase_len, float* dst) {
  int64_t iw = 0;
#if defined(__SSE2__)
  if (sw == 2) {
    if (pw % 2) dst[phase_len + pw / 2] = src[iw++];  // an odd pad: column 0 is phase 1's first
    float* even = dst + (pw + iw) / 2;
    float* odd = dst + phase_len + (pw + iw) / 2;
    for (int64_t j = 0; iw + 8 <= W; iw += 8, j += 4) {
      const __m128 a = _mm_loadu_ps(src + iw), b = _mm_loadu_ps(src + iw + 4);
      _mm_storeu_ps(even + j, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
      _mm_storeu_ps(odd + j, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
    }
  }
#endif
  for (int64_t phase = (pw + iw) % sw, at = (pw + iw) / sw; iw < W; iw++) {  // (no division per column)
    dst[phase * phase_len + at] = src[iw];
    if (++phase == sw) phase = 0, at++;
  }
}

}  // namespace

void dwconv(const Tensor& x, const Tensor& w, const Tensor* bias, const Window& win, const Activation& act,
            const Tensor& y) {
  check(x.ndim == 5 && y.ndim == 5 && x.dtype == DType::f32 && y.dtype == DType::f32,
        "dwconv: x and y must be 5-D float32");
  const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[3], W = x.shape[4];
  const int64_t OH = y.shape[3], OW = y.shape[4], KH = win.kernel[1], KW = win.kernel[2];
  check(x.shape[2] == 1 && y.shape[2] == 1 && win.kernel[0] == 1, "dwconv: 2-D convolutions only");
  check(y.shape[0] == N && y.shape[1] == C && y.contiguous(), "dwconv: y must be [N, C, 1, oH, oW] contiguous");
  check(w.dtype == DType::f32 && w.contiguous() && w.numel() == C * KH * KW, "dwconv: w must be [C, kH * kW] float32");
  check(!bias || (bias->dtype == DType::f32 && bias->contiguous() && bias->numel() == C), "dwconv: bias must be [C]");
  check(x.strides[4] == 4, "dwconv: input rows must be contiguous");
  const int64_t sh = win.strides[1], sw = win.strides[2], dh = win.dilations[1], dw = win.dilations[2];
  const int64_t ph = win.pads_begin[1], pw = win.pads_begin[2];
  for (int i = 1; i < 3; i++)
    check(win.strides[i] >= 1 && win.dilations[i] >= 1 && win.pads_begin[i] >= 0 && win.pads_end[i] >= 0,
          "dwconv: strides and dilations must be >= 1 and pads >= 0");
  check(OH == (H + ph + win.pads_end[1] - (KH - 1) * dh - 1) / sh + 1 &&
        OW == (W + pw + win.pads_end[2] - (KW - 1) * dw - 1) / sw + 1, "dwconv: output size does not match the window");
  if (N == 0 || C == 0 || OH <= 0 || OW <= 0) return;
  const DwconvConfig& cfg = dwconv_config();
  const int64_t taps = KH * KW;
  const DwconvUkernel ukernel = taps == 9 ? cfg.taps9 : taps == 25 ? cfg.taps25 : cfg.any;
  // Padded row: columns [0, padded) with the input at [pw, pw + W), split into sw phase rows of phase_len floats
  // (16 more than the outputs read: the kernels may read a whole vector past a row's last output).
  const int64_t padded = std::max(pw + W, (OW - 1) * sw + (KW - 1) * dw + 1);
  const int64_t phase_len = (padded + sw - 1) / sw + 16, row_len = sw * phase_len;
  const float lo = act.kind == Activation::clamp ? act.alpha : -INFINITY;
  const float hi = act.kind == Activation::clamp ? act.beta : INFINITY;
  // Where tap column kw starts in a padded phase row: phase (kw * dw) % sw, index (kw * dw) / sw.
  std::vector<int64_t> col_offset((size_t)KW);
  for (int64_t kw = 0; kw < KW; kw++) col_offset[kw] = kw * dw % sw * phase_len + kw * dw / sw;
  const int64_t in_rows = (OH - 1) * sh + (KH - 1) * dh + 1;  // padded input rows read, from row -ph on
  const float* wp = w.ptr<float>();
  const float* bp = bias ? bias->ptr<float>() : nullptr;
  parallel_for(N * C, 1, [&](int64_t p0, int64_t p1) {
    thread_local std::vector<float> rows;   // [H + 1][sw][phase_len]: the plane's padded phase rows, then a zero row
    thread_local std::vector<const float*> row_at, tap_rows;  // padded input row r (ih = r - ph); a row's taps
    rows.assign((size_t)((H + 1) * row_len), 0.0f);
    row_at.resize((size_t)in_rows);
    tap_rows.resize((size_t)taps);
    for (int64_t r = 0; r < in_rows; r++) {
      const int64_t ih = r - ph;
      row_at[r] = rows.data() + (ih < 0 || ih >= H ? H : ih) * row_len;
    }
    for (int64_t plane = p0; plane < p1; plane++) {
      const int64_t n = plane / C, c = plane % C;
      const char* xp = static_cast<const char*>(x.data) + n * x.strides[0] + c * x.strides[1];
      for (int64_t ih = 0; ih < H; ih++) {
        const float* src = reinterpret_cast<const float*>(xp + ih * x.strides[3]);
        float* dst = rows.data() + ih * row_len;
        if (sw == 1) {
          std::copy(src, src + W, dst + pw);  // (a memcpy: -O2 leaves an element loop scalar)
        } else {
          split_phases(src, W, pw, sw, phase_len, dst);
        }
      }
      float* yp = y.ptr<float>() + plane * OH * OW;
      const float* wc = wp + c * taps;
      const float bc = bp ? bp[c] : 0.0f;
      for (int64_t oh = 0; oh < OH; oh++) {
        const float* const* in = row_at.data() + oh * sh;
        const float** t = tap_rows.data();
        for (int64_t kh = 0; kh < KH; kh++)
          for (int64_t kw = 0; kw < KW; kw++) *t++ = in[kh * dh] + col_offset[kw];
        float* yr = yp + oh * OW;
        ukernel((size_t)OW, (size_t)taps, tap_rows.data(), wc, bc, yr, lo, hi);
        if (act.kind != Activation::clamp) activate(act, c, yr, (size_t)OW);
      }
    }
  });
}

}  // namespace onnxstream
