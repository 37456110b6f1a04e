// LSTM, GRU and RNN: one direction over a sequence. The input projections X @ W^T of every step are one GEMM done
// before (by the caller, on packed W); here each step multiplies the hidden state by packed R on the GEMM
// microkernels, then applies the cell's gate math.
#pragma once
#include "tensor.h"

namespace onnxstream {

enum class RnnCell : int { lstm = 0, gru = 1, rnn = 2 };
// The activation functions the ONNX recurrent ops name (attribute "activations").
enum class RnnAct : int { sigmoid, tanh, relu, affine, leaky_relu, thresholded_relu, scaled_tanh, hard_sigmoid, elu,
                          softsign, softplus };
struct RnnActivation {
  RnnAct op = RnnAct::sigmoid;
  float alpha = 0, beta = 0;
};
struct RnnParams {
  RnnCell cell = RnnCell::lstm;
  bool reverse = false, linear_before_reset = false, input_forget = false;
  float clip = 0;           // > 0: activation inputs clipped to [-clip, clip]
  RnnActivation f, g, h;    // LSTM f, g, h; GRU f, g; RNN f
};

// Gates per cell: LSTM 4 (i, o, f, c), GRU 3 (z, r, h), RNN 1.
int rnn_gates(RnnCell cell);
// xw: [T, B, G*Hp] float32 contiguous: X @ W^T plus the biases, gate g in columns [g*Hp, g*Hp + H), Hp = H rounded
//     up to 16 (a multiple of the panel width, so each gate starts a panel).
// r_panels: R^T as G consecutive packed [H, H] operands (pack_gemm_b each: G*Hp/16 panels [H][16]), float32/16.
// rb_h: GRU with linear_before_reset: the h gate's recurrence bias [H] (applied before the reset gate), or null.
// peephole: LSTM [3H] (i, o, f) or null. h0, c0: [B, H] any strides, or null for zeros. lens: [B] int32 or null.
// y: [T, B, H] float32, any strides (one direction of Y), or null; yh, yc: [B, H] contiguous (yc LSTM only).
// Steps at or past a batch entry's length leave its state and give zeros in y, as onnxruntime does.
void rnn_direction(const RnnParams& p, const Tensor& xw, const Tensor& r_panels, const Tensor* rb_h,
                   const Tensor* peephole, const Tensor* h0, const Tensor* c0, const Tensor* lens, const Tensor* y,
                   const Tensor& yh, const Tensor* yc);

}  // namespace onnxstream
