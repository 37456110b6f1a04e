#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "parallel.h"

namespace onnxstream {
namespace {

constexpr int64_t kQueryTile = 16;  // queries processed together: reuse each key/value tile 16 times
constexpr int64_t kKeyTile = 256;   // keys per step of the online softmax; scores tile = 16 x 256 floats

template <typename T>
inline const T* at(const Tensor& t, int64_t b, int64_t h, int64_t i) {
  return reinterpret_cast<const T*>(static_cast<const char*>(t.data) + b * t.strides[0] + h * t.strides[1] +
                                    i * t.strides[2]);
}

}  // namespace

void attention(const Tensor& q, const Tensor& kt, const Tensor& v, const Tensor* mask, const Tensor& y,
               bool zero_empty_rows) {
  check(q.ndim == 4 && kt.ndim == 4 && v.ndim == 4 && y.ndim == 4, "attention expects 4-D q, kt, v, y");
  check(q.dtype == DType::f32 && kt.dtype == DType::f32 && v.dtype == DType::f32 && y.dtype == DType::f32,
        "attention computes in float32");
  const int64_t B = q.shape[0], H = q.shape[1], M = q.shape[2], D = q.shape[3];
  const int64_t N = kt.shape[3], Dv = v.shape[3];
  check(kt.shape[0] == B && kt.shape[1] == H && kt.shape[2] == D, "attention: keys do not match the queries");
  check(v.shape[0] == B && v.shape[1] == H && v.shape[2] == N, "attention: values do not match the keys");
  check(y.shape[0] == B && y.shape[1] == H && y.shape[2] == M && y.shape[3] == Dv && y.contiguous(),
        "attention: output shape mismatch");
  check(q.strides[3] == 4 && kt.strides[3] == 4 && v.strides[3] == 4, "attention: innermost axes must be contiguous");
  if (mask) {
    check(mask->dtype == DType::f32 && mask->ndim == 4 && mask->shape[2] == M && mask->shape[3] == N,
          "attention: mask must broadcast to [B, H, M, N] float32");
  }
  const int64_t tiles = (M + kQueryTile - 1) / kQueryTile;
  parallel_for(B * H * tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> scores(kQueryTile * kKeyTile), acc(kQueryTile * Dv), row_max(kQueryTile), row_sum(kQueryTile);
    for (int64_t t = t0; t < t1; t++) {
      const int64_t b = t / (H * tiles), h = (t / tiles) % H, m0 = (t % tiles) * kQueryTile;
      const int64_t mq = std::min(kQueryTile, M - m0);
      std::fill(acc.begin(), acc.end(), 0.0f);
      std::fill(row_max.begin(), row_max.end(), -std::numeric_limits<float>::infinity());
      std::fill(row_sum.begin(), row_sum.end(), 0.0f);
      for (int64_t n0 = 0; n0 < N; n0 += kKeyTile) {
        const int64_t nk = std::min(kKeyTile, N - n0);
        // scores[i, j] = q[m0+i, :] . kt[:, n0+j] (+ mask): rank-1 updates keep the inner loop contiguous over keys
        for (int64_t i = 0; i < mq; i++) {
          float* s = scores.data() + i * kKeyTile;
          const float* qi = at<float>(q, b, h, m0 + i);
          std::fill(s, s + nk, 0.0f);
          for (int64_t d = 0; d < D; d++) {
            const float qd = qi[d];
            const float* kd = at<float>(kt, b, h, d) + n0;
            for (int64_t j = 0; j < nk; j++) s[j] += qd * kd[j];
          }
          if (mask) {
            const char* mrow = static_cast<const char*>(mask->data) + b * mask->strides[0] + h * mask->strides[1] +
                               (m0 + i) * mask->strides[2];
            for (int64_t j = 0; j < nk; j++) s[j] += *reinterpret_cast<const float*>(mrow + (n0 + j) * mask->strides[3]);
          }
        }
        // Online softmax: rescale what was accumulated when a row's running max grows.
        for (int64_t i = 0; i < mq; i++) {
          float* s = scores.data() + i * kKeyTile;
          float mx = row_max[i];
          for (int64_t j = 0; j < nk; j++) mx = std::max(mx, s[j]);
          if (mx == -std::numeric_limits<float>::infinity()) continue;  // fully masked so far
          const float correction = std::exp(row_max[i] - mx);
          row_max[i] = mx;
          float sum = 0.0f;
          for (int64_t j = 0; j < nk; j++) {
            s[j] = std::exp(s[j] - mx);
            sum += s[j];
          }
          row_sum[i] = row_sum[i] * correction + sum;
          float* a = acc.data() + i * Dv;
          for (int64_t e = 0; e < Dv; e++) a[e] *= correction;
          for (int64_t j = 0; j < nk; j++) {  // acc[i, :] += p[i, j] * v[n0+j, :]
            const float p = s[j];
            const float* vj = at<float>(v, b, h, n0 + j);
            for (int64_t e = 0; e < Dv; e++) a[e] += p * vj[e];
          }
        }
      }
      float* out = y.ptr<float>() + ((b * H + h) * M + m0) * Dv;
      for (int64_t i = 0; i < mq; i++) {
        const float empty = zero_empty_rows ? 0.0f : std::numeric_limits<float>::quiet_NaN();
        const float inv = row_sum[i] > 0 ? 1.0f / row_sum[i] : empty;
        for (int64_t e = 0; e < Dv; e++) out[i * Dv + e] = acc[i * Dv + e] * inv;
      }
    }
  });
}

}  // namespace onnxstream
