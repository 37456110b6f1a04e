"""ONNX sequences (what the TorchScript exporter writes for a list built in a loop): a sequence is a Python list of
arrays, never changed in place (each op returns a new list)."""
from __future__ import annotations

import numpy as np

from .common import axis_index, contiguous, onnx_dtype
from .shape import Split


def SequenceEmpty(dtype=1):
    onnx_dtype(dtype)  # (an unsupported element type is an error here, not later)
    return []


def SequenceConstruct(*inputs):
    return list(inputs)


def _position(seq: list, position, insert: bool = False) -> int:
    n = len(seq)
    p = int(np.asarray(position).reshape(-1)[0])
    if not (-n <= p <= n if insert else -n <= p < n):
        raise IndexError(f"sequence position {p} is out of range for a sequence of {n}")
    return p + n if p < 0 else p


def SequenceInsert(input_sequence, tensor, position=None):
    seq = list(input_sequence)
    seq.insert(len(seq) if position is None else _position(seq, position, insert=True), tensor)
    return seq


def SequenceAt(input_sequence, position):
    return input_sequence[_position(input_sequence, position)]


def SequenceErase(input_sequence, position=None):
    seq = list(input_sequence)
    del seq[len(seq) - 1 if position is None else _position(seq, position)]
    return seq


def SequenceLength(input_sequence):
    return np.array(len(input_sequence), np.int64)


def ConcatFromSequence(input_sequence, axis, new_axis=0):
    if not input_sequence:
        raise ValueError("ConcatFromSequence of an empty sequence")
    rank = input_sequence[0].ndim
    if new_axis:
        return np.stack(input_sequence, axis=axis_index(axis, rank + 1))
    return np.concatenate(input_sequence, axis=axis_index(axis, rank))


def SplitToSequence(input, split=None, axis=0, keepdims=1):
    axis = axis_index(axis, input.ndim)
    if split is None:  # pieces of one element along the axis, which keepdims=0 removes
        pieces = [contiguous(np.take(input, i, axis=axis)) for i in range(input.shape[axis])]
        return [p.reshape(p.shape[:axis] + (1,) + p.shape[axis:]) for p in pieces] if keepdims else pieces
    sizes = np.asarray(split).reshape(-1)
    if np.asarray(split).ndim == 0:  # one size: equal pieces, the last one shorter
        n = int(sizes[0])
        sizes = [min(n, input.shape[axis] - i) for i in range(0, input.shape[axis], n)]
    return list(Split(input, np.array(sizes, np.int64), axis=axis))
