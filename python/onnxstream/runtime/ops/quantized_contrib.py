"""onnxruntime's quantized contrib ops (domain com.microsoft) that its quantization tools write in the QOperator
format: QGemm, QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QLinearGlobalAveragePool,
QLinearAveragePool, QLinearConcat. Registered as "com.microsoft.<name>" (ops/__init__.py).

QGemm is exact like QLinearMatMul. The elementwise and pooling ones dequantize, compute in float32 and quantize:
onnxruntime computes some of them in fixed point (QLinearAdd's AVX2 kernel) or through lookup tables (Sigmoid,
Softmax), so an element can differ from it by one quantization step where the float value sits near a rounding
boundary."""
from __future__ import annotations

import numpy as np

from .common import axis_index
from .conv import AveragePool, GlobalAveragePool
from .elementwise import LeakyRelu, Sigmoid
from .quantized import _matmul_integer, _quantize, _requantize
from .reduce import Softmax


def _dq(x, scale, zero_point) -> np.ndarray:
    zp = 0 if zero_point is None else np.asarray(zero_point).astype(np.int32)
    return ((x.astype(np.int32) - zp).astype(np.float32) * np.asarray(scale, np.float32)).astype(np.float32)


def _q(v, scale, zero_point, like) -> np.ndarray:
    dtype = np.asarray(zero_point).dtype if zero_point is not None else like.dtype
    return _quantize(v, scale, 0 if zero_point is None else zero_point, dtype)


def QGemm(A, a_scale, a_zero_point, B, b_scale, b_zero_point, C=None, y_scale=None, y_zero_point=None, alpha=1.0,
          transA=0, transB=0):
    """(alpha * a_scale * b_scale / y_scale) * ((A - a_zp) @ (B - b_zp) + C), requantized; float without y_scale."""
    a = A.T if transA else A
    b = B.T if transB else B
    acc = _matmul_integer(a, b, a_zero_point, b_zero_point)
    if C is not None:
        acc = acc + C.astype(np.int32)
    scale = np.float32(alpha) * np.asarray(a_scale, np.float32).reshape(()) * np.asarray(b_scale, np.float32)
    if y_scale is None:
        return (acc.astype(np.float32) * scale).astype(np.float32)
    scale = scale / np.asarray(y_scale, np.float32).reshape(())
    return _requantize(acc, scale, y_zero_point, np.asarray(y_zero_point).dtype)


def QLinearAdd(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point):
    return _q(_dq(A, A_scale, A_zero_point) + _dq(B, B_scale, B_zero_point), C_scale, C_zero_point, A)


def QLinearMul(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point):
    return _q(_dq(A, A_scale, A_zero_point) * _dq(B, B_scale, B_zero_point), C_scale, C_zero_point, A)


def QLinearSigmoid(X, X_scale, X_zero_point, Y_scale, Y_zero_point):
    return _q(Sigmoid(_dq(X, X_scale, X_zero_point)), Y_scale, Y_zero_point, X)


def QLinearLeakyRelu(X, X_scale, X_zero_point, Y_scale, Y_zero_point, alpha=0.01):
    return _q(LeakyRelu(_dq(X, X_scale, X_zero_point), alpha), Y_scale, Y_zero_point, X)


def QLinearSoftmax(X, X_scale, x_zero_point, y_scale, y_zero_point, axis=-1, opset=13):
    x = _dq(X, X_scale, x_zero_point)
    if opset < 13:  # the older Softmax: flattened to 2-D at axis
        axis = axis_index(axis, x.ndim)
        y = Softmax(x.reshape(int(np.prod(x.shape[:axis])), -1), axis=-1).reshape(x.shape)
    else:
        y = Softmax(x, axis=axis)
    return _q(y, y_scale, y_zero_point, X)


def QLinearGlobalAveragePool(X, x_scale, x_zero_point, y_scale, y_zero_point, channels_last=0):
    x = _dq(X, x_scale, x_zero_point)
    if channels_last:
        return _q(x.mean(axis=tuple(range(1, x.ndim - 1)), keepdims=True), y_scale, y_zero_point, X)
    return _q(GlobalAveragePool(x), y_scale, y_zero_point, X)


def QLinearAveragePool(X, x_scale, x_zero_point, y_scale, y_zero_point, auto_pad="NOTSET", ceil_mode=0,
                       channels_last=0, count_include_pad=0, kernel_shape=None, pads=None, strides=None):
    if channels_last:
        raise NotImplementedError("QLinearAveragePool with channels_last is not supported")
    y = AveragePool(_dq(X, x_scale, x_zero_point), auto_pad=auto_pad, ceil_mode=ceil_mode,
                    count_include_pad=count_include_pad, kernel_shape=kernel_shape, pads=pads, strides=strides)
    return _q(y, y_scale, y_zero_point, X)


def QLinearConcat(Y_scale, Y_zero_point, *inputs, axis):
    """inputs: (tensor, scale, zero point) triples."""
    parts = [_dq(inputs[i], inputs[i + 1], inputs[i + 2]) for i in range(0, len(inputs), 3)]
    return _q(np.concatenate(parts, axis=axis_index(axis, parts[0].ndim)), Y_scale, Y_zero_point, inputs[0])
