"""Scatter ops: a copy of the data with elements (ScatterElements, Scatter), slices (ScatterND) or sequence rows
(TensorScatter, a KV-cache write) replaced or combined at given indices. numpy's vectorized fancy indexing and
ufunc.at do the writes, in C, whatever the tensor size."""
from __future__ import annotations

import numpy as np

from .common import axis_index

_REDUCE = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _wrapped(indices, size: int, op: str) -> np.ndarray:
    idx = np.where(indices < 0, indices + size, indices).astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        raise IndexError(f"{op}: index out of range for an axis of length {size}")
    return idx


def _write(out: np.ndarray, key: tuple, updates: np.ndarray, reduction: str, op: str) -> np.ndarray:
    if reduction == "none":
        out[key] = updates  # (duplicate indices: ONNX leaves the result undefined; the last write wins here)
    elif reduction in _REDUCE:
        _REDUCE[reduction].at(out, key, updates)
    else:
        raise ValueError(f"{op}: unknown reduction '{reduction}'")
    return out


def ScatterElements(data, indices, updates, axis=0, reduction="none"):
    axis = axis_index(axis, data.ndim)
    key = list(np.indices(indices.shape, sparse=True))  # each element's own position, broadcastable
    key[axis] = _wrapped(indices, data.shape[axis], "ScatterElements")
    return _write(data.copy(), tuple(key), updates, reduction, "ScatterElements")


def Scatter(data, indices, updates, axis=0):
    """Opsets 9-10: ScatterElements without a reduction."""
    return ScatterElements(data, indices, updates, axis)


def ScatterND(data, indices, updates, reduction="none"):
    k = indices.shape[-1]
    idx = indices.reshape(-1, k)
    key = tuple(_wrapped(idx[:, i], data.shape[i], "ScatterND") for i in range(k))
    rows = updates.reshape((idx.shape[0],) + data.shape[k:])
    return _write(data.copy(), key, rows, reduction, "ScatterND")


def TensorScatter(past_cache, update, write_indices=None, mode="linear", axis=-2):
    """past_cache with update's sequence written along `axis` from write_indices[b] on, per batch row b
    (mode circular: wrapping around the cache length)."""
    if mode not in ("linear", "circular"):
        raise ValueError(f"TensorScatter: unknown mode '{mode}'")
    axis = axis_index(axis, past_cache.ndim)
    if axis == 0:
        raise ValueError("TensorScatter: the sequence axis cannot be the batch axis")
    batch, length, steps = past_cache.shape[0], past_cache.shape[axis], update.shape[axis]
    start = np.zeros(batch, np.int64) if write_indices is None else np.asarray(write_indices, np.int64).reshape(-1)
    pos = start[:, None] + np.arange(steps)[None, :]  # [batch, steps]
    if mode == "circular":
        pos %= length
    elif steps and (pos.min() < 0 or pos.max() >= length):
        raise IndexError(f"TensorScatter: writing {steps} steps from {start.tolist()} overruns a cache of {length}")
    out = past_cache.copy()
    np.moveaxis(out, axis, 1)[np.arange(batch)[:, None], pos] = np.moveaxis(update, axis, 1)
    return out
