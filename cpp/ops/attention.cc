// Fused attention as flash attention on the GEMM microkernels: per (batch, head), K^T and V are packed once into
// 16-column panels; per block of queries, for each tile of keys: S = Q @ K^T tile (microkernel, k = head dim),
// online softmax of S rows (rmax + raddstoreexpminusmax kernels), y += P @ V tile (microkernel, k = keys).
// The [M, N] score matrix never exists; scratch is one MR x key-tile block of scores per thread.
#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "dispatch.h"
#include "parallel.h"

namespace onnxstream {
namespace {

constexpr int64_t kKeyTile = 256;            // keys per online-softmax step: P @ V has k = 256
constexpr int64_t kQueryBlock = 64;          // queries sharing each key tile while it is in cache (rounded to MR)
constexpr size_t kPackBudget = 8u << 20;     // bytes of packed K^T and V held at once (whole heads, at least one)

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

const char* at(const Tensor& t, int64_t b, int64_t h) {
  return static_cast<const char*>(t.data) + b * t.strides[0] + h * t.strides[1];
}

struct Heads {  // the problem, as the tasks see it
  int64_t H, M, N, D, Dv;
  int64_t k_panels, v_panels;  // ceil(N / 16), ceil(Dv / 16)
  int64_t head_floats;         // packed K^T [k_panels][D][16], then packed V [v_panels][N][16]
};

// Queries [m0, m1) of head bh (b * H + h) against its packed keys and values; y rows accumulate in place.
void attend_block(const GemmConfig& gemm, const SoftmaxConfig& sm, const Heads& p, const Tensor& q,
                  const Tensor* mask, float* y, const float* packed, int64_t bh, int64_t m0, int64_t m1,
                  bool zero_empty_rows, std::vector<float>& scratch) {
  const int64_t MR = gemm.mr, b = bh / p.H, h = bh % p.H;
  const int64_t s_stride = kKeyTile + 16;  // floats per scores row; the pad keeps rows off the same cache sets
  const int64_t rows = m1 - m0;
  scratch.resize(MR * s_stride + 2 * rows);
  float* scores = scratch.data();           // [MR][s_stride]
  float* row_max = scores + MR * s_stride;  // [rows] running max of each query's scores
  float* row_sum = row_max + rows;          // [rows] running sum of exp(score - row_max)
  std::fill(row_max, row_max + rows, -std::numeric_limits<float>::infinity());
  std::fill(row_sum, row_sum + rows, 0.0f);
  std::fill(y + m0 * p.Dv, y + m1 * p.Dv, 0.0f);
  const float* kt_packed = packed;                            // [k_panels][D][16]
  const float* v_packed = packed + p.k_panels * p.D * 16;     // [v_panels][N][16]
  const char* q_head = at(q, b, h);

  for (int64_t n0 = 0; n0 < p.N; n0 += kKeyTile) {
    const int64_t nk = std::min(kKeyTile, p.N - n0);
    for (int64_t i0 = m0; i0 < m1; i0 += MR) {
      const int64_t mr = std::min(MR, m1 - i0);
      // S[mr, nk] = q[i0 : i0 + mr, :] @ kt[:, n0 : n0 + nk], one 16-key panel at a time
      const float* qi = reinterpret_cast<const float*>(q_head + i0 * q.strides[2]);
      for (int64_t j = 0; j < nk; j += 16)
        gemm.f32w(mr, std::min<int64_t>(16, nk - j), p.D, qi, q.strides[2], kt_packed + (n0 + j) / 16 * p.D * 16,
                  scores + j, s_stride * 4, nullptr, 0);
      for (int64_t i = 0; i < mr; i++) {
        float* s = scores + i * s_stride;  // [nk]
        if (mask) {
          const char* mrow = at(*mask, b, h) + (i0 + i) * mask->strides[2] + n0 * mask->strides[3];
          for (int64_t j = 0; j < nk; j++) s[j] += *reinterpret_cast<const float*>(mrow + j * mask->strides[3]);
        }
        // Online softmax: when the running max grows, what was summed and accumulated is rescaled.
        float& mx = row_max[i0 - m0 + i];
        const float new_max = std::max(mx, sm.rmax(nk, s));
        if (new_max == -std::numeric_limits<float>::infinity()) {  // every key so far masked out: p = 0
          std::fill(s, s + nk, 0.0f);
          continue;
        }
        const float correction = std::exp(mx - new_max);  // 0 on the first unmasked tile, 1 if the max held
        mx = new_max;
        row_sum[i0 - m0 + i] = row_sum[i0 - m0 + i] * correction + sm.raddstoreexpminusmax(nk, s, new_max, s);
        if (correction != 1.0f) {
          float* yi = y + (i0 + i) * p.Dv;
          for (int64_t e = 0; e < p.Dv; e++) yi[e] *= correction;
        }
      }
      // y[i0 : i0 + mr, :] += P[mr, nk] @ v[n0 : n0 + nk, :], one 16-column panel of v at a time
      for (int64_t c = 0; c < p.v_panels; c++)
        gemm.f32w(mr, std::min<int64_t>(16, p.Dv - c * 16), nk, scores, s_stride * 4, v_packed + (c * p.N + n0) * 16,
                  y + i0 * p.Dv + c * 16, p.Dv * 4, nullptr, 1);
    }
  }
  const float empty = zero_empty_rows ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  for (int64_t i = m0; i < m1; i++) {  // normalize: divide by the softmax denominator
    const float sum = row_sum[i - m0];
    float* yi = y + i * p.Dv;
    if (sum > 0) {
      const float inv = 1.0f / sum;
      for (int64_t e = 0; e < p.Dv; e++) yi[e] *= inv;
    } else {
      std::fill(yi, yi + p.Dv, empty);
    }
  }
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
  check((q.strides[3] == 4 || D <= 1) && q.strides[2] % 4 == 0 && reinterpret_cast<uintptr_t>(q.data) % 4 == 0,
        "attention: queries must be float rows with a contiguous innermost axis");
  if (mask) {
    check(mask->dtype == DType::f32 && mask->ndim == 4 && mask->shape[2] == M && mask->shape[3] == N,
          "attention: mask must broadcast to [B, H, M, N] float32");
  }
  if (B * H * M * Dv == 0) return;

  const GemmConfig& gemm = gemm_config();
  const SoftmaxConfig& sm = softmax_config();
  Heads p{H, M, N, D, Dv, ceil_div(N, 16), ceil_div(Dv, 16), 0};
  p.head_floats = p.k_panels * D * 16 + p.v_panels * N * 16;
  const int64_t MR = gemm.mr, block = std::max<int64_t>(1, kQueryBlock / MR) * MR, blocks = ceil_div(M, block);
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(B * H, kPackBudget / (p.head_floats * 4 + 1)));
  std::vector<float> packed(std::max<int64_t>(1, chunk * p.head_floats));  // [chunk heads][head_floats]
  float* out = y.ptr<float>();
  for (int64_t bh0 = 0; bh0 < B * H; bh0 += chunk) {
    const int64_t heads = std::min(chunk, B * H - bh0);
    // Pack K^T [D, N] and V [N, Dv] of these heads into 16-column panels, once for all their queries.
    parallel_for(2 * heads, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) {
        const int64_t bh = bh0 + t / 2, b = bh / H, h = bh % H;
        float* dst = packed.data() + (t / 2) * p.head_floats;
        if (t % 2 == 0) gemm.pack_f32w(D, N, at(kt, b, h), kt.strides[2], kt.strides[3], dst);
        else gemm.pack_f32w(N, Dv, at(v, b, h), v.strides[2], v.strides[3], dst + p.k_panels * D * 16);
      }
    });
    parallel_for(heads * blocks, 1, [&](int64_t t0, int64_t t1) {
      std::vector<float> scratch;
      for (int64_t t = t0; t < t1; t++) {
        const int64_t bh = bh0 + t / blocks, m0 = (t % blocks) * block;
        attend_block(gemm, sm, p, q, mask, out + bh * M * Dv, packed.data() + (t / blocks) * p.head_floats, bh, m0,
                     std::min(M, m0 + block), zero_empty_rows, scratch);
      }
    });
  }
}

}  // namespace onnxstream
