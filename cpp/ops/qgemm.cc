// Integer GEMM: per task a block of output columns; its weights, minus their zero points, widened once to int16
// [K][nb], then each output row accumulates a_k * w[k][0, nb) in int32 (a loop the compiler vectorizes).
#include "ops/qgemm.h"

#include <algorithm>
#include <vector>

#include "parallel.h"

namespace onnxstream {
namespace {

constexpr int64_t kBlock = 128;  // output columns per task: the int16 weight block stays in L2 for K up to ~1K

inline int32_t load8(const Tensor& t, const char* p) {
  return t.dtype == DType::u8 ? (int32_t)*reinterpret_cast<const uint8_t*>(p)
                              : (int32_t)*reinterpret_cast<const int8_t*>(p);
}

inline int32_t at_i32(const Tensor& t, int64_t i, int64_t j) {
  return *reinterpret_cast<const int32_t*>(static_cast<const char*>(t.data) + i * t.strides[0] + j * t.strides[1]);
}

}  // namespace

void qgemm(const Tensor& a, const Tensor& a_zp, const Tensor& w, const Tensor& w_zp, const Tensor& y) {
  check(a.ndim == 3 && w.ndim == 3 && y.ndim == 3, "qgemm expects [B, M, K] @ [B, K, N]");
  check((a.dtype == DType::u8 || a.dtype == DType::i8) && (w.dtype == DType::u8 || w.dtype == DType::i8),
        "qgemm: operands must be uint8 or int8");
  const int64_t B = y.shape[0], M = y.shape[1], N = y.shape[2], K = a.shape[2];
  check(a.shape[0] == B && a.shape[1] == M && w.shape[0] == B && w.shape[1] == K && w.shape[2] == N,
        "qgemm: shapes do not line up");
  check(y.dtype == DType::i32 && y.contiguous(), "qgemm: output must be contiguous int32");
  check(a_zp.dtype == DType::i32 && a_zp.ndim == 1 && a_zp.shape[0] == M, "qgemm: a zero points must be [M] int32");
  check(w_zp.dtype == DType::i32 && w_zp.ndim == 2 && w_zp.shape[0] == B && w_zp.shape[1] == N,
        "qgemm: w zero points must be [B, N] int32");
  check(K < (1 << 15), "qgemm: K too large for int32 sums");
  const int64_t blocks = (N + kBlock - 1) / kBlock;
  parallel_for(B * blocks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<int16_t> wb;
    std::vector<int32_t> acc;
    for (int64_t t = t0; t < t1; t++) {
      const int64_t b = t / blocks, n0 = t % blocks * kBlock, nb = std::min(kBlock, N - n0);
      // The block's weights minus their zero points: [K][nb] int16 (8-bit values minus 8-bit zero points).
      wb.resize(K * nb);
      const char* wp = static_cast<const char*>(w.data) + b * w.strides[0];
      for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < nb; j++)
          wb[k * nb + j] = (int16_t)(load8(w, wp + k * w.strides[1] + (n0 + j) * w.strides[2]) - at_i32(w_zp, b, n0 + j));
      acc.resize(nb);
      const char* ap = static_cast<const char*>(a.data) + b * a.strides[0];
      int32_t* yp = y.ptr<int32_t>() + b * M * N;
      for (int64_t m = 0; m < M; m++) {
        std::fill(acc.begin(), acc.end(), 0);
        const int32_t zp = *reinterpret_cast<const int32_t*>(static_cast<const char*>(a_zp.data) + m * a_zp.strides[0]);
        for (int64_t k = 0; k < K; k++) {
          const int32_t av = load8(a, ap + m * a.strides[1] + k * a.strides[2]) - zp;
          if (av == 0) continue;  // (the zero point itself: padding, ReLU zeros)
          const int16_t* wk = wb.data() + k * nb;
          int32_t* out = acc.data();
          for (int64_t j = 0; j < nb; j++) out[j] += av * (int32_t)wk[j];
        }
        std::copy(acc.begin(), acc.end(), yp + m * N + n0);
      }
    }
  });
}

}  // namespace onnxstream
