"""References for whole-model tests: onnxruntime on the original model, optionally with the weights rounded to
float16 exactly as the converter stores them."""
from __future__ import annotations

import numpy as np

from onnxstream.converter import stored_as_fp16


def rel_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    actual = actual.astype(np.float64)
    expected = expected.astype(np.float64)
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))


def round_weights_to_fp16(model) -> None:
    """Round, in place, every initializer and Constant value the converter stores as float16."""
    from onnx import numpy_helper

    def rounded(t):
        a = numpy_helper.to_array(t)
        if stored_as_fp16(a):
            t.CopyFrom(numpy_helper.from_array(a.astype(np.float16).astype(np.float32), t.name))

    for t in model.graph.initializer:
        rounded(t)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    rounded(attr.t)


def onnxruntime_outputs(model_or_path, feeds: dict, optimized: bool = True) -> dict:
    """optimized=False: onnxruntime without its graph rewrites, for a pattern one of them gets wrong."""
    import onnxruntime as ort
    arg = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(arg, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))
