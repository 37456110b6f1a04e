// One direction of LSTM / GRU / RNN. Per step: gates = h @ R^T (matmul_packed on the step's hidden state), then
// for each batch row the cell's math over its gates, left to right as the ONNX equations read.
#include "ops/recurrent.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "dispatch.h"
#include "ops/gemm.h"

namespace onnxstream {
namespace {

constexpr int64_t kPanel = 16;

// v[0, n) = act(clip(v)).
void activate(const RnnActivation& a, float clip, float* v, int64_t n) {
  if (clip > 0)
    for (int64_t i = 0; i < n; i++) v[i] = std::min(std::max(v[i], -clip), clip);
  const float al = a.alpha, be = a.beta;
  const VUnaryParams none{0.0f, 0.0f};
  switch (a.op) {
    case RnnAct::sigmoid:  // the default gates: the vector kernels (libm's scalar tanhf was half a cell's time)
      vunary_config().ukernel[kVSigmoid](n, v, v, &none);
      break;
    case RnnAct::tanh: vunary_config().ukernel[kVTanh](n, v, v, &none); break;
    case RnnAct::relu: for (int64_t i = 0; i < n; i++) v[i] = std::max(v[i], 0.0f); break;
    case RnnAct::affine: for (int64_t i = 0; i < n; i++) v[i] = al * v[i] + be; break;
    case RnnAct::leaky_relu: for (int64_t i = 0; i < n; i++) v[i] = v[i] >= 0 ? v[i] : al * v[i]; break;
    case RnnAct::thresholded_relu: for (int64_t i = 0; i < n; i++) v[i] = v[i] > al ? v[i] : 0.0f; break;
    case RnnAct::scaled_tanh: for (int64_t i = 0; i < n; i++) v[i] = al * std::tanh(be * v[i]); break;
    case RnnAct::hard_sigmoid:
      for (int64_t i = 0; i < n; i++) v[i] = std::min(std::max(al * v[i] + be, 0.0f), 1.0f);
      break;
    case RnnAct::elu: for (int64_t i = 0; i < n; i++) v[i] = v[i] >= 0 ? v[i] : al * (std::exp(v[i]) - 1.0f); break;
    case RnnAct::softsign: for (int64_t i = 0; i < n; i++) v[i] = v[i] / (1.0f + std::fabs(v[i])); break;
    case RnnAct::softplus:
      for (int64_t i = 0; i < n; i++) v[i] = v[i] > 20.0f ? v[i] : std::log1p(std::exp(v[i]));
      break;
  }
}

Tensor matrix(float* data, int64_t rows, int64_t cols, int64_t ld) {  // [1, rows, cols] float32, rows ld apart
  Tensor t;
  t.dtype = DType::f32;
  t.ndim = 3;
  t.shape[0] = 1, t.shape[1] = rows, t.shape[2] = cols;
  t.strides[0] = rows * ld * 4, t.strides[1] = ld * 4, t.strides[2] = 4;
  t.data = data;
  return t;
}

// y [B, N] (rows ldy apart) = a [B, K] @ the n_panels panels of R starting at panel first.
void step_gemm(const float* a, int64_t B, int64_t K, const Tensor& r, int64_t first, int64_t N, float* y,
               int64_t ldy) {
  Tensor panels = r;
  panels.ndim = 1;
  panels.shape[0] = packed_gemm_b_elements(K, N);
  panels.strides[0] = (int64_t)dtype_size(r.dtype);
  panels.data = static_cast<char*>(r.data) + first * kPanel * K * dtype_size(r.dtype);
  matmul_packed(matrix(const_cast<float*>(a), B, K, K), panels, K, N, nullptr, matrix(y, B, N, ldy));
}

float at(const Tensor* t, int64_t i, int64_t j) {  // a [B, H] float32 view, 0 when absent
  if (!t) return 0.0f;
  return *reinterpret_cast<const float*>(static_cast<const char*>(t->data) + i * t->strides[0] + j * t->strides[1]);
}

}  // namespace

int rnn_gates(RnnCell cell) { return cell == RnnCell::lstm ? 4 : cell == RnnCell::gru ? 3 : 1; }

void rnn_direction(const RnnParams& p, const Tensor& xw, const Tensor& r_panels, const Tensor* rb_h,
                   const Tensor* peephole, const Tensor* h0, const Tensor* c0, const Tensor* lens, const Tensor* y,
                   const Tensor& yh, const Tensor* yc) {
  const int64_t G = rnn_gates(p.cell);
  check(yh.ndim == 2 && yh.dtype == DType::f32 && yh.contiguous(), "rnn: Y_h must be a contiguous [B, H] float32");
  const int64_t B = yh.shape[0], H = yh.shape[1], Hp = (H + kPanel - 1) / kPanel * kPanel, W = G * Hp;
  check(xw.ndim == 3 && xw.dtype == DType::f32 && xw.contiguous() && xw.shape[1] == B && xw.shape[2] == W,
        "rnn: input projections must be a contiguous [T, B, gates x padded hidden] float32");
  const int64_t T = xw.shape[0];
  check(r_panels.ndim == 1 && r_panels.contiguous() && r_panels.numel() == packed_gemm_b_elements(H, W) &&
            (r_panels.dtype == DType::f32 || r_panels.dtype == DType::f16),
        "rnn: R must be packed as one [H, H] operand per gate");
  for (const Tensor* s : {h0, c0})
    check(!s || (s->ndim == 2 && s->dtype == DType::f32 && s->shape[0] == B && s->shape[1] == H),
          "rnn: initial states must be [B, H] float32");
  check(!peephole || (p.cell == RnnCell::lstm && peephole->contiguous() && peephole->numel() == 3 * H &&
                      peephole->dtype == DType::f32), "rnn: peepholes must be [3H] float32");
  check(!rb_h || (rb_h->contiguous() && rb_h->numel() == H && rb_h->dtype == DType::f32), "rnn: bad h-gate bias");
  check(!lens || (lens->dtype == DType::i32 && lens->contiguous() && lens->numel() == B), "rnn: lens must be [B] int32");
  check(!y || (y->ndim == 3 && y->dtype == DType::f32 && y->shape[0] == T && y->shape[1] == B && y->shape[2] == H),
        "rnn: Y must be [T, B, H] float32");
  check(!yc || (yc->ndim == 2 && yc->dtype == DType::f32 && yc->contiguous() && yc->numel() == B * H),
        "rnn: Y_c must be a contiguous [B, H] float32");

  std::vector<float> h(B * H), c(B * H), gates(B * W), rh, hg;  // state, h @ R^T per gate
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < H; j++) h[b * H + j] = at(h0, b, j), c[b * H + j] = at(c0, b, j);
  const bool gru_late_h = p.cell == RnnCell::gru && !p.linear_before_reset;  // h gate: (r . h) @ Rh, a second GEMM
  if (gru_late_h) rh.assign(B * H, 0.0f), hg.assign(B * Hp, 0.0f);
  const float* pe = peephole ? peephole->ptr<float>() : nullptr;
  const float* rbh = rb_h ? rb_h->ptr<float>() : nullptr;
  std::vector<float> ct(H);

  for (int64_t s = 0; s < T; s++) {
    const int64_t t = p.reverse ? T - 1 - s : s;
    step_gemm(h.data(), B, H, r_panels, 0, gru_late_h ? 2 * Hp : W, gates.data(), W);
    std::vector<char> live(B);
    for (int64_t b = 0; b < B; b++) live[b] = !lens || t < lens->ptr<int32_t>()[b];
    for (int64_t b = 0; b < B; b++) {
      if (!live[b]) continue;
      const float* x = xw.ptr<float>() + (t * B + b) * W;
      float* g = gates.data() + b * W;
      float* hb = h.data() + b * H;
      float* cb = c.data() + b * H;
      for (int64_t k = 0; k < (p.cell == RnnCell::gru ? 2 * Hp : W); k++) g[k] += x[k];  // (GRU: z, r)
      if (p.cell == RnnCell::lstm) {
        float *gi = g, *go = g + Hp, *gf = g + 2 * Hp, *gc = g + 3 * Hp;
        if (pe)
          for (int64_t j = 0; j < H; j++) gi[j] += pe[j] * cb[j], gf[j] += pe[2 * H + j] * cb[j];
        activate(p.f, p.clip, gi, H);
        if (p.input_forget)
          for (int64_t j = 0; j < H; j++) gf[j] = 1.0f - gi[j];
        else
          activate(p.f, p.clip, gf, H);
        activate(p.g, p.clip, gc, H);
        for (int64_t j = 0; j < H; j++) cb[j] = gf[j] * cb[j] + gi[j] * gc[j];
        if (pe)
          for (int64_t j = 0; j < H; j++) go[j] += pe[H + j] * cb[j];
        activate(p.f, p.clip, go, H);
        std::copy(cb, cb + H, ct.begin());
        activate(p.h, 0.0f, ct.data(), H);
        for (int64_t j = 0; j < H; j++) hb[j] = go[j] * ct[j];
      } else if (p.cell == RnnCell::gru) {
        float *gz = g, *gr = g + Hp, *gh = g + 2 * Hp;
        activate(p.f, p.clip, gz, H);
        activate(p.f, p.clip, gr, H);
        if (gru_late_h) {
          for (int64_t j = 0; j < H; j++) rh[b * H + j] = gr[j] * hb[j];
        } else {  // linear_before_reset: h~ = g(x_h + r . (h @ Rh + Rbh)); gh holds h @ Rh
          for (int64_t j = 0; j < H; j++) gh[j] = x[2 * Hp + j] + gr[j] * (gh[j] + (rbh ? rbh[j] : 0.0f));
          activate(p.g, p.clip, gh, H);
          for (int64_t j = 0; j < H; j++) hb[j] = (1.0f - gz[j]) * gh[j] + gz[j] * hb[j];
        }
      } else {
        activate(p.f, p.clip, g, H);
        std::copy(g, g + H, hb);
      }
    }
    if (gru_late_h) {  // h~ = g(x_h + (r . h) @ Rh), then the update
      step_gemm(rh.data(), B, H, r_panels, 2 * Hp / kPanel, H, hg.data(), Hp);
      for (int64_t b = 0; b < B; b++) {
        if (!live[b]) continue;
        const float* x = xw.ptr<float>() + (t * B + b) * W;
        float* gz = gates.data() + b * W;
        float* gh = hg.data() + b * Hp;
        float* hb = h.data() + b * H;
        for (int64_t j = 0; j < H; j++) gh[j] += x[2 * Hp + j];
        activate(p.g, p.clip, gh, H);
        for (int64_t j = 0; j < H; j++) hb[j] = (1.0f - gz[j]) * gh[j] + gz[j] * hb[j];
      }
    }
    if (y)
      for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < H; j++)
          *reinterpret_cast<float*>(static_cast<char*>(y->data) + t * y->strides[0] + b * y->strides[1] +
                                    j * y->strides[2]) = live[b] ? h[b * H + j] : 0.0f;
  }
  std::memcpy(yh.data, h.data(), B * H * 4);
  if (yc) std::memcpy(yc->data, c.data(), B * H * 4);
}

}  // namespace onnxstream
