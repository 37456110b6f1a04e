"""Ops the converter's fusion pass creates (see fusion.py); not ONNX ops, so their names start with Fused."""
from __future__ import annotations

import numpy as np

from ... import _core
from .common import contiguous, unary, unary_code


def _as_4d(x: np.ndarray, lead: tuple, tail: tuple, any_strides: bool = False) -> np.ndarray:
    """x broadcast to lead + tail, as [B, H, ...] with B, H the leading axes (views unless lead has > 2 axes).
    The innermost axis is made contiguous unless any_strides (keys and values are packed by the kernel anyway)."""
    x = np.broadcast_to(x, lead + tail)
    if len(lead) > 2:
        x = contiguous(x).reshape((-1, lead[-1]) + tail)
    x = x.reshape((1,) * (2 - len(lead)) + x.shape) if len(lead) < 2 else x
    return x if any_strides or x.strides[-1] == x.itemsize or x.shape[-1] == 1 else contiguous(x)


def FusedAttention(q, kt, v, mask=None, nan_to_zero=0):
    """softmax(q @ kt + mask) @ v over the last two axes; leading axes broadcast like MatMul. With nan_to_zero,
    rows whose keys are all masked give 0 (the exporter's Where(IsNaN(p), 0, p)); otherwise NaN like Softmax."""
    lead = np.broadcast_shapes(q.shape[:-2], kt.shape[:-2], v.shape[:-2])
    m, n, dv = q.shape[-2], kt.shape[-1], v.shape[-1]
    q4 = _as_4d(q, lead, q.shape[-2:])
    k4, v4 = (_as_4d(x, lead, x.shape[-2:], any_strides=True) for x in (kt, v))  # a Transpose view stays a view
    mask4 = None if mask is None else np.broadcast_to(_as_4d(mask, lead, (m, n)), q4.shape[:2] + (m, n))
    y = np.empty(q4.shape[:3] + (dv,), np.float32)
    _core.attention(q4, k4, v4, mask4, y, bool(nan_to_zero))
    return y.reshape(lead + (m, dv))


def FusedSiLU(X, _out=None):
    return unary("silu", X, out=_out)


def FusedGroupNorm(X, scale, bias, num_groups, epsilon=1e-5, activation=""):
    """GroupNorm over [N, C, ...] with per-channel scale and bias, then the optional activation in place."""
    y = np.empty(X.shape, np.float32)
    n, c = X.shape[:2]
    _core.group_norm(contiguous(X).reshape(n, c, -1), scale, bias, num_groups, float(epsilon),
                     y.reshape(n, c, -1))
    if activation == "silu":
        _core.unary(unary_code("silu"), y, y, 0.0, 0.0)
    return y


def FusedRowTiled(x, *weight_values, rows, input, output, weights, nodes):
    """Run a chain of row-local ops (see fusion.fuse_row_tiles) on `rows` rows of x at a time."""
    from . import OPS, op_kwargs
    from .common import cast, contiguous
    matmul_weights = {n["inputs"][1] for n in nodes if n["op"] == "MatMul"}
    env_weights = {name: (value if name in matmul_weights or value.dtype != np.float16 else cast(value, np.float32))
                   for name, value in zip(weights, weight_values)}
    x2 = x.reshape(-1, x.shape[-1])
    lead = (1,) * (x.ndim - 2)  # tiles keep x's rank, so the chain's axis attributes still mean the same axes
    out = None
    for r in range(0, x2.shape[0], rows):
        env = dict(env_weights)
        env[input] = x2[r:r + rows].reshape(lead + (-1, x.shape[-1]))
        for node in nodes:
            # (Softmax reads the opset; the chain holds only last-axis ones, the same in every opset)
            kwargs = op_kwargs(node["op"], node["attrs"], len(node["outputs"]), opset=13)
            result = OPS[node["op"]](*[env[n] if n else None for n in node["inputs"]], **kwargs)
            for name, value in zip(node["outputs"], result if isinstance(result, tuple) else (result,)):
                env[name] = value
        tile = env[output].reshape(-1, env[output].shape[-1])
        if out is None:
            out = np.empty((x2.shape[0], tile.shape[-1]), tile.dtype)
        out[r:r + rows] = tile
    return out.reshape(x.shape[:-1] + (out.shape[-1],))
