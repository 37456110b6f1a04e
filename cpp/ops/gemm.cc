// Matrix multiplication: plain loops for now (the fast kernels replace the inner product, not this contract).
#include "ops/gemm.h"

#include <algorithm>
#include <vector>

#include "half.h"
#include "parallel.h"

namespace onnxstream {
namespace {

// Row k of w for batch b as float32, into `row` (converting float16 weights on the fly).
inline const float* weight_row(const Tensor& w, int64_t b, int64_t k, int64_t N, float* row) {
  const char* base = static_cast<const char*>(w.data) + b * w.strides[0] + k * w.strides[1];
  if (w.dtype == DType::f32 && w.strides[2] == 4) return reinterpret_cast<const float*>(base);
  for (int64_t n = 0; n < N; n++) {
    const char* p = base + n * w.strides[2];
    row[n] = w.dtype == DType::f32 ? *reinterpret_cast<const float*>(p) : half_to_float(*reinterpret_cast<const uint16_t*>(p));
  }
  return row;
}

}  // namespace

void matmul(const Tensor& a, const Tensor& w, const Tensor* bias, const Tensor& y) {
  check(a.ndim == 3 && w.ndim == 3 && y.ndim == 3, "matmul expects [B, M, K] @ [B, K, N]");
  check(a.dtype == DType::f32 && y.dtype == DType::f32, "matmul: activations must be float32");
  check(w.dtype == DType::f32 || w.dtype == DType::f16, "matmul: weights must be float32 or float16");
  const int64_t B = y.shape[0], M = y.shape[1], N = y.shape[2], K = a.shape[2];
  check(a.shape[1] == M && w.shape[1] == K && w.shape[2] == N && a.shape[0] == B && w.shape[0] == B,
        "matmul: shapes do not line up");
  check(y.contiguous(), "matmul: output must be contiguous");
  if (bias) check(bias->dtype == DType::f32 && bias->numel() == N && bias->contiguous(), "matmul: bias must be [N] float32");
  float* out = y.ptr<float>();
  // Rows of the output (over all batches) are independent: split them across threads.
  parallel_for(B * M, 4, [&](int64_t r0, int64_t r1) {
    std::vector<float> acc(N), row(N);
    for (int64_t r = r0; r < r1; r++) {
      int64_t b = r / M, m = r % M;
      std::fill(acc.begin(), acc.end(), 0.0f);
      const char* arow = static_cast<const char*>(a.data) + b * a.strides[0] + m * a.strides[1];
      for (int64_t k = 0; k < K; k++) {
        float av = *reinterpret_cast<const float*>(arow + k * a.strides[2]);
        const float* wr = weight_row(w, b, k, N, row.data());
        for (int64_t n = 0; n < N; n++) acc[n] += av * wr[n];
      }
      float* o = out + r * N;
      for (int64_t n = 0; n < N; n++) o[n] = acc[n] + (bias ? bias->ptr<float>()[n] : 0.0f);
    }
  });
}

void matmul_int(const Tensor& a, const Tensor& w, const Tensor& y) {
  check(a.ndim == 3 && w.ndim == 3 && y.ndim == 3, "matmul expects [B, M, K] @ [B, K, N]");
  check(a.dtype == w.dtype && a.dtype == y.dtype && (a.dtype == DType::i32 || a.dtype == DType::i64),
        "integer matmul supports int32 and int64");
  const int64_t B = y.shape[0], M = y.shape[1], N = y.shape[2], K = a.shape[2];
  auto at = [](const Tensor& t, int64_t i, int64_t j, int64_t k) -> int64_t {
    const char* p = static_cast<const char*>(t.data) + i * t.strides[0] + j * t.strides[1] + k * t.strides[2];
    return t.dtype == DType::i32 ? *reinterpret_cast<const int32_t*>(p) : *reinterpret_cast<const int64_t*>(p);
  };
  for (int64_t b = 0; b < B; b++)
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        int64_t s = 0;
        for (int64_t k = 0; k < K; k++) s += at(a, b, m, k) * at(w, b, k, n);
        char* o = static_cast<char*>(y.data) + ((b * M + m) * N + n) * dtype_size(y.dtype);
        if (y.dtype == DType::i32) *reinterpret_cast<int32_t*>(o) = (int32_t)s;
        else *reinterpret_cast<int64_t*>(o) = s;
      }
}

}  // namespace onnxstream
