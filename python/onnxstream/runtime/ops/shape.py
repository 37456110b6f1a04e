"""Shape and data-movement ONNX ops: views, copies and index arithmetic on shapes; no tensor math."""
from __future__ import annotations

import functools
import math

import numpy as np

from .common import as_ints, axis_index, contiguous, onnx_dtype


def Shape(data, start=0, end=None):
    rank = data.ndim
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = rank if end is None else min(max(end + rank if end < 0 else end, 0), rank)
    return np.array(data.shape[start:end], np.int64)


def Size(data):
    return np.array(data.size, np.int64)


def Reshape(data, shape, allowzero=0):
    dims = as_ints(shape)
    if not allowzero:
        dims = [data.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return data.reshape(dims)


def Flatten(input, axis=1):
    axis = axis + input.ndim if axis < 0 else axis  # in [-r, r]: -1 leaves the last axis alone
    if not 0 <= axis <= input.ndim:
        raise ValueError(f"Flatten: axis out of range for a tensor of rank {input.ndim}")
    return input.reshape(math.prod(input.shape[:axis]), math.prod(input.shape[axis:]))


def Transpose(data, perm=None):
    perm = list(reversed(range(data.ndim))) if perm is None else perm
    return contiguous(data.transpose(perm))


def Squeeze(data, axes=None):
    if axes is None:
        return data.reshape([d for d in data.shape if d != 1])
    axes = [axis_index(a, data.ndim) for a in as_ints(axes)]
    return data.reshape([d for i, d in enumerate(data.shape) if i not in axes])


def Unsqueeze(data, axes):
    rank = data.ndim + len(as_ints(axes))
    axes = sorted(axis_index(a, rank) for a in as_ints(axes))
    shape = list(data.shape)
    for a in axes:
        shape.insert(a, 1)
    return data.reshape(shape)


def Concat(*inputs, axis):
    return np.concatenate(inputs, axis=axis_index(axis, inputs[0].ndim))


def Split(input, split=None, axis=0, num_outputs=None, _num_results=None):
    axis = axis_index(axis, input.ndim)
    dim = input.shape[axis]
    if split is not None and len(as_ints(split)):
        sizes = as_ints(split)
    else:
        n = num_outputs or _num_results
        chunk = -(-dim // n)
        sizes = [min(chunk, dim - i * chunk) for i in range(n)]
    if sum(sizes) != dim:
        raise ValueError(f"Split sizes {sizes} do not add up to the axis length {dim}")
    bounds = np.cumsum([0] + sizes)
    index = [slice(None)] * input.ndim
    outs = []
    for b, e in zip(bounds[:-1], bounds[1:]):
        index[axis] = slice(int(b), int(e))
        outs.append(contiguous(input[tuple(index)]))
    return tuple(outs)


def Slice(data, starts, ends, axes=None, steps=None):
    return contiguous(data[_slice_index(data.shape, starts, ends, axes, steps)])


def _slice_index(shape, starts, ends, axes, steps) -> tuple:
    starts, ends = as_ints(starts), as_ints(ends)
    axes = as_ints(axes) if axes is not None else list(range(len(starts)))
    steps = as_ints(steps) if steps is not None else [1] * len(starts)
    rank = len(shape)
    index = [slice(None)] * rank
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = axis_index(a, rank)
        dim = shape[a]
        # ONNX clamps like Python slicing, except that huge sentinels (INT64_MAX) must not overflow.
        s = max(min(s, dim), -dim - 1)
        e = max(min(e, dim), -dim - 1)
        if st < 0:
            s = dim - 1 if s >= dim else s
            e = None if e < -dim else e
        index[a] = slice(s, e, st)
    return tuple(index)


def prepare_slice(**attributes):
    """Slice whose index is worked out once per input shape while starts/ends/axes/steps stay the same arrays (the
    constants they nearly always are). Before opset 10 they are attributes: then nothing is left to resolve."""
    if attributes:
        return functools.partial(Slice, **attributes)
    last = [None, None]   # ((starts, ends, axes, steps, shape), index); the arrays are held, so ids stay theirs

    def slice_(data, starts, ends, axes=None, steps=None):
        key = (starts, ends, axes, steps, data.shape)
        k = last[0]
        if k is None or k[4] != data.shape or any(a is not b for a, b in zip(k[:4], key[:4])):
            last[:] = key, _slice_index(data.shape, starts, ends, axes, steps)
        return contiguous(data[last[1]])
    return slice_


Slice.prepare = prepare_slice


def Gather(data, indices, axis=0):
    axis = axis_index(axis, data.ndim)
    if indices.ndim == 0:  # one index (shape arithmetic, a state slot): no array passes over it
        i = int(indices)
        i += data.shape[axis] if i < 0 else 0
        if not 0 <= i < data.shape[axis]:
            raise IndexError(f"Gather index out of range for axis of length {data.shape[axis]}")
        return np.take(data, i, axis=axis)
    idx = np.where(indices < 0, indices + data.shape[axis], indices)
    if idx.size and (idx.min() < 0 or idx.max() >= data.shape[axis]):
        raise IndexError(f"Gather index out of range for axis of length {data.shape[axis]}")
    return np.take(data, idx, axis=axis)


def GatherElements(data, indices, axis=0):
    axis = axis_index(axis, data.ndim)
    idx = np.where(indices < 0, indices + data.shape[axis], indices)
    return np.take_along_axis(data, idx, axis=axis)


def GatherND(data, indices, batch_dims=0):
    batch = data.shape[:batch_dims]
    last = indices.shape[-1]
    out_shape = indices.shape[:-1] + data.shape[batch_dims + last:]
    flat_data = data.reshape((int(np.prod(batch, dtype=np.int64)),) + data.shape[batch_dims:])
    flat_idx = indices.reshape(flat_data.shape[0], -1, last)
    out = [d[tuple(np.moveaxis(i, -1, 0))] for d, i in zip(flat_data, flat_idx)]
    return np.stack(out).reshape(out_shape) if out else np.empty(out_shape, data.dtype)


def Expand(input, shape):
    target = np.broadcast_shapes(input.shape, tuple(as_ints(shape)))
    return contiguous(np.broadcast_to(input, target))


def Tile(input, repeats):
    return np.tile(input, as_ints(repeats))


def Pad(data, pads, constant_value=None, axes=None, mode="constant", value=None):
    if value is not None:  # before opset 11 pads and the value are attributes
        constant_value = np.array(value)
    pads = as_ints(pads)
    axes = [axis_index(a, data.ndim) for a in as_ints(axes)] if axes is not None else list(range(data.ndim))
    n = len(axes)
    widths = [(0, 0)] * data.ndim
    for i, a in enumerate(axes):
        widths[a] = (pads[i], pads[i + n])
    # Negative pads crop.
    crop = tuple(slice(-b if b < 0 else None, e if e < 0 else None) for b, e in widths)
    data = data[crop]
    widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        value = 0 if constant_value is None or np.asarray(constant_value).size == 0 else np.asarray(constant_value).item()
        out = np.full([d + b + e for d, (b, e) in zip(data.shape, widths)], value, data.dtype)
        out[tuple(slice(b, b + d) for d, (b, _) in zip(data.shape, widths))] = data
        return out
    if mode not in ("reflect", "edge", "wrap"):
        raise NotImplementedError(f"Pad mode '{mode}' is not supported")
    # Axis by axis with slices (np.pad's general machinery costs 50 us on a voice model's 600-sample frame); pads
    # wider than the axis repeat the pattern, which np.pad does.
    for a, (b, e) in enumerate(widths):
        dim = data.shape[a]
        if not b and not e:
            continue
        if b >= dim or e >= dim or dim == 0:
            return np.pad(data, widths, mode=mode)
        take = lambda start, stop, step=1: data[(slice(None),) * a + (slice(start, stop, step),)]  # noqa: E731
        if mode == "reflect":
            left, right = take(b, 0, -1), take(dim - 2, dim - 2 - e if e < dim - 1 else None, -1)
        elif mode == "edge":
            left, right = np.repeat(take(0, 1), b, axis=a), np.repeat(take(dim - 1, dim), e, axis=a)
        else:
            left, right = take(dim - b, dim), take(0, e)
        data = np.concatenate([left, data, right], axis=a)
        widths[a] = (0, 0)
    return contiguous(data)


def ConstantOfShape(input, value=None):
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full(as_ints(input), fill[0], dtype=fill.dtype)


def Range(start, limit, delta):
    dtype = np.asarray(start).dtype  # the output has the inputs' type (.item() would widen it to a Python number)
    start, limit, delta = (np.asarray(v).item() for v in (start, limit, delta))
    if np.issubdtype(dtype, np.integer):
        count = max(-((start - limit) // delta), 0)  # ceil((limit - start) / delta), exact for any integers
    else:
        count = max(int(np.ceil((limit - start) / delta)), 0)
    # start + i * delta in float64 (or int64), rounded once to the output type: ONNX's reference does the same.
    return (start + np.arange(count) * delta).astype(dtype)


def Trilu(input, k=None, upper=1):
    k = 0 if k is None else int(np.asarray(k))
    return np.triu(input, k) if upper else np.tril(input, k)


def EyeLike(input, dtype=None, k=0):
    out_dtype = input.dtype if dtype is None else onnx_dtype(dtype)
    return np.eye(input.shape[0], input.shape[1], k=k, dtype=out_dtype)


def DepthToSpace(input, blocksize, mode="DCR"):
    n, c, h, w = input.shape
    b = blocksize
    if mode == "DCR":
        t = input.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = input.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return contiguous(t).reshape(n, c // (b * b), h * b, w * b)


def SpaceToDepth(input, blocksize, mode="DCR"):
    n, c, h, w = input.shape
    b = blocksize
    t = input.reshape(n, c, h // b, b, w // b, b)
    t = t.transpose(0, 3, 5, 1, 2, 4) if mode == "DCR" else t.transpose(0, 1, 3, 5, 2, 4)
    return contiguous(t).reshape(n, c * b * b, h // b, w // b)


def Constant(value=None, value_float=None, value_floats=None, value_int=None, value_ints=None, sparse_value=None,
             value_string=None, value_strings=None):
    if value is not None:
        return np.asarray(value)
    if value_float is not None:
        return np.array(value_float, np.float32)
    if value_floats is not None:
        return np.array(value_floats, np.float32)
    if value_int is not None:
        return np.array(value_int, np.int64)
    if value_ints is not None:
        return np.array(value_ints, np.int64)
    raise NotImplementedError("Constant with a sparse or string value is not supported")
