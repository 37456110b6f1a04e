"""Convolution and pooling ops. The C++ kernels work on 3 spatial axes: 1-D and 2-D problems get leading unit axes
here, and all window arithmetic (auto_pad, ceil_mode, output sizes) is resolved here into explicit pads."""
from __future__ import annotations

import math

import numpy as np

from ... import _core
from ..panels import PACKED
from .common import cast, contiguous


def _float(x: np.ndarray, what: str) -> np.ndarray:
    if x.dtype == np.float32:
        return x
    if x.dtype == np.float16:
        return cast(x, np.float32)  # small tensors only (biases, activations stored as float16)
    raise ValueError(f"{what} must be float32, got {x.dtype}")


def _spatial(x: np.ndarray, op: str) -> int:
    n = x.ndim - 2
    if not 1 <= n <= 3:
        raise ValueError(f"{op} supports 1 to 3 spatial axes, got an input of shape {x.shape}")
    return n


def _to5d(x: np.ndarray) -> np.ndarray:
    """[N, C, *spatial] -> [N, C, D, H, W] with leading unit spatial axes."""
    return x.reshape(x.shape[:2] + (1,) * (5 - x.ndim) + x.shape[2:])


def _three(values, fill: int) -> list[int]:
    values = [int(v) for v in values]
    return [fill] * (3 - len(values)) + values


def _ints(value, n: int, default: int, name: str) -> list[int]:
    if value is None or len(value) == 0:
        return [default] * n
    value = [int(v) for v in value]
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} values, expected {n}")
    return value


def _pads(pads, n: int) -> tuple[list[int], list[int]]:
    pads = _ints(pads, 2 * n, 0, "pads")
    return pads[:n], pads[n:]


def _same_pads(auto_pad: str, inp, out, kernel, strides, dilations):
    """Pads that make the output ceil(input / stride) long; SAME_UPPER puts the odd one at the end."""
    begin, end = [], []
    for i, o, k, s, d in zip(inp, out, kernel, strides, dilations):
        total = max(0, (o - 1) * s + (k - 1) * d + 1 - i)
        small = total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else total - small)
        end.append(total - small if auto_pad == "SAME_UPPER" else small)
    return begin, end


def _window(auto_pad: str, inp, kernel, strides, dilations, pads, ceil_mode: bool = False):
    """(pads_begin, pads_end, output sizes) for a conv or pool window."""
    n = len(inp)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-i // s) for i, s in zip(inp, strides)]
        begin, end = _same_pads(auto_pad, inp, out, kernel, strides, dilations)
        return begin, end, out
    if auto_pad == "VALID":
        begin, end = [0] * n, [0] * n
    elif auto_pad in ("NOTSET", "", None):
        begin, end = _pads(pads, n)
    else:
        raise ValueError(f"auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got {auto_pad!r}")
    out = []
    for i, k, s, d, b, e in zip(inp, kernel, strides, dilations, begin, end):
        span = i + b + e - ((k - 1) * d + 1)
        if span < 0:
            raise ValueError(f"window of kernel {k} (dilation {d}) does not fit an input of {i} with pads {b}, {e}")
        if ceil_mode:
            o = -(-span // s) + 1
            if (o - 1) * s >= i + b:  # the last window must start inside the input or its begin padding
                o -= 1
        else:
            o = span // s + 1
        out.append(o)
    return begin, end, out


def _kernel(kernel_shape, W_or_none, n: int) -> list[int]:
    if kernel_shape is not None and len(kernel_shape):
        return _ints(kernel_shape, n, 1, "kernel_shape")
    if W_or_none is None:
        raise ValueError("kernel_shape is required")
    return [int(k) for k in W_or_none.shape[2:]]


# ---------------------------------------------------------------- convolution

def Conv(X, W, B=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    n = _spatial(X, "Conv")
    X = _float(X, "Conv input")
    if W.ndim != X.ndim:
        raise ValueError(f"Conv weight of shape {W.shape} does not match input of shape {X.shape}")
    if W.dtype not in (np.float32, np.float16) and not (isinstance(W, PACKED) and W.dtype == np.int8):
        raise ValueError(f"Conv weight must be float32 or float16, got {W.dtype}")
    kernel = _kernel(kernel_shape, W, n)
    if list(W.shape[2:]) != kernel:
        raise ValueError(f"kernel_shape {kernel} differs from the weight's {list(W.shape[2:])}")
    strides, dilations = _ints(strides, n, 1, "strides"), _ints(dilations, n, 1, "dilations")
    begin, end, out = _window(auto_pad, X.shape[2:], kernel, strides, dilations, pads)
    if X.shape[1] != W.shape[1] * group:
        raise ValueError(f"Conv input has {X.shape[1]} channels, weight expects {W.shape[1]} x group {group}")
    y = np.empty((X.shape[0], W.shape[0], *out), np.float32)
    bias = None if B is None else contiguous(_float(B, "Conv bias")).reshape(-1)
    window = (_three(kernel, 1), _three(strides, 1), _three(begin, 0), _three(end, 0), _three(dilations, 1))
    if isinstance(W, PACKED):  # a constant weight packed at convert time, maybe in column blocks
        y5 = _to5d(y)
        for n0, n1, panels in W.blocks():  # columns per group; only single-group weights come in several blocks
            m0, m1 = n0 * group, n1 * group
            _core.conv_packed(_to5d(X), panels, m1 - m0, None if bias is None else bias[m0:m1], *window, int(group),
                              y5[:, m0:m1])
            del panels  # before the next block is read
    else:
        _core.conv(_to5d(X), _to5d(contiguous(W)), bias, *window, int(group), _to5d(y))
    return y


def ConvTranspose(X, W, B=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, output_padding=None,
                  output_shape=None, pads=None, strides=None):
    n = _spatial(X, "ConvTranspose")
    X = contiguous(_float(X, "ConvTranspose input"))
    if W.ndim != X.ndim or W.shape[0] != X.shape[1]:
        raise ValueError(f"ConvTranspose weight of shape {W.shape} does not match input of shape {X.shape}")
    kernel = _kernel(kernel_shape, W, n)
    strides, dilations = _ints(strides, n, 1, "strides"), _ints(dilations, n, 1, "dilations")
    out_pad = _ints(output_padding, n, 0, "output_padding")
    inp = X.shape[2:]
    natural = [s * (i - 1) + op + (k - 1) * d + 1 for i, s, op, k, d in zip(inp, strides, out_pad, kernel, dilations)]
    if output_shape is not None and len(output_shape) or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # The pads follow from the requested size; SAME_UPPER puts the odd one at the end.
        if output_shape is not None and len(output_shape):
            out = [int(v) for v in output_shape][-n:]
        else:
            out = [i * s for i, s in zip(inp, strides)]
        total = [nat - o for nat, o in zip(natural, out)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
    else:
        begin, end = _pads(None if auto_pad == "VALID" else pads, n)
        out = [nat - b - e for nat, b, e in zip(natural, begin, end)]
    if min(out) < 0:
        raise ValueError(f"ConvTranspose output size {out} is negative")
    M = W.shape[1] * group
    y = np.empty((X.shape[0], M, *out), np.float32)
    bias = None if B is None else contiguous(_float(B, "ConvTranspose bias")).reshape(-1)
    _core.conv_transpose(_to5d(X), _to5d(contiguous(W)), bias, _three(kernel, 1), _three(strides, 1),
                         _three(begin, 0), _three(dilations, 1), int(group), _to5d(y))
    return y


# ---------------------------------------------------------------- pooling

def _pool(op: str, X, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides, count_include_pad=0, p=2,
          want_indices=False):
    n = _spatial(X, op)
    X = _float(X, f"{op} input")
    kernel = _kernel(kernel_shape, None, n)
    strides, dilations = _ints(strides, n, 1, "strides"), _ints(dilations, n, 1, "dilations")
    begin, end, out = _window(auto_pad, X.shape[2:], kernel, strides, dilations, pads, bool(ceil_mode))
    y = np.empty(X.shape[:2] + tuple(out), np.float32)
    indices = np.empty(y.shape, np.int64) if want_indices else None
    kind = {"MaxPool": "max", "AveragePool": "avg", "LpPool": "lp"}[op]
    _core.pool(kind, _to5d(X), _three(kernel, 1), _three(strides, 1), _three(begin, 0), _three(end, 0),
               _three(dilations, 1), bool(count_include_pad), float(p), _to5d(y),
               None if indices is None else _to5d(indices))
    return y, indices


def MaxPool(X, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None, storage_order=0,
            strides=None):
    if X.dtype in (np.uint8, np.int8):  # QOperator models pool 8-bit values: exact in float32
        y, indices = MaxPool(X.astype(np.float32), auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order,
                             strides)
        return y.astype(X.dtype), indices
    y, indices = _pool("MaxPool", X, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides, want_indices=True)
    if storage_order == 1:
        # Column-major index within each image plane, as ONNX defines it: h + w*H (+ d*H*W for 3-D).
        spatial = X.shape[2:]
        plane = math.prod(spatial)
        nc, rest = np.divmod(indices, plane)
        coords = np.unravel_index(rest, spatial)
        if len(spatial) == 1:
            flat = coords[0]
        elif len(spatial) == 2:
            flat = coords[0] + coords[1] * spatial[0]
        else:
            flat = coords[1] + coords[2] * spatial[1] + coords[0] * spatial[1] * spatial[2]
        indices = nc * plane + flat
    return y, indices


def AveragePool(X, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None, kernel_shape=None,
                pads=None, strides=None):
    return _pool("AveragePool", X, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides, count_include_pad)[0]


def LpPool(X, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, p=2, pads=None, strides=None):
    return _pool("LpPool", X, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides, 1, p)[0]


def _global(op: str, X, p=2):
    return _pool(op, X, "VALID", 0, None, X.shape[2:], None, None, 0, p)[0]


def GlobalAveragePool(X): return _global("AveragePool", X)
def GlobalMaxPool(X): return _global("MaxPool", X)
def GlobalLpPool(X, p=2): return _global("LpPool", X, p)
