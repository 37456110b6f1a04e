"""Ops that draw random numbers: Dropout (identity unless in training mode), Bernoulli, Multinomial and the
Random* generators. Draws come from numpy's RandomState(seed), as in ONNX's reference, so a seeded run is
reproducible; without a seed every run differs (and the converter never folds them)."""
from __future__ import annotations

import numpy as np

from .common import onnx_dtype


def _state(seed):
    return np.random.RandomState(None if seed is None else int(seed))


def Dropout(data, ratio=None, training_mode=None, seed=None, _num_results=1, _opset=13):
    """(output, mask). Before opset 12 ratio is an attribute and there is no training mode; before opset 10 the
    mask has the input's type."""
    training = _opset >= 12 and training_mode is not None and bool(np.asarray(training_mode))
    drop = 0.5 if ratio is None else float(np.asarray(ratio))
    if not training or drop == 0:
        y, keep = data, np.ones(data.shape, np.bool_)
    else:
        keep = _state(seed).uniform(0.0, 1.0, data.shape) >= drop
        y = (data * keep * data.dtype.type(1.0 / (1.0 - drop))).astype(data.dtype)
    if _num_results == 1:
        return y
    return y, keep if _opset >= 10 else keep.astype(data.dtype)


def Bernoulli(input, dtype=None, seed=None):
    draws = _state(seed).binomial(1, input)
    return draws.astype(input.dtype if dtype is None else onnx_dtype(dtype))


def RandomNormal(shape, dtype=1, mean=0.0, scale=1.0, seed=None):
    return _state(seed).normal(mean, scale, shape).astype(onnx_dtype(dtype))


def RandomUniform(shape, dtype=1, high=1.0, low=0.0, seed=None):
    return _state(seed).uniform(low, high, shape).astype(onnx_dtype(dtype))


def RandomNormalLike(input, dtype=None, mean=0.0, scale=1.0, seed=None):
    return _state(seed).normal(mean, scale, input.shape).astype(input.dtype if dtype is None else onnx_dtype(dtype))


def RandomUniformLike(input, dtype=None, high=1.0, low=0.0, seed=None):
    return _state(seed).uniform(low, high, input.shape).astype(input.dtype if dtype is None else onnx_dtype(dtype))


def Multinomial(input, dtype=6, sample_size=1, seed=None):
    """[batch, classes] unnormalized log-probabilities -> [batch, sample_size] drawn class indices."""
    logits = input.astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    u = _state(seed).uniform(0.0, 1.0, (input.shape[0], sample_size))
    draws = np.minimum((u[:, :, None] > cdf[:, None, :]).sum(axis=2), input.shape[1] - 1)
    return draws.astype(onnx_dtype(dtype))
