"""Ops that draw random numbers: Dropout (identity unless in training mode) and Bernoulli. Draws come from
numpy's RandomState(seed), as in ONNX's reference, so a seeded run is reproducible; without a seed every run
differs."""
from __future__ import annotations

import numpy as np

from .common import onnx_dtype


def Dropout(data, ratio=None, training_mode=None, seed=None, _num_results=1, _opset=13):
    """(output, mask). Before opset 12 ratio is an attribute and there is no training mode; before opset 10 the
    mask has the input's type."""
    training = _opset >= 12 and training_mode is not None and bool(np.asarray(training_mode))
    drop = 0.5 if ratio is None else float(np.asarray(ratio))
    if not training or drop == 0:
        y, keep = data, np.ones(data.shape, np.bool_)
    else:
        keep = np.random.RandomState(seed).uniform(0.0, 1.0, data.shape) >= drop
        y = (data * keep * data.dtype.type(1.0 / (1.0 - drop))).astype(data.dtype)
    if _num_results == 1:
        return y
    return y, keep if _opset >= 10 else keep.astype(data.dtype)


def Bernoulli(input, dtype=None, seed=None):
    draws = np.random.RandomState(None if seed is None else int(seed)).binomial(1, input)
    return draws.astype(input.dtype if dtype is None else onnx_dtype(dtype))
