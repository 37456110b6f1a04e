"""ONNX op name -> plain function. Functions take the op's inputs positionally (None for an omitted optional
input) and its ONNX attributes as keyword arguments, and return one array or a tuple of arrays."""
import inspect

from . import (control, conv, detection, elementwise, fused, fused_conv, grid, indexing, linalg, loss, norm,
               quantized, quantized_contrib, recurrent, reduce, resize, sampling, scatter, sequence, shape, signal,
               text, transformer)

MODULES = (elementwise, shape, indexing, reduce, norm, transformer, linalg, loss, conv, resize, grid, sampling,
           scatter, signal, detection, text, fused, fused_conv, control, sequence, recurrent, quantized)


def _ops(module) -> dict:
    return {name: fn for name, fn in vars(module).items()
            if name[:1].isupper() and callable(fn) and fn.__module__ == module.__name__}


OPS = {name: fn for module in MODULES for name, fn in _ops(module).items()}
OPS.update({f"com.microsoft.{name}": fn for name, fn in _ops(quantized_contrib).items()})  # onnxruntime's domain

# Ops that can write their result over a dead input the executor hands them as _out (same shape and dtype).
IN_PLACE_OPS = {name for name, fn in OPS.items() if "_out" in inspect.signature(fn).parameters}

# Ops whose weight input may stay float16: their kernels convert it on the fly.
FLOAT16_WEIGHT_OPS = {"MatMul", "Gemm", "Conv", "FusedRowTiled", "FusedConv", "LSTM", "GRU", "RNN"}


def op_kwargs(op: str, attrs: dict, num_outputs: int, opset: int) -> dict:
    """The keyword arguments OPS[op] is called with: its attributes, plus the two facts some ops need that are
    not attributes (Split's output count, the model's opset for GroupNormalization)."""
    params = inspect.signature(OPS[op]).parameters
    kwargs = dict(attrs)
    if "_num_results" in params:
        kwargs["_num_results"] = num_outputs
    if "_opset" in params:
        kwargs["_opset"] = opset
    return kwargs
