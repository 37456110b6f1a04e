"""Elementwise ONNX ops: each broadcasts with numpy views and computes in the C++ core."""
from __future__ import annotations

from functools import reduce

import numpy as np

from ... import _core
from .common import binary, broadcast_shapes, broadcast_to, cast, contiguous, onnx_dtype, unary, unary_code


# ---------------------------------------------------------------- arithmetic and comparison

def Add(A, B, _out=None): return binary("add", A, B, out=_out)
def Sub(A, B, _out=None): return binary("sub", A, B, out=_out)
def Mul(A, B, _out=None): return binary("mul", A, B, out=_out)
def Div(A, B, _out=None): return binary("div", A, B, out=_out)
def Mod(A, B, fmod=0): return binary("fmod" if fmod else "mod", A, B)
def Pow(X, Y):
    if X.dtype == np.float32 and Y.size == 1 and float(Y.reshape(-1)[0]) == 2.0:
        return binary("mul", X, X)   # exact, like pow(x, 2), and vectorized (spectrograms, norms)
    return binary("pow", X, cast(Y, X.dtype))
def PRelu(X, slope): return binary("prelu", X, slope)
def Equal(A, B): return binary("equal", A, B, np.bool_)
def Less(A, B): return binary("less", A, B, np.bool_)
def Greater(A, B): return binary("greater", A, B, np.bool_)
def LessOrEqual(A, B): return binary("less_equal", A, B, np.bool_)
def GreaterOrEqual(A, B): return binary("greater_equal", A, B, np.bool_)
def And(A, B): return binary("and", A, B, np.bool_)
def Or(A, B): return binary("or", A, B, np.bool_)
def Xor(A, B): return binary("xor", A, B, np.bool_)
def BitwiseAnd(A, B): return binary("bitwise_and", A, B)
def BitwiseOr(A, B): return binary("bitwise_or", A, B)
def BitwiseXor(A, B): return binary("bitwise_xor", A, B)
def BitShift(X, Y, direction): return binary("shift_left" if direction == "LEFT" else "shift_right", X, Y)


def Max(*data): return reduce(lambda a, b: binary("max", a, b), data)
def Min(*data): return reduce(lambda a, b: binary("min", a, b), data)
def Sum(*data): return reduce(lambda a, b: binary("add", a, b), data)


def Mean(*data):
    total = Sum(*data)
    return binary("div", total, np.array(len(data), total.dtype))


# ---------------------------------------------------------------- unary math and activations

def Relu(X, _out=None): return unary("relu", X, out=_out)
def Sigmoid(X, _out=None): return unary("sigmoid", X, out=_out)
def Tanh(X, _out=None): return unary("tanh", X, out=_out)
def Exp(input, _out=None): return unary("exp", input, out=_out)
def Log(input): return unary("log", input)
def Sqrt(X, _out=None): return unary("sqrt", X, out=_out)
def Sin(input): return unary("sin", input)
def Cos(input): return unary("cos", input)
def Tan(input): return unary("tan", input)
def Asin(input): return unary("asin", input)
def Acos(input): return unary("acos", input)
def Atan(input): return unary("atan", input)
def Sinh(input): return unary("sinh", input)
def Cosh(input): return unary("cosh", input)
def Asinh(input): return unary("asinh", input)
def Acosh(input): return unary("acosh", input)
def Atanh(input): return unary("atanh", input)
def Erf(input, _out=None): return unary("erf", input, out=_out)
def Neg(X, _out=None): return unary("neg", X, out=_out)
def Abs(X): return unary("abs", X)
def Reciprocal(X): return unary("reciprocal", X)
def Floor(X): return unary("floor", X)
def Ceil(X): return unary("ceil", X)
def Round(X): return unary("round", X)
def Sign(input): return unary("sign", input)
def Softplus(X, _out=None): return unary("softplus", X, out=_out)
def Softsign(input): return unary("softsign", input)
def Not(X): return unary("not", X)
def BitwiseNot(X): return unary("bitwise_not", X)
def LeakyRelu(X, alpha=0.01): return unary("leaky_relu", X, alpha)
def Elu(X, alpha=1.0): return unary("elu", X, alpha)
def Celu(X, alpha=1.0): return unary("celu", X, alpha)
def Selu(X, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875): return unary("selu", X, alpha, gamma)
def HardSigmoid(X, alpha=0.2, beta=0.5): return unary("hard_sigmoid", X, alpha, beta)
def HardSwish(X): return unary("hard_swish", X)
def ThresholdedRelu(X, alpha=1.0): return unary("thresholded_relu", X, alpha)
def Mish(X): return unary("mish", X)
def Gelu(X, approximate="none", _out=None): return unary("gelu_tanh" if approximate == "tanh" else "gelu", X, out=_out)


def Swish(X, alpha=1.0):
    """x * sigmoid(alpha * x)."""
    if alpha == 1.0:
        return unary("silu", X)
    return binary("mul", X, unary("sigmoid", binary("mul", X, np.array(alpha, X.dtype))))


def SwiGLU(A, B, alpha=1.0):
    if A.shape != B.shape:
        raise ValueError(f"SwiGLU inputs must have the same shape (no broadcasting), got {A.shape} and {B.shape}")
    return binary("mul", Swish(A, alpha), B)


def Shrink(input, bias=0.0, lambd=0.5):
    x = input
    shifted = np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, 0))  # a rare op: numpy
    return shifted.astype(x.dtype)


def IsNaN(X):
    y = np.empty(X.shape, np.bool_)
    _core.unary(unary_code("isnan"), X, y, 0.0, 0.0)
    return y


def IsInf(X, detect_negative=1, detect_positive=1):
    y = np.empty(X.shape, np.bool_)
    op = "isinf" if detect_negative and detect_positive else ("isposinf" if detect_positive else "isneginf")
    if not detect_negative and not detect_positive:
        y[...] = False
        return y
    _core.unary(unary_code(op), X, y, 0.0, 0.0)
    return y


def Clip(input, min=None, max=None):
    if np.issubdtype(input.dtype, np.floating):
        lo = -np.inf if min is None else float(np.asarray(min))
        hi = np.inf if max is None else float(np.asarray(max))
    else:
        info = np.iinfo(input.dtype)
        lo = info.min if min is None else int(np.asarray(min))
        hi = info.max if max is None else int(np.asarray(max))
    return unary("clip", input, lo, hi)


# ---------------------------------------------------------------- selection and type conversion

def Where(condition, X, Y):
    shape = broadcast_shapes(condition.shape, X.shape, Y.shape)
    y = np.empty(shape, X.dtype)
    _core.where(*(broadcast_to(t, shape) for t in (condition, X, Y)), y)
    return y


def Cast(input, to, saturate=1, round_mode="up"):
    return cast(input, onnx_dtype(to))


def CastLike(input, target_type, saturate=1, round_mode="up"):
    return cast(input, target_type.dtype)


def BitCast(input, to):
    dtype = onnx_dtype(to)
    if dtype.itemsize != input.dtype.itemsize:
        raise ValueError(f"BitCast from {input.dtype} to {dtype}: the types differ in size")
    return contiguous(input).view(dtype)


def Identity(input):
    return input


# Optional values: onnxstream has tensors only, so an optional is a tensor or an omitted input (None).
def OptionalHasElement(input=None):
    return np.array(input is not None)


def OptionalGetElement(input):
    if input is None:
        raise ValueError("OptionalGetElement: the optional is empty")
    return input
