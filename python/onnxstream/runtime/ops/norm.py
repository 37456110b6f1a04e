"""Normalization ONNX ops: numpy lays the tensor out as rows (or [N, C, S]), the C++ core computes the statistics
and applies them."""
from __future__ import annotations

import math

import numpy as np

from ... import _core
from .common import as_ints, axis_index, binary, contiguous, middle_axes_view


def _f32(name, v):
    v = np.asarray(v)
    if v.dtype != np.float32:
        raise NotImplementedError(f"{name}: dtype {v.dtype} is not supported (float32 only)")
    return contiguous(v)


def _per_channel(v, c):
    """A [C] contiguous float32 copy of a per-channel parameter."""
    return contiguous(np.broadcast_to(np.asarray(v, np.float32).reshape(-1), (c,)))


def _rows_norm(x, n, eps, scale=None, bias=None, with_stats=False):
    """Normalise the last n elements of every row of x (x reshaped to [rows, n])."""
    rows = x.size // n if n else 0
    xv = contiguous(x).reshape(rows, n)
    y = np.empty(xv.shape, np.float32)
    mean = np.empty(rows, np.float32) if with_stats else None
    inv_std = np.empty(rows, np.float32) if with_stats else None
    _core.layer_norm(xv, scale, bias, float(eps), y, mean, inv_std)
    return y.reshape(x.shape), mean, inv_std


def _along(v, norm_shape, n):
    """A scale or bias as [n] float32 (broadcast only when it is not already of the normalized shape: numpy's
    broadcast_to costs more than normalizing a 128-wide row)."""
    v = _f32("LayerNormalization", v)
    return (v if v.shape == norm_shape else contiguous(np.broadcast_to(v, norm_shape))).reshape(n)


def LayerNormalization(X, Scale, B=None, axis=-1, epsilon=1e-5, stash_type=1, _num_results=1):
    X = _f32("LayerNormalization", X)
    if stash_type != 1:
        raise NotImplementedError(f"LayerNormalization: stash_type {stash_type} is not supported (float32 only)")
    axis = axis_index(axis, X.ndim)
    norm_shape = X.shape[axis:]
    n = math.prod(norm_shape)
    scale = _along(Scale, norm_shape, n)
    bias = None if B is None else _along(B, norm_shape, n)
    y, mean, inv_std = _rows_norm(X, n, epsilon, scale, bias, with_stats=_num_results > 1)
    if _num_results == 1:
        return y
    stats_shape = list(X.shape[:axis]) + [1] * (X.ndim - axis)
    return (y, mean.reshape(stats_shape), inv_std.reshape(stats_shape))[:_num_results]


def _group_norm(X, scale, bias, groups, eps):
    X = _f32("GroupNormalization", X)
    n, c = X.shape[0], X.shape[1]
    xv = X.reshape(n, c, -1)
    y = np.empty(xv.shape, np.float32)
    _core.group_norm(xv, _per_channel(scale, c), _per_channel(bias, c), int(groups), float(eps), y)
    return y.reshape(X.shape)


def GroupNormalization(X, scale, bias, num_groups, epsilon=1e-5, stash_type=1, _opset=21):
    c = X.shape[1]
    if _opset < 21 and c != num_groups:  # opset 18: scale and bias hold one value per group
        scale = np.repeat(np.asarray(scale).reshape(-1), c // num_groups)
        bias = np.repeat(np.asarray(bias).reshape(-1), c // num_groups)
    return _group_norm(X, scale, bias, num_groups, epsilon)


def InstanceNormalization(input, scale, B, epsilon=1e-5):
    return _group_norm(input, scale, B, input.shape[1], epsilon)


def _batch_stats(x3):
    """Mean and (population) variance per channel of an [N, C, S] tensor."""
    n = x3.shape[0] * x3.shape[2]
    v, _ = middle_axes_view(x3, [0, 2])
    mean = np.empty(x3.shape[1], np.float32)
    _core.reduce("mean", v, mean)
    centred = binary("sub", x3, mean.reshape(1, -1, 1))
    cv, _ = middle_axes_view(centred, [0, 2])
    var = np.empty(x3.shape[1], np.float32)
    _core.reduce("sum_square", cv, var)
    return mean, binary("div", var, np.array(max(n, 1), np.float32))


def BatchNormalization(X, scale, B, input_mean, input_var, epsilon=1e-5, momentum=0.9, training_mode=0, spatial=1,
                       _num_results=1):
    X = _f32("BatchNormalization", X)
    c = X.shape[1] if X.ndim > 1 else 1
    if not spatial:  # opsets 7-8: statistics per activation ([C, D1, ...]), each one a channel of length 1
        c = int(np.prod(X.shape[1:], dtype=np.int64))
    x3 = X.reshape(X.shape[0], c, -1)
    scale, bias = _per_channel(scale, c), _per_channel(B, c)
    mean, var = _per_channel(input_mean, c), _per_channel(input_var, c)
    if training_mode:
        cur_mean, cur_var = _batch_stats(x3)
        m = np.array(momentum, np.float32)
        keep = np.array(1.0 - momentum, np.float32)
        running_mean = binary("add", binary("mul", mean, m), binary("mul", cur_mean, keep))
        running_var = binary("add", binary("mul", var, m), binary("mul", cur_var, keep))
        mean, var = cur_mean, cur_var
    y = np.empty(x3.shape, np.float32)
    _core.batch_norm(x3, scale, bias, mean, var, float(epsilon), y)
    y = y.reshape(X.shape)
    if not training_mode:
        return y
    return (y, running_mean, running_var)[:max(_num_results, 1)]


def MeanVarianceNormalization(X, axes=(0, 2, 3)):
    X = _f32("MeanVarianceNormalization", X)
    axes = sorted({axis_index(a, X.ndim) for a in as_ints(list(axes))})
    rest = [i for i in range(X.ndim) if i not in axes]
    xt = contiguous(X.transpose(rest + axes))  # reduced axes last: one row per kept index
    n = int(np.prod([X.shape[a] for a in axes], dtype=np.int64))
    y, _, _ = _rows_norm(xt, n, 1e-18)  # the spec adds 1e-9 to the std; 1e-18 to the variance is the same to 1e-9
    return y.transpose(np.argsort(rest + axes))


def LpNormalization(input, axis=-1, p=2):
    if p not in (1, 2):
        raise ValueError(f"LpNormalization: p must be 1 or 2, got {p}")
    x = _f32("LpNormalization", input)
    axis = axis_index(axis, x.ndim)
    v, _ = middle_axes_view(x, [axis])
    norm = np.empty((v.shape[0], v.shape[2]), np.float32)
    _core.reduce("l1" if p == 1 else "l2", v, norm)
    shape = list(x.shape)
    shape[axis] = 1
    norm = norm.reshape(shape)
    y = binary("div", x, norm)
    # A zero norm gives 0 (not 0/0 = NaN), as the reference does.
    zero = binary("equal", norm, np.zeros((), np.float32), np.bool_)
    out = np.empty(y.shape, np.float32)
    _core.where(np.broadcast_to(zero, y.shape), np.zeros(y.shape, np.float32), y, out)
    return out


def LRN(X, size, alpha=1e-4, beta=0.75, bias=1.0):
    """x / (bias + alpha / size * sum of x^2 over the size channels around c)^beta, the window sums from one
    cumulative sum over the channel axis."""
    x = _f32("LRN", X)
    c = x.shape[1]
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)  # channels before and after c
    sq = np.square(x, dtype=np.float64)
    csum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)  # [N, C + 1, ...]
    top = np.minimum(np.arange(c) + hi + 1, c)
    bottom = np.maximum(np.arange(c) - lo, 0)
    window = np.take(csum, top, axis=1) - np.take(csum, bottom, axis=1)
    return (x / (bias + alpha / size * window) ** beta).astype(np.float32)
