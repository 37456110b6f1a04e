#include "ops/rotary.h"

#include <cstring>

#include "parallel.h"

namespace onnxstream {
namespace {

template <typename T>
T* at(const Tensor& t, int64_t i0, int64_t i1, int64_t i2 = 0) {
  return reinterpret_cast<T*>(static_cast<char*>(t.data) + i0 * t.strides[0] + i1 * t.strides[1] +
                              i2 * t.strides[2]);
}

}  // namespace

void rotary_embedding(const Tensor& x, const Tensor& cos, const Tensor& sin, int64_t rotary_dim, bool interleaved,
                      const Tensor& y) {
  for (const Tensor* t : {&x, &cos, &sin, &y}) check(t->dtype == DType::f32, "RotaryEmbedding computes in float32");
  check(x.ndim == 4 && y.ndim == 4 && cos.ndim == 3 && sin.ndim == 3, "RotaryEmbedding: internal: ranks");
  const int64_t B = x.shape[0], S = x.shape[1], H = x.shape[2], D = x.shape[3], half = rotary_dim / 2;
  for (int i = 0; i < 4; i++) check(y.shape[i] == x.shape[i], "RotaryEmbedding: internal: output shape");
  check(rotary_dim % 2 == 0 && rotary_dim <= D, "RotaryEmbedding: rotary_embedding_dim must be even and <= head size");
  check(cos.shape[0] == B && cos.shape[1] == S && cos.shape[2] == half && sin.shape[0] == B && sin.shape[1] == S &&
            sin.shape[2] == half,
        "RotaryEmbedding: cos and sin caches must give rotary_embedding_dim / 2 values per position");
  check((x.strides[3] == 4 || D <= 1) && (y.strides[3] == 4 || D <= 1) &&
            (cos.strides[2] == 4 || half <= 1) && (sin.strides[2] == 4 || half <= 1),
        "RotaryEmbedding: internal: the innermost axes must be contiguous");
  const int64_t x_step = interleaved ? 2 : 1, pair = interleaved ? 1 : half;  // x1 = x[i * step], x2 = x1 + pair
  parallel_for(B * S, std::max<int64_t>(1, 4096 / std::max<int64_t>(H * D, 1)), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
      const int64_t b = p / S, s = p % S;
      const float* c = at<const float>(cos, b, s);
      const float* sn = at<const float>(sin, b, s);
      for (int64_t h = 0; h < H; h++) {
        const float* in = at<const float>(x, b, s, h);
        float* out = at<float>(y, b, s, h);
        for (int64_t i = 0; i < half; i++) {
          const float x1 = in[i * x_step], x2 = in[i * x_step + pair];
          out[i * x_step] = x1 * c[i] - x2 * sn[i];
          out[i * x_step + pair] = x1 * sn[i] + x2 * c[i];
        }
        if (D > rotary_dim) std::memcpy(out + rotary_dim, in + rotary_dim, (D - rotary_dim) * sizeof(float));
      }
    }
  });
}

}  // namespace onnxstream
