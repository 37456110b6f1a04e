"""Transformer-block ops of opsets 23+: Attention, RMSNormalization, RotaryEmbedding (C++ kernels: flash attention
on the GEMM microkernels, cpp/ops/attention.cc; cpp/ops/norm.cc; cpp/ops/rotary.cc), and LinearAttention's
recurrence (numpy over time steps)."""
from __future__ import annotations

import math

import numpy as np

from ... import _core
from .common import axis_index, binary, contiguous, unary
from .linalg import matmul
from .reduce import Softmax


def RMSNormalization(X, scale, axis=-1, epsilon=1e-5, stash_type=1):
    if X.dtype != np.float32:
        raise NotImplementedError(f"RMSNormalization: dtype {X.dtype} is not supported (float32 only)")
    axis = axis_index(axis, X.ndim)
    n = math.prod(X.shape[axis:])
    x = contiguous(X).reshape(-1, n)
    w = contiguous(np.broadcast_to(np.asarray(scale, np.float32), X.shape[axis:])).reshape(-1)
    y = np.empty(x.shape, np.float32)
    _core.rms_norm(x, w, float(epsilon), y)
    return y.reshape(X.shape)


def RotaryEmbedding(X, cos_cache, sin_cache, position_ids=None, interleaved=0, num_heads=0, rotary_embedding_dim=0):
    """X: [B, H, S, D] or [B, S, H * D] (num_heads given); caches [max_position, R / 2] indexed by position_ids,
    or [B, S, R / 2] without them."""
    if X.dtype != np.float32:
        raise NotImplementedError(f"RotaryEmbedding: dtype {X.dtype} is not supported (float32 only)")
    x = contiguous(X)
    y = np.empty(x.shape, np.float32)
    if x.ndim == 4:  # [B, H, S, D] seen as [B, S, H, D] (strided views)
        xv, yv = x.transpose(0, 2, 1, 3), y.transpose(0, 2, 1, 3)
    elif x.ndim == 3 and num_heads:
        shape = (x.shape[0], x.shape[1], num_heads, x.shape[2] // num_heads)
        xv, yv = x.reshape(shape), y.reshape(shape)
    else:
        raise ValueError(f"RotaryEmbedding: input must be 4-D, or 3-D with num_heads, got shape {X.shape}")
    b, s, _, d = xv.shape
    rotary = rotary_embedding_dim or d
    if position_ids is not None:
        cos, sin = (np.take(c, np.asarray(position_ids, np.int64), axis=0) for c in (cos_cache, sin_cache))
    else:
        cos, sin = cos_cache, sin_cache
    cos, sin = (np.broadcast_to(np.asarray(c, np.float32), (b, s, c.shape[-1])) for c in (cos, sin))
    _core.rotary_embedding(xv, cos, sin, int(rotary), bool(interleaved), yv)
    return y


# ---------------------------------------------------------------- Attention

def _heads(x, n):
    """[B, S, n * d] -> [B, n, S, d] (a view)."""
    return x.reshape(x.shape[0], x.shape[1], n, -1).transpose(0, 2, 1, 3)


def _bias(mask, is_causal, past_len, nonpad, m, n, left, right):
    """The additive float32 bias (0 or -inf, plus a float mask) broadcastable to [B, H, M, N], or None."""
    bias = None

    def add(part):
        nonlocal bias
        bias = part if bias is None else bias + part

    if mask is not None:
        mask = np.asarray(mask)
        part = np.where(mask, np.float32(0), np.float32(-np.inf)) if mask.dtype == np.bool_ else mask
        if part.shape[-1] < n:  # a mask over the first keys only: the others are masked out
            pad = [(0, 0)] * (part.ndim - 1) + [(0, n - part.shape[-1])]
            part = np.pad(part, pad, constant_values=-np.inf)
        add(part.astype(np.float32))
    # Query i (of this block) sits at position i + offset among the keys: the past length, or per batch row
    # nonpad_kv_seqlen - M for an external cache.
    offset = past_len if nonpad is None or past_len else (np.asarray(nonpad, np.int64).reshape(-1, 1, 1, 1) - m)
    diff = np.arange(m)[:, None] + offset - np.arange(n)[None, :]  # [M, N] or [B, 1, M, N]: query minus key
    if is_causal:
        add(np.where(diff >= 0, np.float32(0), np.float32(-np.inf)))
    if left >= 0 or right >= 0:
        allowed = (diff <= left if left >= 0 else True) & (-diff <= right if right >= 0 else True)
        add(np.where(allowed, np.float32(0), np.float32(-np.inf)))
    if nonpad is not None:
        keys = np.arange(n)[None, :] < np.asarray(nonpad, np.int64).reshape(-1, 1)
        add(np.where(keys, np.float32(0), np.float32(-np.inf)).reshape(-1, 1, 1, n))
    return bias


def _as_4d(b):
    return None if b is None else b.reshape((1,) * (4 - b.ndim) + b.shape)


def Attention(Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, is_causal=0,
              kv_num_heads=None, q_num_heads=None, qk_matmul_output_mode=0, scale=None, softcap=0.0,
              softmax_precision=None, left_window_size=-1, right_window_size=-1, _num_results=1):
    """softmax(Q K^T * scale + bias) V per head, with grouped-query heads, a KV cache (past + new keys =
    present), causal and sliding-window masks. Returns (Y, present_key, present_value, qk_matmul_output)."""
    for t in (Q, K, V):
        if t.dtype != np.float32:
            raise NotImplementedError(f"Attention: dtype {t.dtype} is not supported (float32 only)")
    three_d = Q.ndim == 3
    if three_d:
        if not q_num_heads or not kv_num_heads:
            raise ValueError("Attention: 3-D inputs need q_num_heads and kv_num_heads")
        q, k, v = _heads(Q, q_num_heads), _heads(K, kv_num_heads), _heads(V, kv_num_heads)
    else:
        q, k, v = Q, K, V
    if past_key is not None:
        k, v = np.concatenate([past_key, k], axis=2), np.concatenate([past_value, v], axis=2)
    b, hq, m, d = q.shape
    hkv, n, dv = k.shape[1], k.shape[2], v.shape[3]
    if hq % hkv:
        raise ValueError(f"Attention: {hq} query heads do not group over {hkv} key/value heads")
    group = hq // hkv  # query heads h * group ... h * group + group - 1 read key/value head h
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    bias = _as_4d(_bias(attn_mask, is_causal, 0 if past_key is None else past_key.shape[2], nonpad_kv_seqlen, m, n,
                        left_window_size, right_window_size))
    qs = binary("mul", q, np.array(scale, np.float32))  # [B, Hq, M, D] contiguous
    if _num_results > 3 or softcap:
        y, qk = _attention_scores(qs, k, v, bias, group, softcap, qk_matmul_output_mode)
    else:
        y, qk = _flash(qs, k, v, bias, group), None
    if three_d:
        y = contiguous(y.transpose(0, 2, 1, 3)).reshape(b, m, hq * dv)
    return (y, contiguous(k), contiguous(v), qk)[:max(_num_results, 1)] if _num_results > 1 else y


def _flash(qs, k, v, bias, group):
    """The C++ flash kernel once per query head of each group: key and value heads are read as they are, never
    repeated. Rows whose keys are all masked give 0."""
    b, hq, m, _ = qs.shape
    hkv, n, dv = k.shape[1], k.shape[2], v.shape[3]
    y = np.empty((b, hq, m, dv), np.float32)
    kt = k.transpose(0, 1, 3, 2)
    for j in range(group):  # query heads j, j + group, ...: one per key/value head (strided views)
        mask = None
        if bias is not None:
            mask = np.broadcast_to(bias if bias.shape[1] == 1 else bias[:, j::group], (b, hkv, m, n))
        out = np.empty((b, hkv, m, dv), np.float32)
        _core.attention(qs[:, j::group], kt, v, mask, out, True)
        y[:, j::group] = out
    return y


def _attention_scores(qs, k, v, bias, group, softcap, mode):
    """The scores materialized (softcap, or the qk_matmul_output output asked for): (Y, that output)."""
    if group > 1:
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    scores = matmul(qs, contiguous(k.transpose(0, 1, 3, 2)))  # [B, H, M, N]
    if softcap:
        scores = binary("mul", unary("tanh", binary("div", scores, np.array(softcap, np.float32))),
                        np.array(softcap, np.float32))
    with_bias = scores if bias is None else binary("add", scores, np.broadcast_to(bias, scores.shape))
    probs = Softmax(with_bias, axis=-1)
    if bias is not None:  # rows with every key masked attend to nothing: 0, not Softmax's NaN
        empty = np.isneginf(bias).all(axis=-1, keepdims=True)
        probs = np.where(empty, np.float32(0), probs)
    qk = {0: scores, 1: scores, 2: with_bias, 3: probs}.get(mode)
    if qk is None:
        raise ValueError(f"Attention: unknown qk_matmul_output_mode {mode}")
    return matmul(contiguous(probs), contiguous(v)), contiguous(qk)


# ---------------------------------------------------------------- LinearAttention

def LinearAttention(query, key, value, past_state=None, decay=None, beta=None, chunk_size=None, kv_num_heads=None,
                    q_num_heads=None, scale=None, update_rule="gated_delta"):
    """The linear-attention recurrence over time steps (state [B, H, dk, dv]): optional decay (gated), delta-rule
    correction, write k v^T, read scale * q S. Returns (output [B, T, Hq * dv], present_state)."""
    if update_rule not in ("linear", "gated", "delta", "gated_delta"):
        raise ValueError(f"LinearAttention: unknown update_rule '{update_rule}'")
    if not q_num_heads or not kv_num_heads or q_num_heads % kv_num_heads:
        raise ValueError("LinearAttention: q_num_heads must be a positive multiple of kv_num_heads")
    gated, delta = update_rule in ("gated", "gated_delta"), update_rule in ("delta", "gated_delta")
    if gated != (decay is not None) or delta != (beta is not None):
        raise ValueError(f"LinearAttention: update_rule '{update_rule}' takes "
                         f"{'decay' if gated else 'no decay'} and {'beta' if delta else 'no beta'}")
    b, t, _ = query.shape
    dk, dv = query.shape[-1] // q_num_heads, value.shape[-1] // kv_num_heads
    group = q_num_heads // kv_num_heads
    q = _heads(query, q_num_heads).astype(np.float32)   # [B, Hq, T, dk]
    k = _heads(key, kv_num_heads).astype(np.float32)    # [B, Hkv, T, dk]
    v = _heads(value, kv_num_heads).astype(np.float32)  # [B, Hkv, T, dv]
    if gated:
        per_dim = decay.shape[-1] == kv_num_heads * dk
        g = np.exp(_heads(decay, kv_num_heads) if per_dim else decay.reshape(b, t, kv_num_heads, 1)
                   .transpose(0, 2, 1, 3)).astype(np.float32)  # [B, Hkv, T, dk or 1]
    if delta:
        bt = beta.reshape(b, t, beta.shape[-1], 1).transpose(0, 2, 1, 3).astype(np.float32)  # [B, H or 1, T, 1]
    state = (np.zeros((b, kv_num_heads, dk, dv), np.float32) if past_state is None
             else past_state.astype(np.float32).copy())
    scale = 1.0 / math.sqrt(dk) if not scale else float(scale)
    out = np.empty((b, q_num_heads, t, dv), np.float32)
    for i in range(t):
        if gated:
            state *= g[:, :, i, :, None]
        vi = v[:, :, i]
        if delta:  # v <- beta (v - S^T k): what the state already recalls for this key is replaced
            vi = bt[:, :, i] * (vi - np.matmul(k[:, :, i, None, :], state)[:, :, 0])
        state += k[:, :, i, :, None] * vi[:, :, None, :]
        qi = q[:, :, i].reshape(b, kv_num_heads, group, dk)  # query heads of each key/value head
        out[:, :, i] = (scale * np.matmul(qi, state)).reshape(b, q_num_heads, dv)
    y = out.transpose(0, 2, 1, 3).reshape(b, t, q_num_heads * dv).astype(query.dtype)
    return y, state.astype(query.dtype if past_state is None else past_state.dtype)
