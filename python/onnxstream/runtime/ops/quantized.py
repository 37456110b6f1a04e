"""Quantized ONNX ops as onnxruntime's quantization tools write them: QuantizeLinear / DequantizeLinear (per tensor,
per axis, blocked), DynamicQuantizeLinear, MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv.

Integer products are exact and run on the float32 GEMM: 8-bit values minus their zero points are integers of at
most 9 bits, and a float32 sum of integer products is exact while every partial sum stays below 2^24, so K is cut
into chunks short enough for that bound (usually one chunk) and the chunks' sums are added in int32.
Requantization follows onnxruntime's arithmetic: the float32 multiplier (x_scale * w_scale) / y_scale, then round
half to even, add the zero point, saturate."""
from __future__ import annotations

import numpy as np

from ... import _core
from .common import axis_index, onnx_dtype
from .conv import _ints, _spatial, _window


# ---------------------------------------------------------------- quantization parameters

def _param(p: np.ndarray, x: np.ndarray, axis: int, block_size: int) -> np.ndarray:
    """A scale or zero point broadcastable against x: one value, one per index of `axis`, or (block_size > 0) one
    per block of block_size along `axis` (same rank as x)."""
    p = np.asarray(p)
    if p.ndim == 0 or (p.size == 1 and block_size == 0):
        return p.reshape(())
    axis = axis_index(axis, x.ndim)
    if block_size:
        if p.ndim != x.ndim:
            raise ValueError(f"blocked quantization needs a parameter of rank {x.ndim}, got shape {p.shape}")
        return np.repeat(p, block_size, axis=axis)[(slice(None),) * axis + (slice(0, x.shape[axis]),)]
    if p.ndim != 1 or p.shape[0] != x.shape[axis]:
        raise ValueError(f"per-axis parameter of shape {p.shape} does not fit axis {axis} of shape {x.shape}")
    return p.reshape([-1 if i == axis else 1 for i in range(x.ndim)])


def _saturate(v: np.ndarray, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(v, info.min, info.max).astype(dtype)


def _quantize(x: np.ndarray, scale, zero_point, dtype) -> np.ndarray:
    """saturate(round_half_even(x / scale) + zero_point) in float32, as onnxruntime's MlasQuantizeLinear."""
    q = np.rint(x.astype(np.float32) / np.asarray(scale, np.float32))
    return _saturate(q + np.asarray(zero_point, np.float32), dtype)


def _requantize(acc: np.ndarray, multiplier, zero_point, dtype) -> np.ndarray:
    """int32 sums -> saturate(round_half_even(acc * multiplier) + zero_point) (onnxruntime's requantization)."""
    return _saturate(np.rint(acc.astype(np.float32) * np.asarray(multiplier, np.float32)) +
                     np.asarray(zero_point, np.float32), dtype)


def _zero_point(zp, like) -> np.ndarray:
    return np.zeros((), like) if zp is None else np.asarray(zp)


def _int_dtype(zp, output_dtype: int):
    if zp is not None:
        dtype = np.asarray(zp).dtype
    else:
        dtype = onnx_dtype(output_dtype) if output_dtype else np.dtype(np.uint8)
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        raise NotImplementedError(f"quantization to {dtype} is not supported (int8, uint8, int16, uint16 are)")
    return dtype


# ---------------------------------------------------------------- ONNX ops

def QuantizeLinear(x, y_scale, y_zero_point=None, axis=1, block_size=0, output_dtype=0, saturate=1, precision=0):
    dtype = _int_dtype(y_zero_point, output_dtype)
    zp = _zero_point(y_zero_point, dtype)
    return _quantize(x, _param(y_scale, x, axis, block_size), _param(zp, x, axis, block_size), dtype)


def DequantizeLinear(x, x_scale, x_zero_point=None, axis=1, block_size=0, output_dtype=0):
    """(x - zero_point) * scale, in the scale's float type (float32, or float16 scales)."""
    scale = _param(x_scale, x, axis, block_size)
    zp = _param(_zero_point(x_zero_point, x.dtype), x, axis, block_size)
    out = onnx_dtype(output_dtype) if output_dtype else scale.dtype
    return ((x.astype(np.int32) - zp.astype(np.int32)).astype(scale.dtype) * scale).astype(out)


def DynamicQuantizeLinear(x):
    """uint8 with scale and zero point from x's range (widened to hold 0), as onnxruntime computes them."""
    x = x.astype(np.float32, copy=False)
    lo = min(float(x.min(initial=0.0)), 0.0)
    hi = max(float(x.max(initial=0.0)), 0.0)
    scale = np.float32(1.0) if hi == lo else (np.float32(hi) - np.float32(lo)) / np.float32(255)
    zp = np.uint8(np.rint(np.clip(np.float32(0) - np.float32(lo) / scale, 0, 255)))
    return _quantize(x, scale, zp, np.uint8), np.array(scale, np.float32), np.array(zp, np.uint8)


EXACT_SUM = float(1 << 24)  # float32 holds every integer up to this exactly


def _exact_matmul(a: np.ndarray, a_zp: np.ndarray, b: np.ndarray, b_zp: np.ndarray) -> np.ndarray:
    """[B, M, K] 8-bit minus a_zp [M] @ [B, K, N] 8-bit minus b_zp [B, N] -> int32 [B, M, N], exact."""
    af = a.astype(np.float32) - a_zp.astype(np.float32)[:, None]          # integers in [-255, 255]
    bf = b.astype(np.float32) - b_zp.astype(np.float32)[:, None, :]
    K = a.shape[2]
    bound = float(np.abs(af).max(initial=0)) * float(np.abs(bf).max(initial=0))  # largest |product|
    chunk = K if bound * K < EXACT_SUM else max(1, int(EXACT_SUM // bound) - 1)
    y = np.zeros(a.shape[:2] + (b.shape[2],), np.int32)
    part = np.empty(y.shape, np.float32)
    for k0 in range(0, K, chunk):
        _core.matmul(af[:, :, k0:k0 + chunk], bf[:, k0:k0 + chunk], None, part)
        y += part.astype(np.int32)
    return y


def _matmul_integer(A, B, a_zp, b_zp) -> np.ndarray:
    """numpy.matmul of 8-bit tensors minus their zero points, in int32. a_zp: one value or one per row of A;
    b_zp: one value, one per column of B, or per batch and column ([..., 1, N])."""
    a = A[None, :] if A.ndim == 1 else A
    b = B[:, None] if B.ndim == 1 else B
    (M, K), N = a.shape[-2:], b.shape[-1]
    if b.shape[-2] != K:
        raise ValueError(f"MatMulInteger shapes {A.shape} and {B.shape} do not line up")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    nb = int(np.prod(batch, dtype=np.int64))
    a3 = np.broadcast_to(a, batch + (M, K)).reshape(nb, M, K)
    b3 = np.broadcast_to(b, batch + (K, N)).reshape(nb, K, N)
    a_zp = np.asarray(0 if a_zp is None else a_zp).astype(np.int32)
    b_zp = np.asarray(0 if b_zp is None else b_zp).astype(np.int32)
    az = np.broadcast_to(a_zp.reshape(-1) if a_zp.size > 1 else a_zp.reshape(()), (M,))
    if b_zp.ndim >= 2:  # [..., 1, N]: per batch and column
        b_zp = b_zp.reshape(b_zp.shape[:-2] + (N,))
    bz = np.broadcast_to(b_zp if b_zp.size > 1 else b_zp.reshape(()), batch + (N,)).reshape(nb, N)
    y = _exact_matmul(a3, az, b3, bz).reshape(batch + (M, N))
    if A.ndim == 1:
        y = y[..., 0, :]
    if B.ndim == 1:
        y = y[..., 0]
    return y


def MatMulInteger(A, B, a_zero_point=None, b_zero_point=None):
    return _matmul_integer(A, B, a_zero_point, b_zero_point)


def QLinearMatMul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    acc = _matmul_integer(a, b, a_zero_point, b_zero_point)
    f32 = lambda v: np.asarray(v).astype(np.float32)  # noqa: E731  (float16 scales: multiplier in float32)
    multiplier = f32(a_scale) * f32(b_scale).reshape(-1) / f32(y_scale)
    return _requantize(acc, multiplier if multiplier.size > 1 else multiplier.reshape(()), y_zero_point,
                       np.asarray(y_zero_point).dtype)


def _conv_integer(x, w, x_zp, w_zp, auto_pad, dilations, group, kernel_shape, pads, strides) -> np.ndarray:
    """Conv of 8-bit x and w minus their zero points, in int32: columns of x (padded with its zero point, which
    contributes nothing) times w per group on the integer GEMM."""
    n = _spatial(x, "ConvInteger")
    kernel = list(w.shape[2:]) if not kernel_shape else [int(k) for k in kernel_shape]
    strides, dilations = _ints(strides, n, 1, "strides"), _ints(dilations, n, 1, "dilations")
    begin, end, out = _window(auto_pad, x.shape[2:], kernel, strides, dilations, pads)
    x_zp = int(np.asarray(0 if x_zp is None else x_zp).reshape(-1)[0])
    if min(begin + end) < 0:
        raise ValueError("ConvInteger: negative pads are not supported")
    xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(begin, end)), constant_values=x_zp)
    N, C, M = x.shape[0], x.shape[1], w.shape[0]
    if C % group or M % group or w.shape[1] != C // group:
        raise ValueError(f"ConvInteger: weight {w.shape} does not fit input {x.shape} with group {group}")
    taps = []  # [N, C, *out] per kernel offset
    for offset in np.ndindex(*kernel):
        index = tuple(slice(o * d, o * d + (size - 1) * s + 1, s)
                      for o, d, s, size in zip(offset, dilations, strides, out))
        taps.append(xp[(slice(None), slice(None)) + index])
    P = int(np.prod(out, dtype=np.int64))
    cols = np.stack(taps, axis=2).reshape(N, group, (C // group) * len(taps), P)  # [N, g, K, P]
    w_zp = np.asarray(0 if w_zp is None else w_zp).astype(np.int32).reshape(-1)
    w_zp = np.broadcast_to(w_zp, (M,))
    y = np.empty((N, M, P), np.int32)
    Mg, K = M // group, cols.shape[2]
    for g in range(group):
        wg = np.broadcast_to(w[g * Mg:(g + 1) * Mg].reshape(1, Mg, K), (N, Mg, K))
        y[:, g * Mg:(g + 1) * Mg] = _exact_matmul(wg, w_zp[g * Mg:(g + 1) * Mg], cols[:, g],
                                                  np.broadcast_to(np.array(x_zp, np.int32), (N, P)))
    return y.reshape((N, M) + tuple(out))


def ConvInteger(x, w, x_zero_point=None, w_zero_point=None, auto_pad="NOTSET", dilations=None, group=1,
                kernel_shape=None, pads=None, strides=None):
    return _conv_integer(x, w, x_zero_point, w_zero_point, auto_pad, dilations, group, kernel_shape, pads, strides)


def QLinearConv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None,
                auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    acc = _conv_integer(x, w, x_zero_point, w_zero_point, auto_pad, dilations, group, kernel_shape, pads, strides)
    lead = (1, -1) + (1,) * (acc.ndim - 2)
    if B is not None:
        acc += B.astype(np.int32).reshape(lead)
    f32 = lambda v: np.asarray(v).astype(np.float32)  # noqa: E731
    multiplier = (f32(x_scale).reshape(()) * f32(w_scale).reshape(-1)) / f32(y_scale).reshape(())
    return _requantize(acc, multiplier.reshape(lead) if multiplier.size > 1 else multiplier.reshape(()),
                       y_zero_point, np.asarray(y_zero_point).dtype)
