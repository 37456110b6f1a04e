"""Ops that select, reorder or place elements by index or mask (data-dependent shapes included): Compress, NonZero,
OneHot, ReverseSequence, Unique, CenterCropPad. numpy's vectorized indexing does the work; no arithmetic."""
from __future__ import annotations

import numpy as np

from .common import as_ints, axis_index, contiguous


def Compress(input, condition, axis=None):
    keep = np.asarray(condition, bool).reshape(-1)
    if axis is None:
        return contiguous(input.reshape(-1)[:keep.size][keep[:input.size]])
    axis = axis_index(axis, input.ndim)
    keep = keep[:input.shape[axis]]  # a shorter condition keeps only its length; a longer one is an error
    if np.asarray(condition).size > input.shape[axis]:
        raise ValueError(f"Compress: condition has {np.asarray(condition).size} values for an axis of "
                         f"{input.shape[axis]}")
    return contiguous(np.compress(keep, input, axis=axis))


def NonZero(X):
    return np.array(np.nonzero(X if X.ndim else X.reshape(1)), np.int64)


def OneHot(indices, depth, values, axis=-1):
    depth = int(np.asarray(depth).reshape(-1)[0])
    off, on = np.asarray(values).reshape(-1)[:2]
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)  # negative indices count from the end; out-of-range ones stay off
    rank = idx.ndim + 1
    axis = axis_index(axis, rank)
    classes = np.arange(depth).reshape([depth if i == axis else 1 for i in range(rank)])
    hot = np.expand_dims(idx, axis) == classes
    return np.where(hot, on, off).astype(np.asarray(values).dtype)


def ReverseSequence(input, sequence_lens, batch_axis=1, time_axis=0):
    lens = as_ints(sequence_lens)
    t = np.arange(input.shape[time_axis])
    # Source time index per (batch, time): reversed within the first lens[b] steps, unchanged after.
    src = np.where(t[None, :] < np.array(lens)[:, None], np.array(lens)[:, None] - 1 - t[None, :], t[None, :])
    shape = [1] * input.ndim
    shape[batch_axis], shape[time_axis] = len(lens), input.shape[time_axis]
    order = (batch_axis, time_axis) if batch_axis < time_axis else (time_axis, batch_axis)
    src = src if order == (batch_axis, time_axis) else src.T
    return contiguous(np.take_along_axis(input, np.broadcast_to(src.reshape(shape), input.shape), axis=time_axis))


def Unique(X, axis=None, sorted=1):
    """(unique values, index of each one's first occurrence, inverse indices, counts)."""
    if axis is None:
        flat = X.reshape(-1)
        values, first, inverse, counts = np.unique(flat, return_index=True, return_inverse=True,
                                                   return_counts=True)
    else:
        axis = axis_index(axis, X.ndim)
        values, first, inverse, counts = np.unique(X, return_index=True, return_inverse=True, return_counts=True,
                                                   axis=axis)
    inverse = inverse.reshape(-1)
    if not sorted:  # in order of first occurrence
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        values = np.take(values, order, axis=0 if axis is None else axis)
        first, counts, inverse = first[order], counts[order], rank[inverse]
    as64 = lambda a: np.asarray(a, np.int64)  # noqa: E731
    return contiguous(values), as64(first), as64(inverse), as64(counts)


def CenterCropPad(input_data, shape, axes=None):
    axes = [axis_index(a, input_data.ndim) for a in as_ints(axes)] if axes is not None else list(range(input_data.ndim))
    sizes = as_ints(shape)
    out_shape = list(input_data.shape)
    src = [slice(None)] * input_data.ndim
    dst = [slice(None)] * input_data.ndim
    for a, size in zip(axes, sizes):
        dim = input_data.shape[a]
        out_shape[a] = size
        if size < dim:  # crop, the odd element off the end
            begin = (dim - size) // 2
            src[a] = slice(begin, begin + size)
        elif size > dim:  # pad with zeros, the odd one at the end
            begin = (size - dim) // 2
            dst[a] = slice(begin, begin + dim)
    out = np.zeros(out_shape, input_data.dtype)
    out[tuple(dst)] = input_data[tuple(src)]
    return out
