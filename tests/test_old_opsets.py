"""Models of opsets 7-12 convert and match onnxruntime on the original model: upgraded by onnx.version_converter,
and also with the upgrade made to fail, when the ops must follow their older definitions (attributes that later
became inputs, Softmax's 2-D coercion, Resize-10 and Upsample coordinates, BatchNormalization's spatial=0)."""
import contextlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxstream
from conformance import version_converter_fails
from reference import onnxruntime_outputs

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)


def model(opset, node, inputs, outputs, inits=()):
    graph = helper.make_graph([node], "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def one_input(opset, op, out_shape=None, extra_outputs=(), inits=(), inputs=("x",), **attrs):
    node = helper.make_node(op, list(inputs), ["y", *[n for n, _ in extra_outputs]], **attrs)
    outs = [f32("y", out_shape)] + [helper.make_tensor_value_info(n, t, None) for n, t in extra_outputs]
    return model(opset, node, [f32("x", list(X.shape))], outs, inits)


CASES = {
    "softmax_11_default_axis": one_input(11, "Softmax"),                 # axis 1: rows of 3 * 4 * 5
    "softmax_11_axis2": one_input(11, "Softmax", axis=2),
    "logsoftmax_11_axis_neg1": one_input(11, "LogSoftmax", axis=-1),
    "hardmax_12_axis1": one_input(12, "Hardmax", axis=1),
    "topk_9_k_attribute": one_input(9, "TopK", extra_outputs=[("i", TensorProto.INT64)], k=2, axis=2),
    "pad_10_reflect": one_input(10, "Pad", pads=[0, 0, 1, 2, 0, 0, 2, 1], mode="reflect"),
    "pad_2_value": one_input(2, "Pad", pads=[0, 1, 0, 1, 0, 0, 1, 0], value=1.5),
    "slice_9_attributes": one_input(9, "Slice", starts=[1, -3], ends=[3, 100], axes=[2, 3]),
    "split_11_attribute": one_input(11, "Split", extra_outputs=[("y2", TensorProto.FLOAT)], axis=3, split=[2, 3]),
    "squeeze_11_axes": model(11, helper.make_node("Squeeze", ["x"], ["y"], axes=[0]),
                             [f32("x", [1, 3, 4])], [f32("y", None)]),
    "unsqueeze_11_axes": one_input(11, "Unsqueeze", axes=[0, -1]),
    "reducesum_12_axes": one_input(12, "ReduceSum", axes=[1, 3], keepdims=0),
    "reducemean_7_axes": one_input(7, "ReduceMean", axes=[2]),
    "clip_6_attributes": one_input(6, "Clip", min=-0.5, max=0.7),
    "upsample_7_nearest": one_input(7, "Upsample", scales=[1.0, 1.0, 2.0, 3.0], mode="nearest"),
    "upsample_7_linear": one_input(7, "Upsample", scales=[1.0, 1.0, 2.0, 1.5], mode="linear"),
    "upsample_9_nearest": one_input(9, "Upsample", inputs=("x", "s"), mode="nearest",
                                    inits=[("s", np.array([1, 1, 3, 2], np.float32))]),
    "resize_10_nearest": one_input(10, "Resize", inputs=("x", "s"), mode="nearest",
                                   inits=[("s", np.array([1, 1, 2.5, 0.6], np.float32))]),
    "resize_10_linear": one_input(10, "Resize", inputs=("x", "s"), mode="linear",
                                  inits=[("s", np.array([1, 1, 2, 3], np.float32))]),
    "resize_11_tf_half_pixel_for_nn": one_input(11, "Resize", inputs=("x", "roi", "s"), mode="nearest",
                                                coordinate_transformation_mode="tf_half_pixel_for_nn",
                                                inits=[("roi", np.zeros(0, np.float32)),
                                                       ("s", np.array([1, 1, 1.7, 2.3], np.float32))]),
    "batchnorm_7_spatial": one_input(7, "BatchNormalization", inputs=("x", "s", "b", "m", "v"), epsilon=1e-3,
                                     inits=[(n, RNG.uniform(0.5, 1.5, 3).astype(np.float32)) for n in "sbmv"]),
    "batchnorm_7_per_activation": one_input(7, "BatchNormalization", inputs=("x", "s", "b", "m", "v"), spatial=0,
                                            inits=[(n, RNG.uniform(0.5, 1.5, (3, 4, 5)).astype(np.float32))
                                                   for n in "sbmv"]),
    "dropout_7_ratio": one_input(7, "Dropout", ratio=0.3),
    "dropout_10_mask": one_input(10, "Dropout", extra_outputs=[("mask", TensorProto.BOOL)], ratio=0.3),
    "scatter_9": one_input(9, "Scatter", inputs=("x", "i", "u"), axis=3,
                           inits=[("i", RNG.integers(-5, 5, (2, 3, 4, 2)).astype(np.int64)),
                                  ("u", RNG.standard_normal((2, 3, 4, 2)).astype(np.float32))]),
}


# Kept at their opset: version_converter has no adapter (BatchNormalization spatial=0) or one that changes the
# result (converter.LOSSY_ADAPTERS).
KEPT = {"batchnorm_7_per_activation", "hardmax_12_axis1", "upsample_7_nearest", "upsample_7_linear",
        "upsample_9_nearest", "resize_10_nearest", "resize_10_linear"}


@pytest.mark.parametrize("upgrade", [True, False], ids=["upgraded", "as-is"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_old_opset_matches_onnxruntime(name, upgrade, tmp_path):
    m = CASES[name]
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    x = X[:1, :, :, 0] if name.startswith("squeeze") else X
    feeds = {"x": x}
    with contextlib.nullcontext() if upgrade else version_converter_fails():
        out = onnxstream.convert(path, tmp_path / "out", input_shapes={"x": x.shape})
    graph_opset = onnxstream.Session(out).graph.opset
    assert graph_opset == (13 if upgrade and name not in KEPT else m.opset_import[0].version)
    got = onnxstream.Session(out).run(feeds)
    want = onnxruntime_outputs(str(path), feeds)
    if name == "dropout_10_mask":
        # onnxruntime writes an all-False mask for opsets 10-11 (all True from 12 on, as ONNX's reference does
        # for every opset): the mask comes from the reference here.
        from onnx.reference import ReferenceEvaluator
        want["mask"] = ReferenceEvaluator(m).run(None, feeds)[1]
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
