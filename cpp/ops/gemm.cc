// Matrix multiplication: blocking, weight packing and threading around the GEMM microkernels (dispatch.h).
// For each task (a block of output rows x columns): for each nc x kc block of weights, pack it into 16-column
// panels (bounded scratch, never a whole-weight copy), then sweep mr x nr output tiles with the microkernel.
#include "ops/gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "dispatch.h"
#include "ops/qc8w.h"
#include "parallel.h"

namespace onnxstream {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// One batch of the product, as the microkernels see it.
struct GemmProblem {
  int64_t M, N, K;
  const char* a;               // [M, K] float32
  int64_t a_row, a_k;          // byte strides
  bool a_direct;               // rows are k-contiguous and aligned: kernels read a in place
  const char* w;               // [K, N] float32 or float16, packed per block; or null when panels are given
  const char* panels;          // pre-packed: ceil(N/16) x [K][16] (pack_gemm_b), or a qc8w blob (qc8w.h)
  const float* scales;         // the qc8w blob's per-column scales, or null
  int64_t w_k, w_n;            // byte strides
  size_t w_size;               // bytes per weight element
  const float* bias;           // [N] or null
  float* y;                    // [M, N], rows ldy floats apart
  int64_t ldy;
};

// Output rows [m0, m1) x columns [n0, n1) of one batch; scratch is this thread's.
void gemm_task(const GemmConfig& cfg, GemmUkernel ukernel, GemmUkernel ukernel_1row, PackwUkernel pack,
               const GemmProblem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1, std::vector<char>& scratch) {
  const int64_t MR = cfg.mr, NR = cfg.nr;
  // Even blocks (K = 640 with kc 512 becomes 2 x 320, not 512 + 128); scratch stays <= kc x nc weights.
  const int64_t kc_max = ceil_div(p.K, ceil_div(p.K, (int64_t)cfg.kc));
  const int64_t nc_max = round_up(ceil_div(n1 - n0, ceil_div(n1 - n0, (int64_t)cfg.nc)), (int64_t)kPanelWidth);
  const size_t packed_bytes = p.panels ? 0 : (size_t)(kc_max * nc_max) * p.w_size;   // [nc/16][kc][16]
  const size_t a_bytes = p.a_direct ? 0 : (size_t)(MR * kc_max) * 4;  // [MR][kc] copy of strided a
  if (scratch.size() < packed_bytes + a_bytes + 64) scratch.resize(packed_bytes + a_bytes + 64);
  char* packed = reinterpret_cast<char*>(round_up(reinterpret_cast<intptr_t>(scratch.data()), 64));
  float* a_copy = reinterpret_cast<float*>(packed + packed_bytes);

  for (int64_t nb = n0; nb < n1; nb += nc_max) {
    const int64_t nc = std::min(nc_max, n1 - nb);
    for (int64_t kb = 0; kb < p.K; kb += kc_max) {
      const int64_t kc = std::min(kc_max, p.K - kb);
      if (!p.panels) pack(kc, nc, p.w + kb * p.w_k + nb * p.w_n, p.w_k, p.w_n, packed);
      for (int64_t m = m0; m < m1; m += MR) {
        const int64_t mr = std::min(MR, m1 - m);
        const float* a = reinterpret_cast<const float*>(p.a + m * p.a_row + kb * p.a_k);
        size_t a_stride = p.a_row;
        if (!p.a_direct) {  // gather this tile's rows once; every n tile below reuses them
          for (int64_t k = 0; k < kc; k++)  // k outer: transposed views (Conv's im2col) read rows in order
            for (int64_t i = 0; i < mr; i++)
              std::memcpy(a_copy + i * kc + k, p.a + (m + i) * p.a_row + (kb + k) * p.a_k, 4);
          a = a_copy;
          a_stride = kc * 4;
        }
        for (int64_t n = nb; n < nb + nc; n += NR) {
          const void* wp = p.panels ? p.panels + (size_t)((n / kPanelWidth * p.K + kb) * kPanelWidth) * p.w_size
                                    : packed + (size_t)((n - nb) * kc) * p.w_size;  // panel (n - nb) / 16
          const float* bias = kb == 0 && p.bias ? p.bias + n : nullptr;
          if (p.scales)
            (mr == 1 ? cfg.qc8w_1row : cfg.qc8w)(mr, std::min(NR, nb + nc - n), kc, a, a_stride, wp, p.scales + n, p.y + m * p.ldy + n,
                     p.ldy * 4, bias, kb > 0);
          else
            (mr == 1 ? ukernel_1row : ukernel)(mr, std::min(NR, nb + nc - n), kc, a, a_stride, wp, p.y + m * p.ldy + n, p.ldy * 4, bias, kb > 0);
        }
      }
    }
  }
}

// Shared by matmul and matmul_packed: w (strided, packed per block) or panels (pre-packed, batch stride 0).
void run_gemm(const Tensor& a, const char* w, const int64_t* w_strides, const char* panels, DType w_dtype,
              int64_t K, int64_t N, const Tensor* bias, const Tensor& y) {
  check(a.dtype == DType::f32 && y.dtype == DType::f32, "matmul: activations must be float32");
  check(w_dtype == DType::f32 || w_dtype == DType::f16 || (w_dtype == DType::i8 && panels),
        "matmul: weights must be float32 or float16 (or int8 qc8w blobs, pre-packed)");
  const int64_t B = y.shape[0], M = y.shape[1];
  check(a.shape[1] == M && a.shape[2] == K && a.shape[0] == B && y.shape[2] == N, "matmul: shapes do not line up");
  // Rows may be apart (y a column block of a wider output, written one weight block at a time).
  check(y.strides[2] == 4 && y.strides[1] % 4 == 0 && y.strides[0] % 4 == 0 && y.strides[1] >= N * 4,
        "matmul: output rows must be contiguous floats");
  const int64_t ldy = y.strides[1] / 4, y_batch = y.strides[0] / 4;
  if (bias)
    check(bias->dtype == DType::f32 && bias->numel() == N && bias->contiguous(), "matmul: bias must be [N] float32");
  float* out = y.ptr<float>();
  const float* bias_data = bias ? bias->ptr<float>() : nullptr;
  if (B * M * N == 0) return;
  if (K == 0) {  // empty sum: y = bias
    for (int64_t b = 0; b < B; b++)
      for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) out[b * y_batch + m * ldy + n] = bias_data ? bias_data[n] : 0.0f;
    return;
  }

  const GemmConfig& cfg = gemm_config();
  check(!panels || cfg.nr == kPanelWidth, "matmul: pre-packed weights need 16-column kernels");
  const bool f16 = w_dtype == DType::f16;
  const GemmUkernel ukernel = f16 ? cfg.f16w : cfg.f32w, ukernel_1row = f16 ? cfg.f16w_1row : cfg.f32w_1row;
  const PackwUkernel pack = f16 ? cfg.pack_f16w : cfg.pack_f32w;
  const float* scales = w_dtype == DType::i8
                            ? reinterpret_cast<const float*>(panels + qc8w_scales_offset(K, N)) : nullptr;
  const bool a_direct = a.strides[2] == 4 && a.strides[1] >= 0 && a.strides[1] % 4 == 0 && a.strides[0] % 4 == 0 &&
                        reinterpret_cast<uintptr_t>(a.data) % 4 == 0;

  // Tasks: blocks of rows (>= 128 each so per-task packing stays cheap), then blocks of columns until every
  // thread has about 4 tasks to balance uneven progress on shared cores.
  const int threads = num_threads();
  const int64_t target = threads == 1 ? 1 : 4 * threads;
  const int64_t MR = cfg.mr, NR = cfg.nr, m_tiles = ceil_div(M, MR), n_panels = ceil_div(N, NR);
  const int64_t nm = std::max<int64_t>(1, std::min({m_tiles, M / 128, ceil_div(target, B)}));
  const int64_t nn = std::max<int64_t>(1, std::min(n_panels, ceil_div(target, B * nm)));
  parallel_for(B * nm * nn, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<char> scratch;
    for (int64_t t = t0; t < t1; t++) {
      const int64_t b = t / (nm * nn), im = t / nn % nm, in = t % nn;
      GemmProblem p{M, N, K,
                    static_cast<const char*>(a.data) + b * a.strides[0], a.strides[1], a.strides[2], a_direct,
                    w ? w + b * w_strides[0] : nullptr, panels, scales, w ? w_strides[1] : 0, w ? w_strides[2] : 0,
                    dtype_size(w_dtype), bias_data, out + b * y_batch, ldy};
      // Split tiles (not rows) evenly so only the last block has a partial tile.
      const int64_t m0 = std::min(M, m_tiles * im / nm * MR), m1 = std::min(M, m_tiles * (im + 1) / nm * MR);
      const int64_t n0 = std::min(N, n_panels * in / nn * NR), n1 = std::min(N, n_panels * (in + 1) / nn * NR);
      if (m0 < m1 && n0 < n1) gemm_task(cfg, ukernel, ukernel_1row, pack, p, m0, m1, n0, n1, scratch);
    }
  });
}

}  // namespace

void matmul(const Tensor& a, const Tensor& w, const Tensor* bias, const Tensor& y) {
  check(a.ndim == 3 && w.ndim == 3 && y.ndim == 3, "matmul expects [B, M, K] @ [B, K, N]");
  check(w.shape[0] == y.shape[0] && w.shape[1] == a.shape[2], "matmul: shapes do not line up");
  run_gemm(a, static_cast<const char*>(w.data), w.strides, nullptr, w.dtype, a.shape[2], w.shape[2], bias, y);
}

int64_t packed_gemm_b_elements(int64_t K, int64_t N) { return ceil_div(N, kPanelWidth) * kPanelWidth * K; }

void pack_gemm_b(const Tensor& w, const Tensor& panels) {
  check(w.ndim == 2, "pack_gemm_b expects a [K, N] weight");
  check(w.dtype == DType::f32 || w.dtype == DType::f16, "pack_gemm_b: weights must be float32 or float16");
  check(panels.dtype == w.dtype && panels.contiguous() &&
            panels.numel() == packed_gemm_b_elements(w.shape[0], w.shape[1]),
        "pack_gemm_b: panels must be contiguous, of the weight's dtype and packed_gemm_b_elements(K, N) long");
  const GemmConfig& cfg = gemm_config();
  (w.dtype == DType::f16 ? cfg.pack_f16w : cfg.pack_f32w)(w.shape[0], w.shape[1], w.data, w.strides[0],
                                                           w.strides[1], panels.data);
}

void matmul_packed(const Tensor& a, const Tensor& panels, int64_t K, int64_t N, const Tensor* bias, const Tensor& y) {
  check(a.ndim == 3 && y.ndim == 3, "matmul_packed expects a [B, M, K] and y [B, M, N]");
  check(panels.contiguous() && panels.numel() == (panels.dtype == DType::i8 ? qc8w_blob_bytes(K, N)
                                                                            : packed_gemm_b_elements(K, N)),
        "matmul_packed: panels must be contiguous and hold packed_gemm_b_elements(K, N) weights "
        "(int8: qc8w_blob_bytes(K, N))");
  check(reinterpret_cast<uintptr_t>(panels.data) % 4 == 0, "matmul_packed: panels must be 4-byte aligned");
  run_gemm(a, nullptr, nullptr, static_cast<const char*>(panels.data), panels.dtype, K, N, bias, y);
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
