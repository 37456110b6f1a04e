"""ONNX op name -> plain function. Functions take the op's inputs positionally (None for an omitted optional
input) and its ONNX attributes as keyword arguments, and return one array or a tuple of arrays."""
from . import conv, elementwise, fused, linalg, norm, reduce, resize, shape

OPS = {name: fn for module in (elementwise, shape, reduce, norm, linalg, conv, resize, fused)
       for name, fn in vars(module).items() if name[:1].isupper() and callable(fn) and fn.__module__ == module.__name__}

# Ops whose weight input may stay float16: their kernels convert it on the fly.
FLOAT16_WEIGHT_OPS = {"MatMul", "Gemm", "Conv", "FusedRowTiled"}
