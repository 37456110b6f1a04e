"""The random ops, whose draws no reference can repeat, checked by their statistics and their seeds, run in
converted models (the converter never folds them)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxstream


def run(tmp_path, node, inputs, outputs=("y",)):
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, v.shape)
                                            for n, v in inputs.items()],
                              [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)]), str(path))
    session = onnxstream.Session(onnxstream.convert(path, tmp_path / "m", overwrite=True))
    return [session.run(inputs) for _ in range(2)]


def test_bernoulli(tmp_path):
    p = np.linspace(0.05, 0.95, 10, dtype=np.float32).repeat(4000).reshape(10, 4000)
    first, second = run(tmp_path, helper.make_node("Bernoulli", ["p"], ["y"], seed=3.0), {"p": p})
    draws = first["y"]
    assert draws.dtype == np.float32 and set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_allclose(draws.mean(axis=1), p[:, 0], atol=0.03)  # 4000 draws: sd <= 0.008
    assert np.array_equal(draws, second["y"])  # a seed repeats the draws


def test_training_dropout(tmp_path):
    x = np.ones((200, 200), np.float32)
    node = helper.make_node("Dropout", ["x", "r", "t"], ["y", "mask"], seed=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("mask", TensorProto.BOOL, None)],
                              [onnx.numpy_helper.from_array(np.array(0.25, np.float32), "r"),
                               onnx.numpy_helper.from_array(np.array(True), "t")])
    path = tmp_path / "d.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)]), str(path))
    out = onnxstream.Session(onnxstream.convert(path, tmp_path / "d")).run({"x": x})
    assert out["mask"].dtype == np.bool_ and abs(out["mask"].mean() - 0.75) < 0.01
    np.testing.assert_allclose(out["y"], np.where(out["mask"], 1 / 0.75, 0), rtol=1e-6)  # kept: 1 / (1 - ratio)


@pytest.mark.parametrize("op, attrs, mean, std", [
    ("RandomNormal", dict(mean=2.0, scale=3.0), 2.0, 3.0),
    ("RandomUniform", dict(low=-1.0, high=3.0), 1.0, 4 / 12 ** 0.5),
    ("RandomNormalLike", dict(mean=-1.0, scale=0.5), -1.0, 0.5),
    ("RandomUniformLike", dict(low=0.0, high=1.0), 0.5, 1 / 12 ** 0.5),
])
def test_random_generators(tmp_path, op, attrs, mean, std):
    like = op.endswith("Like")
    x = np.zeros((100, 400), np.float32)
    node = helper.make_node(op, ["x"] if like else [], ["y"], **attrs, **({} if like else {"shape": [100, 400]}))
    first, second = run(tmp_path, node, {"x": x} if like else {})
    y = first["y"]
    assert y.shape == (100, 400) and y.dtype == np.float32
    assert abs(y.mean() - mean) < 5 * std / 200 and abs(y.std() - std) < 0.02 * std  # 40000 draws
    assert not np.array_equal(y, second["y"])  # no seed: every run draws anew


def test_multinomial(tmp_path):
    logits = np.log(np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]], np.float32))
    node = helper.make_node("Multinomial", ["x"], ["y"], sample_size=20000, seed=5.0, dtype=TensorProto.INT64)
    first, second = run(tmp_path, node, {"x": logits})
    y = first["y"]
    assert y.shape == (2, 20000) and y.dtype == np.int64 and np.array_equal(y, second["y"])
    freq = np.stack([(y == k).mean(axis=1) for k in range(3)], axis=1)
    np.testing.assert_allclose(freq, np.exp(logits), atol=0.015)  # sd <= 0.0036
