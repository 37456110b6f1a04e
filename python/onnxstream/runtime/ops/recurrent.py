"""LSTM, GRU, RNN. Per direction: one GEMM projects every step's input (X @ W^T + biases) on packed W, then
cpp/ops/recurrent.cc runs the steps (h @ R^T on packed R, the gate math). W and R arrive packed at convert time as
one [K, H] operand per gate (packing.py, use "rnn"); weights fed at run time are packed here the same way."""
from __future__ import annotations

import numpy as np

from ... import _core
from ..panels import Panels
from .common import cast, contiguous

PANEL = 16
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
CELL_CODES = {"LSTM": 0, "GRU": 1, "RNN": 2}
DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
# name -> (code in cpp/ops/recurrent.h, takes alpha, takes beta, default alpha, default beta); alpha and beta are
# consumed from the attribute lists by the functions that take them, in order, as onnxruntime does.
ACTIVATIONS = {"sigmoid": (0, 0, 0, 0.0, 0.0), "tanh": (1, 0, 0, 0.0, 0.0), "relu": (2, 0, 0, 0.0, 0.0),
               "affine": (3, 1, 1, 0.0, 0.0), "leakyrelu": (4, 1, 0, 0.01, 0.0), "thresholdedrelu": (5, 1, 0, 0.0, 0.0),
               "scaledtanh": (6, 1, 1, 0.0, 0.0), "hardsigmoid": (7, 1, 1, 0.2, 0.5), "elu": (8, 1, 0, 1.0, 0.0),
               "softsign": (9, 0, 0, 0.0, 0.0), "softplus": (10, 0, 0, 0.0, 0.0)}


def LSTM(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, activation_alpha=None,
         activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None, input_forget=0,
         layout=0):
    return prepare_lstm(activation_alpha, activation_beta, activations, clip, direction, hidden_size, input_forget,
                        layout)(X, W, R, B, sequence_lens, initial_h, initial_c, P)


def GRU(X, W, R, B=None, sequence_lens=None, initial_h=None, activation_alpha=None, activation_beta=None,
        activations=None, clip=None, direction="forward", hidden_size=None, layout=0, linear_before_reset=0):
    return prepare_gru(activation_alpha, activation_beta, activations, clip, direction, hidden_size, layout,
                       linear_before_reset)(X, W, R, B, sequence_lens, initial_h)


def RNN(X, W, R, B=None, sequence_lens=None, initial_h=None, activation_alpha=None, activation_beta=None,
        activations=None, clip=None, direction="forward", hidden_size=None, layout=0):
    return prepare_rnn(activation_alpha, activation_beta, activations, clip, direction, hidden_size,
                       layout)(X, W, R, B, sequence_lens, initial_h)


def prepare_lstm(activation_alpha=None, activation_beta=None, activations=None, clip=None, direction="forward",
                 hidden_size=None, input_forget=0, layout=0):
    return _prepare("LSTM", activation_alpha, activation_beta, activations, clip, direction, hidden_size, layout,
                    input_forget=input_forget)


def prepare_gru(activation_alpha=None, activation_beta=None, activations=None, clip=None, direction="forward",
                hidden_size=None, layout=0, linear_before_reset=0):
    run = _prepare("GRU", activation_alpha, activation_beta, activations, clip, direction, hidden_size, layout,
                   linear_before_reset=linear_before_reset)
    return lambda X, W, R, B=None, sequence_lens=None, initial_h=None: run(X, W, R, B, sequence_lens, initial_h)


def prepare_rnn(activation_alpha=None, activation_beta=None, activations=None, clip=None, direction="forward",
                hidden_size=None, layout=0):
    run = _prepare("RNN", activation_alpha, activation_beta, activations, clip, direction, hidden_size, layout)
    return lambda X, W, R, B=None, sequence_lens=None, initial_h=None: run(X, W, R, B, sequence_lens, initial_h)


LSTM.prepare, GRU.prepare, RNN.prepare = prepare_lstm, prepare_gru, prepare_rnn


def _prepare(op, alphas, betas, activations, clip, direction, hidden_size, layout, input_forget=0,
             linear_before_reset=0):
    """The op with its attributes resolved once and its padded biases kept: a recurrent cell over one 32 ms audio
    frame costs less than that preparation."""
    G = GATES[op]
    dirs = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}.get(direction)
    if dirs is None:
        raise ValueError(f"{op} direction must be forward, reverse or bidirectional, not {direction!r}")
    D = len(dirs)
    acts = _activations(op, activations, alphas, betas, D)
    clip = float(clip) if clip else 0.0
    kept = {}   # hidden size -> (B, its padded biases): B is a small constant, the same array every run

    def derived(key, array, make):
        hit = kept.get(key)
        if hit is None or hit[0] is not array:
            hit = kept[key] = (array, make(array))
        return hit[1]

    def run(X, W, R, B=None, lens=None, h0=None, c0=None, P=None):
        if layout:  # batch first: X [B, T, I], states [B, D, H]
            X = X.transpose(1, 0, 2)
            h0, c0 = (None if s is None else s.transpose(1, 0, 2) for s in (h0, c0))
        X = contiguous(cast(X, np.float32))
        T, batch, I = X.shape
        H = int(hidden_size) if hidden_size else R.shape[-1]
        if W.shape != (D, G * H, I) or R.shape != (D, G * H, H):
            raise ValueError(f"{op} weights W {tuple(W.shape)} and R {tuple(R.shape)} do not fit {D} direction(s), "
                             f"{G} gate(s), hidden size {H} and input size {I}")
        lens32 = None if lens is None else contiguous(lens.astype(np.int32))
        if lens32 is not None and (lens32.shape != (batch,) or lens32.min(initial=0) < 0 or
                                   lens32.max(initial=0) > T):
            raise ValueError(f"{op} sequence_lens must be [{batch}] lengths up to {T}")
        Y = np.empty((T, D, batch, H), np.float32)  # (every element written: zeros past a sequence's length)
        Y_h = np.empty((D, batch, H), np.float32)
        Y_c = np.empty((D, batch, H), np.float32) if op == "LSTM" else None
        w_panels, r_panels = _per_direction(W, G, H, D), _per_direction(R, G, H, D)
        biases = derived(H, B, lambda b: _biases(op, b, G, H, D, linear_before_reset))
        Hp = -(-H // PANEL) * PANEL
        for d, reverse in enumerate(dirs):
            padded, rb_h = biases[d]
            xw = np.empty((T, batch, G * Hp), np.float32)  # every step's X @ W^T + biases, gates 16-aligned
            _core.matmul_packed(X.reshape(1, T * batch, I), w_panels[d], I, G * Hp, padded,
                                xw.reshape(1, T * batch, G * Hp))
            state = lambda s: None if s is None else cast(s[d], np.float32)  # noqa: E731
            _core.rnn_direction(CELL_CODES[op], reverse, bool(linear_before_reset), bool(input_forget), clip,
                                acts[d], xw, r_panels[d], rb_h,
                                None if P is None else contiguous(cast(P[d], np.float32)), state(h0), state(c0),
                                lens32, Y[:, d], Y_h[d], None if Y_c is None else Y_c[d])
        if layout:
            Y, Y_h = contiguous(Y.transpose(2, 0, 1, 3)), contiguous(Y_h.transpose(1, 0, 2))
            Y_c = None if Y_c is None else contiguous(Y_c.transpose(1, 0, 2))
        return (Y, Y_h) if Y_c is None else (Y, Y_h, Y_c)
    return run


def _biases(op, B, G: int, H: int, D: int, linear_before_reset) -> list:
    """Per direction, (Wb + Rb padded to [G, Hp] as 1-D, GRU's Rbh when the reset gate multiplies it, else None)."""
    Hp = -(-H // PANEL) * PANEL
    out = []
    for d in range(D):
        wb, rb = (np.zeros((G, H), np.float32),) * 2 if B is None else \
            (cast(B[d], np.float32).reshape(2, G, H)[0], cast(B[d], np.float32).reshape(2, G, H)[1])
        bias = wb + rb
        rb_h = None
        if op == "GRU" and linear_before_reset:  # Rbh is multiplied by the reset gate: not folded into x
            bias[2] = wb[2]
            rb_h = contiguous(rb[2])
        padded = np.zeros((G, Hp), np.float32)
        padded[:, :H] = bias
        out.append((padded.reshape(-1), rb_h))
    return out


def _per_direction(w, G: int, H: int, D: int) -> list:
    """Per direction, the 1-D panels of W or R [D, G*H, K]: G packed [K, H] operands (gate g: element (k, j) =
    w[d, g*H + j, k]), read as one packed [K, G*Hp] operand."""
    if isinstance(w, Panels):  # packed at convert time (packing.py): D*G groups in order
        if w.n != H:
            raise ValueError(f"packed recurrent weight of {w.n} columns for hidden size {H}")
        size = w.data.size // D
        return [w.data[d * size:(d + 1) * size] for d in range(D)]  # (np.split costs more than a cell step)
    w = cast(w, np.float32) if w.dtype != np.float16 else w
    K = w.shape[2]
    out = []
    for d in range(D):
        panels = np.empty(G * _core.packed_gemm_b_elements(K, H), w.dtype)
        for g, part in enumerate(np.split(panels, G)):
            _core.pack_gemm_b(w[d, g * H:(g + 1) * H].T, part)
        out.append(panels)
    return out


def _activations(op, names, alphas, betas, D) -> list:
    """Per direction, the (code, alpha, beta) of f, g, h for cpp/ops/recurrent.h (unused slots: sigmoid)."""
    per = len(DEFAULT_ACTIVATIONS[op])
    names = list(names) if names else DEFAULT_ACTIVATIONS[op] * D
    if len(names) != per * D:
        raise ValueError(f"{op} needs {per * D} activations for {D} direction(s), got {names}")
    alphas, betas = list(alphas or []), list(betas or [])
    acts = []
    for name in names:
        spec = ACTIVATIONS.get(name.lower())
        if spec is None:
            raise ValueError(f"{op} activation {name!r} is not one of {sorted(ACTIVATIONS)}")
        code, takes_alpha, takes_beta, alpha, beta = spec
        if takes_alpha and alphas:
            alpha = alphas.pop(0)
        if takes_beta and betas:
            beta = betas.pop(0)
        acts.append((code, float(alpha), float(beta)))
    return [(acts[d * per:(d + 1) * per] + [(0, 0.0, 0.0)] * 3)[:3] for d in range(D)]
