// Separable resampling along one axis: x viewed as [outer, in, inner], y as [outer, out, inner]; every output
// line is a weighted sum of a few input lines named by the (index, weight) tap table Python computed.
#include "ops/resize.h"

#include <algorithm>

#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "parallel.h"

namespace onnxstream {

void resample_axis(const Tensor& x, int axis, const Tensor& index, const Tensor& weights, const Tensor& y) {
  check(x.dtype == DType::f32 && y.dtype == DType::f32,
        std::string("Resize: dtype ") + dtype_name(x.dtype) + " is not supported (float32 only)");
  check(x.contiguous() && y.contiguous(), "resample_axis: internal: x and y must be contiguous");
  check(x.ndim == y.ndim && axis >= 0 && axis < x.ndim, "resample_axis: internal: axis out of range");
  for (int i = 0; i < x.ndim; i++)
    check(i == axis || x.shape[i] == y.shape[i], "resample_axis: internal: x and y differ off the resampled axis");
  check(index.dtype == DType::i64 && weights.dtype == DType::f32 && index.ndim == 2 && weights.ndim == 2 &&
            index.contiguous() && weights.contiguous() && index.shape[0] == y.shape[axis] &&
            weights.shape[0] == y.shape[axis] && index.shape[1] == weights.shape[1],
        "resample_axis: internal: index/weights must be [out, taps] int64/float32");
  int64_t outer = 1, inner = 1, n_in = x.shape[axis], n_out = y.shape[axis], taps = index.shape[1];
  for (int i = 0; i < axis; i++) outer *= x.shape[i];
  for (int i = axis + 1; i < x.ndim; i++) inner *= x.shape[i];
  const int64_t* idx = index.ptr<int64_t>();
  const float* w = weights.ptr<float>();
  for (int64_t k = 0; k < n_out * taps; k++)
    check(idx[k] >= 0 && idx[k] < n_in, "resample_axis: internal: tap index out of range");
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  bool copies = taps == 1;  // nearest: every output is one input value with weight 1
  for (int64_t o = 0; copies && o < n_out; o++) copies = w[o] == 1.0f;
  if (inner == 1 && copies) {  // nearest along the last axis: copies, each input value repeated s times when the
    // axis grows by a whole factor s (an FPN's 2x upsampling: no gather, one value fills s outputs)
    int64_t s = n_in > 0 && n_out % n_in == 0 ? n_out / n_in : 0;
    for (int64_t o = 0; s && o < n_out; o++) s = idx[o] == o / s ? s : 0;
    parallel_for(outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(n_out, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; r++) {
        const float* in = xp + r * n_in;
        float* out = yp + r * n_out;
        if (s == 2) {
          int64_t i = 0;
#if defined(__SSE2__)
          for (; i + 4 <= n_in; i += 4) {  // (the scalar pairs were 1 ns an output)
            const __m128 v = _mm_loadu_ps(in + i);
            _mm_storeu_ps(out + 2 * i, _mm_unpacklo_ps(v, v));
            _mm_storeu_ps(out + 2 * i + 4, _mm_unpackhi_ps(v, v));
          }
#endif
          for (; i < n_in; i++) out[2 * i] = out[2 * i + 1] = in[i];
        } else if (s) {
          for (int64_t i = 0; i < n_in; i++) std::fill(out + i * s, out + (i + 1) * s, in[i]);
        } else {
          for (int64_t o = 0; o < n_out; o++) out[o] = in[idx[o]];
        }
      }
    });
    return;
  }
  if (inner == 1) {  // resampling the last axis: gather within each row
    parallel_for(outer, std::max<int64_t>(1, 8192 / std::max<int64_t>(n_out * taps, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; r++) {
        const float* in = xp + r * n_in;
        float* out = yp + r * n_out;
        for (int64_t o = 0; o < n_out; o++) {
          const int64_t* io = idx + o * taps;
          const float* wo = w + o * taps;
          float acc = 0;
          for (int64_t t = 0; t < taps; t++) acc += wo[t] * in[io[t]];
          out[o] = acc;
        }
      }
    });
    return;
  }
  // Whole lines of `inner` floats at a time: vectorizes, and a single tap of weight 1 is a plain copy.
  parallel_for(outer * n_out, std::max<int64_t>(1, 8192 / std::max<int64_t>(inner * taps, 1)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0, b = r0 / n_out, o = r0 % n_out; r < r1; r++, o = o + 1 == n_out ? (b++, 0) : o + 1) {
      const int64_t* io = idx + o * taps;
      const float* wo = w + o * taps;
      float* out = yp + r * inner;
      const float* in = xp + b * n_in * inner;
      if (taps == 1 && wo[0] == 1.0f) {
        std::memcpy(out, in + io[0] * inner, (size_t)inner * sizeof(float));
        continue;
      }
      for (int64_t i = 0; i < inner; i++) out[i] = 0;
      for (int64_t t = 0; t < taps; t++) {
        const float* line = in + io[t] * inner;
        float wt = wo[t];
        for (int64_t i = 0; i < inner; i++) out[i] += wt * line[i];
      }
    }
  });
}

}  // namespace onnxstream
