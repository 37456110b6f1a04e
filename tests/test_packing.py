"""Constant weights packed at convert time (packing.py): Conv, MatMul and Gemm (transB 0/1) models converted
with fp32 and fp16 weights run through the packed path and match onnxruntime; the packer matches a numpy
reference byte for byte."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxstream import _core, convert
from onnxstream.converter import stored_as_fp16
from onnxstream.graph import load_graph
from onnxstream.graph import LAYOUT
from onnxstream.packing import pack_conv, pack_gemm_b
from onnxstream.runtime.executor import Session


def reference_panels(b: np.ndarray) -> np.ndarray:
    """[K, N] -> ceil(N/16) panels [K][16], zero-padded: the layout written out in numpy."""
    K, N = b.shape
    padded = np.zeros((K, -(-N // 16) * 16), b.dtype)
    padded[:, :N] = b
    return np.ascontiguousarray(padded.reshape(K, -1, 16).transpose(1, 0, 2)).reshape(-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("K,N", [(1, 1), (7, 16), (33, 17), (64, 50), (5, 48)])
def test_packer_matches_reference(dtype, K, N):
    b = np.random.default_rng(0).standard_normal((N, K)).astype(dtype).T  # a transposed (strided) view
    assert pack_gemm_b(b).tobytes() == reference_panels(b).tobytes()


def test_conv_packer_groups():
    w = np.random.default_rng(1).standard_normal((6, 2, 3, 3)).astype(np.float32)
    expect = np.concatenate([reference_panels(g.reshape(3, -1).T) for g in w.reshape(2, 3, 2, 3, 3)])
    assert pack_conv(w, group=2).tobytes() == expect.tobytes()


def _model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _float(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _cases():
    rng = np.random.default_rng(2)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    yield "conv", _model([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
                          helper.make_node("Conv", ["y", "w2"], ["z"], strides=[2, 2], pads=[1, 1, 1, 1]),
                          helper.make_node("Conv", ["z", "w3", "b3"], ["o"], group=2)],
                         [_float("x", [2, 8, 9, 11])], [_float("o", None)],
                         {"w": r(40, 8, 3, 3), "b": r(40), "w2": r(24, 40, 3, 3), "w3": r(18, 12, 1, 1), "b3": r(18)}), \
        {"x": r(2, 8, 9, 11)}
    yield "matmul", _model([helper.make_node("MatMul", ["x", "w"], ["y"]),
                            helper.make_node("Gemm", ["y", "g0", "c0"], ["z"], transB=0),
                            helper.make_node("Gemm", ["z", "g1", "c1"], ["o"], transB=1, alpha=0.5, beta=2.0)],
                           [_float("x", [5, 33])], [_float("o", None)],
                           {"w": r(33, 40), "g0": r(40, 20), "c0": r(20), "g1": r(20, 20), "c1": r(5, 20)}), \
        {"x": r(5, 33)}
    yield "matmul3d", _model([helper.make_node("MatMul", ["x", "w"], ["o"])], [_float("x", [2, 3, 70])],
                             [_float("o", None)], {"w": r(70, 17)}), {"x": r(2, 3, 70)}


@pytest.mark.parametrize("weights", ["fp32", "fp16"])
@pytest.mark.parametrize("case", ["conv", "matmul", "matmul3d"])
def test_packed_model_matches_onnxruntime(tmp_path, case, weights):
    model, feeds = {name: (m, f) for name, m, f in _cases()}[case]
    if weights == "fp16":  # onnxruntime sees the weights onnxstream stores
        for init in model.graph.initializer:
            a = numpy_helper.to_array(init)
            if stored_as_fp16(a):
                init.CopyFrom(numpy_helper.from_array(a.astype(np.float16).astype(np.float32), init.name))
    onnx.save(model, tmp_path / "m.onnx")
    out = convert(tmp_path / "m.onnx", tmp_path / "m", weights=weights)
    packed = [w for w in load_graph(out).weights if w.layout == LAYOUT]
    assert packed, "no weight was packed"
    expect = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = Session(out).run(feeds)["o"]
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-5 * np.abs(expect).max())


def test_fp16_keeps_float32_for_values_beyond_float16(tmp_path):
    """--weights fp16 stores a matrix float16 cannot hold (a causal mask of float32 minimums, or here a weight
    with values of 1e6) as float32, so the output still matches onnxruntime instead of turning to inf."""
    rng = np.random.default_rng(0)
    big = (rng.standard_normal((64, 40)) * 1e6).astype(np.float32)
    small = rng.standard_normal((40, 24)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "big"], ["h"]), helper.make_node("MatMul", ["h", "small"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(big, "big"), numpy_helper.from_array(small, "small")])
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(path))
    out = convert(path, tmp_path / "m", weights="fp16")
    dtypes = {w.name: w.dtype for w in load_graph(out).weights}
    assert dtypes == {"big": "float32", "small": "float16"}
    x = rng.standard_normal((5, 64)).astype(np.float32)
    got = Session(out).run({"x": x})["y"]
    # Reference: the same model with the weight that is stored as float16 rounded the same way.
    graph.initializer[1].CopyFrom(numpy_helper.from_array(small.astype(np.float16).astype(np.float32), "small"))
    rounded = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    want = ort.InferenceSession(rounded.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.isfinite(got).all()
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5
