"""Ops the converter's fusion pass creates (see fusion.py); not ONNX ops, so their names start with Fused."""
from __future__ import annotations

import numpy as np

from ... import _core


def _as_4d(x: np.ndarray, lead: tuple, tail: tuple) -> np.ndarray:
    """x broadcast to lead + tail, as [B, H, ...] with B, H the leading axes (views unless lead has > 2 axes)."""
    x = np.broadcast_to(x, lead + tail)
    if len(lead) > 2:
        x = np.ascontiguousarray(x).reshape((-1, lead[-1]) + tail)
    x = x.reshape((1,) * (2 - len(lead)) + x.shape) if len(lead) < 2 else x
    return x if x.strides[-1] == x.itemsize or x.shape[-1] == 1 else np.ascontiguousarray(x)


def FusedAttention(q, kt, v, mask=None, nan_to_zero=0):
    """softmax(q @ kt + mask) @ v over the last two axes; leading axes broadcast like MatMul. With nan_to_zero,
    rows whose keys are all masked give 0 (the exporter's Where(IsNaN(p), 0, p)); otherwise NaN like Softmax."""
    lead = np.broadcast_shapes(q.shape[:-2], kt.shape[:-2], v.shape[:-2])
    m, n, dv = q.shape[-2], kt.shape[-1], v.shape[-1]
    q4, k4, v4 = (_as_4d(x, lead, x.shape[-2:]) for x in (q, kt, v))
    mask4 = None if mask is None else np.broadcast_to(_as_4d(mask, lead, (m, n)), q4.shape[:2] + (m, n))
    y = np.empty(q4.shape[:3] + (dv,), np.float32)
    _core.attention(q4, k4, v4, mask4, y, bool(nan_to_zero))
    return y.reshape(lead + (m, dv))


def FusedSiLU(X):
    y = np.empty(X.shape, np.float32)
    _core.unary("silu", X, y, 0.0, 0.0)
    return y


def FusedGroupNorm(X, scale, bias, num_groups, epsilon=1e-5, activation=""):
    """GroupNorm over [N, C, ...] with per-channel scale and bias, then the optional activation in place."""
    y = np.empty(X.shape, np.float32)
    n, c = X.shape[:2]
    _core.group_norm(np.ascontiguousarray(X).reshape(n, c, -1), scale, bias, num_groups, float(epsilon),
                     y.reshape(n, c, -1))
    if activation == "silu":
        _core.unary("silu", y, y, 0.0, 0.0)
    return y
