"""Helpers every op module uses: output allocation, broadcasting, ONNX dtype codes, axis handling."""
from __future__ import annotations

import math

import numpy as np

from ... import _core

# ONNX TensorProto.DataType -> numpy dtype (the types the runtime computes with).
ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
               9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}


def onnx_dtype(code: int) -> np.dtype:
    if code not in ONNX_DTYPES:
        raise NotImplementedError(f"ONNX data type {code} is not supported")
    return np.dtype(ONNX_DTYPES[code])


def contiguous(a, dtype=None) -> np.ndarray:
    """a as a C-contiguous array, keeping its rank (np.ascontiguousarray turns 0-d arrays into 1-d ones)."""
    a = np.asarray(a, dtype=dtype)
    return a if a.flags.c_contiguous else a.copy(order="C")


def broadcast_to(a: np.ndarray, shape) -> np.ndarray:
    """np.broadcast_to, skipped when a already has the shape (numpy 2's costs 8 us, a small op's whole kernel)."""
    shape = tuple(shape)
    return a if a.shape == shape else np.broadcast_to(a, shape)


def broadcast_shapes(*shapes) -> tuple:
    """np.broadcast_shapes, skipped when the shapes are equal."""
    first = tuple(shapes[0])
    return first if all(tuple(s) == first for s in shapes[1:]) else np.broadcast_shapes(*shapes)


def axis_index(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} is out of range for a tensor of rank {rank}")
    return axis % rank if rank else 0


def output(shape, dtype, out: np.ndarray | None) -> np.ndarray:
    """out (an input the executor found dead after this op, see Session._donor) when it fits, else a new array."""
    if out is not None and out.shape == tuple(shape) and out.dtype == dtype and out.flags.c_contiguous:
        return out
    return np.empty(shape, dtype)


_UNARY_CODES: dict[str, int] = {}


def unary_code(op: str) -> int:
    """The C++ core's code for a unary op name (resolved once per name; a call then compares no strings)."""
    code = _UNARY_CODES.get(op)
    if code is None:
        code = _UNARY_CODES[op] = _core.unary_code(op)
    return code


def unary(op: str, x: np.ndarray, alpha: float = 0.0, beta: float = 0.0, out=None) -> np.ndarray:
    y = output(x.shape, x.dtype, out)
    _core.unary(unary_code(op), x, y, float(alpha), float(beta))
    return y


_BINARY_CODES: dict[str, int] = {}


def binary(op: str, a: np.ndarray, b: np.ndarray, out_dtype=None, out=None) -> np.ndarray:
    """a op b, broadcast; out_dtype None (a's dtype) or np.bool_ (comparisons, logic)."""
    code = _BINARY_CODES.get(op)
    if code is None:
        code = _BINARY_CODES[op] = _core.binary_code(op)
    if out_dtype is not None and np.dtype(out_dtype) not in (a.dtype, np.bool_):
        raise ValueError(f"binary op '{op}': results are {a.dtype} or bool, not {np.dtype(out_dtype)}")
    return _core.binary(code, a, b, out, out_dtype is not None and np.dtype(out_dtype) == np.bool_)


def cast(x: np.ndarray, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    y = np.empty(x.shape, dtype)
    _core.cast(x, y)
    return y


def as_ints(v) -> list[int]:
    """An ONNX shape/axes/index input (int64 tensor) or attribute as a Python list."""
    if v is None:
        return []
    a = np.asarray(v).reshape(-1)
    return a.tolist() if a.dtype.kind in "iu" else [int(i) for i in a]  # (tolist: Python ints, at C speed)


_VIEW_PLANS: dict = {}  # (shape, axes) -> (transpose or None, [outer, n, inner], kept shape): resolved once


def middle_axes_view(x: np.ndarray, axes: list[int]):
    """x viewed as [outer, n, inner] with `axes` (sorted, normalised) gathered in the middle.

    Returns (view, kept_shape) where kept_shape is x's shape with the reduced axes removed. Axes that are already
    adjacent need no copy; otherwise the tensor is transposed into a contiguous copy first.
    """
    key = (x.shape, tuple(axes))
    plan = _VIEW_PLANS.get(key)
    if plan is None:
        rank = x.ndim
        axes = sorted(set(axes))
        rest = [i for i in range(rank) if i not in axes]
        first = axes[0] if axes else rank
        if axes == list(range(first, first + len(axes))):
            perm, shape, n_outer = None, list(x.shape), first
        else:
            perm = rest + axes
            shape, n_outer = [x.shape[i] for i in perm], len(rest)
        view = (math.prod(shape[:n_outer]), math.prod(shape[n_outer:n_outer + len(axes)]),
                math.prod(shape[n_outer + len(axes):]))  # (np.prod costs more than a small reduction's kernel)
        kept = tuple(d for i, d in enumerate(shape) if not n_outer <= i < n_outer + len(axes))
        if len(_VIEW_PLANS) > 4096:
            _VIEW_PLANS.clear()
        plan = _VIEW_PLANS[key] = (perm, view, kept)
    perm, view, kept = plan
    return contiguous(x if perm is None else x.transpose(perm)).reshape(view), list(kept)
