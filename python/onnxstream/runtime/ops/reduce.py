"""Reductions and ops along one axis (ArgMax, Softmax, CumSum, TopK): numpy gathers the axes into the middle of
an [outer, n, inner] view, the C++ core does the arithmetic."""
from __future__ import annotations

import math

import numpy as np

from ... import _core
from .common import as_ints, axis_index, contiguous, middle_axes_view


def _reduce(op: str, data, axes, keepdims, noop_with_empty_axes):
    axes = as_ints(axes)
    if not axes and noop_with_empty_axes:
        return data
    rank = data.ndim
    axes = sorted({axis_index(a, rank) for a in axes}) if axes else list(range(rank))
    x, kept = middle_axes_view(data, axes)
    y = np.empty(kept, data.dtype)
    _core.reduce(op, x, y)
    if keepdims:
        y = y.reshape([1 if i in axes else d for i, d in enumerate(data.shape)])
    return y


# `axes` is an attribute before opset 18 (13 for ReduceSum) and an optional input after: one parameter takes both.
def ReduceSum(data, axes=None, keepdims=1, noop_with_empty_axes=0):
    return _reduce("sum", data, axes, keepdims, noop_with_empty_axes)


def ReduceMean(data, axes=None, keepdims=1, noop_with_empty_axes=0):
    return _reduce("mean", data, axes, keepdims, noop_with_empty_axes)


def ReduceMax(data, axes=None, keepdims=1, noop_with_empty_axes=0):
    return _reduce("max", data, axes, keepdims, noop_with_empty_axes)


def ReduceMin(data, axes=None, keepdims=1, noop_with_empty_axes=0):
    return _reduce("min", data, axes, keepdims, noop_with_empty_axes)


def ReduceProd(data, axes=None, keepdims=1, noop_with_empty_axes=0):
    return _reduce("prod", data, axes, keepdims, noop_with_empty_axes)


def ReduceSumSquare(data, axes=None, keepdims=1, noop_with_empty_axes=0):
    return _reduce("sum_square", data, axes, keepdims, noop_with_empty_axes)


def ReduceL1(data, axes=None, keepdims=1, noop_with_empty_axes=0):
    return _reduce("l1", data, axes, keepdims, noop_with_empty_axes)


def ReduceL2(data, axes=None, keepdims=1, noop_with_empty_axes=0):
    return _reduce("l2", data, axes, keepdims, noop_with_empty_axes)


def ReduceLogSum(data, axes=None, keepdims=1, noop_with_empty_axes=0):
    return _reduce("log_sum", data, axes, keepdims, noop_with_empty_axes)


def ReduceLogSumExp(data, axes=None, keepdims=1, noop_with_empty_axes=0):
    return _reduce("log_sum_exp", data, axes, keepdims, noop_with_empty_axes)


# ---------------------------------------------------------------- along one axis

def _one_axis(data, axis):
    """data as a contiguous [outer, n, inner] view around `axis`, and the normalised axis."""
    axis = axis_index(axis, data.ndim)
    outer, inner = math.prod(data.shape[:axis]), math.prod(data.shape[axis + 1:])  # (np.prod: 3 us each)
    return contiguous(data).reshape(outer, data.shape[axis], inner), axis


def _arg(is_max, data, axis, keepdims, select_last_index):
    x, axis = _one_axis(data, axis)
    y = np.empty((x.shape[0], x.shape[2]), np.int64)
    _core.arg_reduce(is_max, bool(select_last_index), x, y)
    shape = list(data.shape)
    if keepdims:
        shape[axis] = 1
    else:
        del shape[axis]
    return y.reshape(shape)


def ArgMax(data, axis=0, keepdims=1, select_last_index=0):
    return _arg(True, data, axis, keepdims, select_last_index)


def ArgMin(data, axis=0, keepdims=1, select_last_index=0):
    return _arg(False, data, axis, keepdims, select_last_index)


def _softmax(op, x, axis, opset):
    if opset < 13:  # opsets 1-11: x is the 2-D [prod(shape[:axis]), prod(shape[axis:])] matrix, rows normalized
        axis = axis_index(1 if axis is None else axis, x.ndim)
        v = contiguous(x).reshape(math.prod(x.shape[:axis]), -1, 1)
    else:
        v, _ = _one_axis(x, -1 if axis is None else axis)
    y = np.empty(v.shape, x.dtype)
    _core.softmax(op, v, y)
    return y.reshape(x.shape)


def Softmax(input, axis=None, _opset=13): return _softmax("softmax", input, axis, _opset)
def LogSoftmax(input, axis=None, _opset=13): return _softmax("log_softmax", input, axis, _opset)
def Hardmax(input, axis=None, _opset=13): return _softmax("hardmax", input, axis, _opset)


def CumSum(x, axis, exclusive=0, reverse=0):
    v, _ = _one_axis(x, as_ints(axis)[0])
    y = np.empty(v.shape, x.dtype)
    _core.cumsum(v, y, bool(exclusive), bool(reverse))
    return y.reshape(x.shape)


def CumProd(x, axis, exclusive=0, reverse=0):
    axis = axis_index(as_ints(axis)[0], x.ndim)
    v = np.flip(x, axis) if reverse else x
    if exclusive:  # shift by one along the axis, 1 first
        ones = np.ones(v.shape[:axis] + (1,) + v.shape[axis + 1:], x.dtype)
        v = np.concatenate([ones, np.take(v, range(v.shape[axis] - 1), axis=axis)], axis=axis)
    y = np.cumprod(v, axis=axis, dtype=x.dtype)  # a rare op: numpy
    return contiguous(np.flip(y, axis) if reverse else y)


def TopK(X, K=None, axis=-1, largest=1, sorted=1, k=None):
    k = as_ints(K)[0] if K is not None else k  # k is an attribute before opset 10
    v, axis = _one_axis(X, axis)
    if not 0 <= k <= v.shape[1]:
        raise ValueError(f"TopK: K = {k} is outside [0, {v.shape[1]}] for axis {axis} of shape {list(X.shape)}")
    values = np.empty((v.shape[0], k, v.shape[2]), X.dtype)
    indices = np.empty((v.shape[0], k, v.shape[2]), np.int64)
    _core.topk(v, k, bool(largest), values, indices)  # always sorted: a valid answer for sorted=0 too
    shape = list(X.shape)
    shape[axis] = k
    return values.reshape(shape), indices.reshape(shape)
