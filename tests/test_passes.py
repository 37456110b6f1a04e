"""The CNN passes (passes/: BatchNormalization folding, per-channel Add/Mul folding, activation epilogues, Paddle's
decomposed hardswish, Identity removal, unused MaxPool indices) and the depthwise conv kernels, against
onnxruntime on small random-weight graphs; each also checks that the rewrite happened (so it fails without it)."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxstream
from onnxstream.graph import load_graph
from reference import onnxruntime_outputs, rel_l2

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)


def conv_model(tail, c=6, m=6, hw=(13, 11), kernel=3, group=1, strides=1, pads=1, dilations=1, bias=True,
               opset=17, extra_inits=()):
    """x -> Conv -> `tail` nodes (reading "c0", the last one writing "y")."""
    w = RNG.standard_normal((m, c // group, kernel, kernel)).astype(np.float32) * 0.3
    inits = [numpy_helper.from_array(w, "w"), *extra_inits]
    conv_in = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(RNG.standard_normal(m).astype(np.float32), "b"))
        conv_in.append("b")
    nodes = [helper.make_node("Conv", conv_in, ["c0" if tail else "y"], group=group, strides=[strides] * 2,
                              pads=[pads] * 4, dilations=[dilations] * 2, kernel_shape=[kernel] * 2), *tail]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, c, *hw])],
                              [helper.make_tensor_value_info("y", F, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def bn_inits(m, prefix="bn"):
    return [numpy_helper.from_array(a.astype(np.float32), f"{prefix}_{k}") for k, a in
            (("s", RNG.uniform(0.5, 2, m)), ("b", RNG.standard_normal(m)), ("m", RNG.standard_normal(m)),
             ("v", RNG.uniform(0.2, 3, m)))]


def bn(inp, out, prefix="bn"):
    return helper.make_node("BatchNormalization", [inp, f"{prefix}_s", f"{prefix}_b", f"{prefix}_m", f"{prefix}_v"],
                            [out], epsilon=1e-3)


def scalar(name, v):
    return numpy_helper.from_array(np.array(v, np.float32), name)


def run_both(model, tmp_path, x_shape=None, optimized=True):
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    shape = x_shape or [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = RNG.standard_normal(shape).astype(np.float32) * 2
    ref = onnxruntime_outputs(str(path), {"x": x}, optimized)
    onnxstream.convert(path, tmp_path / "out")
    ours = onnxstream.Session(tmp_path / "out").run({"x": x})
    for k, v in ref.items():
        assert ours[k].shape == v.shape
        assert rel_l2(ours[k], v) < 1e-5, (k, rel_l2(ours[k], v))
    return load_graph(tmp_path / "out")


def ops(graph):
    return [n.op for n in graph.nodes]


ACTIVATIONS = {
    "relu": ([helper.make_node("Relu", ["c1"], ["y"])], []),
    "relu6": ([helper.make_node("Clip", ["c1", "lo", "hi"], ["y"])], [scalar("lo", 0), scalar("hi", 6)]),
    "clip_min_only": ([helper.make_node("Clip", ["c1", "lo"], ["y"])], [scalar("lo", -0.5)]),
    "leaky_relu": ([helper.make_node("LeakyRelu", ["c1"], ["y"], alpha=0.2)], []),
    "hard_sigmoid": ([helper.make_node("HardSigmoid", ["c1"], ["y"], alpha=0.3, beta=0.4)], []),
    "hard_swish": ([helper.make_node("HardSwish", ["c1"], ["y"])], []),
    "sigmoid": ([helper.make_node("Sigmoid", ["c1"], ["y"])], []),
    "silu": ([helper.make_node("Sigmoid", ["c1"], ["s"]), helper.make_node("Mul", ["c1", "s"], ["y"])], []),
    "prelu": ([helper.make_node("PRelu", ["c1", "slope"], ["y"])],
              [numpy_helper.from_array(RNG.uniform(0, 0.5, (6, 1, 1)).astype(np.float32), "slope")]),
}


@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_batchnorm_and_activation_fold_into_conv(act, depthwise, tmp_path):
    tail, inits = ACTIVATIONS[act]
    model = conv_model([bn("c0", "c1"), *tail], group=6 if depthwise else 1, extra_inits=[*bn_inits(6), *inits])
    graph = run_both(model, tmp_path)
    assert ops(graph) == ["Conv"], ops(graph)
    assert graph.nodes[0].attrs["activation"] == {"relu6": "clip", "clip_min_only": "clip"}.get(act, act)


@pytest.mark.parametrize("kernel,strides,pads,dilations", [(3, 1, 1, 1), (3, 2, 1, 1), (5, 1, 2, 1), (5, 2, 2, 1),
                                                         (3, 1, 2, 2), (7, 3, 3, 1), (1, 1, 0, 1), (2, 2, 0, 1)])
def test_depthwise_conv(kernel, strides, pads, dilations, tmp_path):
    model = conv_model([], c=5, m=5, hw=(17, 23), kernel=kernel, group=5, strides=strides, pads=pads,
                       dilations=dilations)
    graph = run_both(model, tmp_path)
    assert not graph.weights or all(not w.layout for w in graph.weights)  # the ONNX [C, 1, k, k] kept, no panels


def test_depthwise_conv_two_threads_and_batch(tmp_path):
    model = conv_model([helper.make_node("Relu", ["c0"], ["y"])], c=8, m=8, hw=(9, 40), group=8, strides=2)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 3
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    x = RNG.standard_normal((3, 8, 9, 40)).astype(np.float32)
    onnxstream.convert(path, tmp_path / "out")
    ours = onnxstream.Session(tmp_path / "out", threads=2).run({"x": x})["y"]
    assert rel_l2(ours, onnxruntime_outputs(str(path), {"x": x})["y"]) < 1e-6


def test_bias_free_conv_add_and_mul_fold(tmp_path):
    add = numpy_helper.from_array(RNG.standard_normal((1, 6, 1, 1)).astype(np.float32), "add")
    mul = numpy_helper.from_array(RNG.standard_normal((6, 1, 1)).astype(np.float32), "mul")
    model = conv_model([helper.make_node("Mul", ["c0", "mul"], ["c1"]), helper.make_node("Add", ["add", "c1"], ["y"])],
                       bias=False, extra_inits=[add, mul])
    assert ops(run_both(model, tmp_path)) == ["Conv"]


def test_add_that_broadcasts_wider_is_not_folded(tmp_path):
    add = numpy_helper.from_array(RNG.standard_normal((1, 6, 13, 1)).astype(np.float32), "add")  # per row too
    model = conv_model([helper.make_node("Add", ["c0", "add"], ["y"])], extra_inits=[add])
    assert ops(run_both(model, tmp_path)) == ["Conv", "Add"]


def test_paddle_hard_swish_and_identities(tmp_path):
    """Paddle: conv -> Identity -> x * clip(x + 3, 0, 6) / 6 -> Identity."""
    tail = [helper.make_node("Identity", ["c0"], ["i0"]), helper.make_node("Add", ["i0", "three"], ["a"]),
            helper.make_node("Clip", ["a", "zero", "six"], ["c"]), helper.make_node("Mul", ["i0", "c"], ["m"]),
            helper.make_node("Div", ["m", "six"], ["d"]), helper.make_node("Identity", ["d"], ["y"])]
    model = conv_model(tail, extra_inits=[scalar("three", 3), scalar("zero", 0), scalar("six", 6)])
    graph = run_both(model, tmp_path)
    assert ops(graph) == ["Conv", "Identity"] and graph.nodes[0].attrs["activation"] == "hard_swish"


def test_conv_output_read_twice_keeps_its_activation_separate(tmp_path):
    tail = [helper.make_node("Relu", ["c0"], ["r"]), helper.make_node("Add", ["r", "c0"], ["y"])]
    assert "Relu" in ops(run_both(conv_model(tail), tmp_path))


@pytest.mark.parametrize("want_indices", [False, True])
def test_maxpool_indices_only_when_read(want_indices, tmp_path):
    outs = ["y", "idx"] if want_indices else ["y", ""]
    node = helper.make_node("MaxPool", ["x"], outs, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    graph_outs = [helper.make_tensor_value_info("y", F, None)]
    if want_indices:
        graph_outs.append(helper.make_tensor_value_info("idx", TensorProto.INT64, None))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F, [1, 3, 9, 10])], graph_outs)
    graph = run_both(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path)
    assert graph.nodes[0].outputs == outs[:2 if want_indices else 1]


def _layer_norm_torch(tmp_path, opset, shape, normalized, affine):
    """torch's own export of nn.LayerNorm at an opset before 17: the nine-node spelling."""
    import torch
    torch.manual_seed(0)
    ln = torch.nn.LayerNorm(normalized, elementwise_affine=affine).eval()
    if affine:
        with torch.no_grad():
            ln.weight.uniform_(0.5, 2)
            ln.bias.normal_()
    path = tmp_path / "ln.onnx"
    torch.onnx.export(ln, (torch.zeros(shape),), str(path), dynamo=False, opset_version=opset,
                      input_names=["x"], output_names=["y"])
    import onnx
    return onnx.load(str(path))


@pytest.mark.parametrize("opset,shape,normalized,affine", [
    (12, (2, 7, 48), (48,), True),          # a transformer's per-token norm
    (14, (1, 5, 6, 8), (6, 8), True),       # over two trailing axes
    (12, (3, 33), (33,), False),            # no scale or bias
])
def test_decomposed_layer_norm_fuses(opset, shape, normalized, affine, tmp_path):
    model = _layer_norm_torch(tmp_path, opset, shape, normalized, affine)
    assert "LayerNormalization" not in [n.op_type for n in model.graph.node]
    graph = run_both(model, tmp_path, list(shape))
    assert ops(graph) == ["LayerNormalization"]


def keras_layer_norm(opset, square_by_mul=True, eps=1e-3, axes=(-1,)):
    """Keras/TF's spelling: the square as Mul(d, d); at opset 18 ReduceMean takes its axes as an input."""
    x = helper.make_tensor_value_info("x", F, [2, 4, 10])
    inits = [scalar("eps", eps), numpy_helper.from_array(RNG.uniform(0.5, 2, 10).astype(np.float32), "gamma"),
             numpy_helper.from_array(RNG.standard_normal(10).astype(np.float32), "beta"), scalar("two", 2)]
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
        mean = lambda i, o: helper.make_node("ReduceMean", [i, "axes"], [o])  # noqa: E731
    else:
        mean = lambda i, o: helper.make_node("ReduceMean", [i], [o], axes=list(axes))  # noqa: E731
    square = helper.make_node("Mul", ["d", "d"], ["sq"]) if square_by_mul else \
        helper.make_node("Pow", ["d", "two"], ["sq"])
    nodes = [mean("x", "m"), helper.make_node("Sub", ["x", "m"], ["d"]), square, mean("sq", "v"),
             helper.make_node("Add", ["v", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["s"]),
             helper.make_node("Div", ["d", "s"], ["n"]), helper.make_node("Mul", ["gamma", "n"], ["g"]),
             helper.make_node("Add", ["g", "beta"], ["y"])]
    g = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", F, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [13, 18])
def test_keras_layer_norm_fuses(opset, tmp_path):
    assert ops(run_both(keras_layer_norm(opset), tmp_path)) == ["LayerNormalization"]


@pytest.mark.parametrize("case", ["middle_axis", "pow4"])
def test_look_alike_norms_are_not_fused(case, tmp_path):
    """A mean over a leading axis, or a fourth power instead of a square, is not a layer norm: left as it is.
    (onnxruntime 1.32's own layer-norm fusion ignores Pow's exponent, so the reference runs unoptimized.)"""
    model = keras_layer_norm(13, square_by_mul=case != "pow4", axes=(1,) if case == "middle_axis" else (-1,))
    if case == "pow4":
        model.graph.initializer[3].CopyFrom(scalar("two", 4))
    assert "LayerNormalization" not in ops(run_both(model, tmp_path, optimized=False))


def test_passes_reach_if_branches(tmp_path):
    """A network inside an If branch (silero's VAD, openWakeWord's verifier) gets the same rewrites as the main
    graph: Conv + Relu in one node, the nine-node layer norm as one; both branches against onnxruntime."""
    w = numpy_helper.from_array(RNG.standard_normal((4, 3, 3)).astype(np.float32) * 0.3, "w")
    then_nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3], pads=[1, 1]),
                  helper.make_node("Relu", ["c"], ["r"])]
    ln = keras_layer_norm(13).graph   # x -> y over the last axis of [2, 4, 10]
    rename = {"x": "r", "y": "t_out"}
    for n in ln.node:
        then_nodes.append(helper.make_node(n.op_type, [rename.get(i, i) for i in n.input],
                                           [rename.get(o, o) for o in n.output], **{
                                               a.name: helper.get_attribute_value(a) for a in n.attribute}))
    then_g = helper.make_graph(then_nodes, "then", [], [helper.make_tensor_value_info("t_out", F, [2, 4, 10])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e_out"]),
                                helper.make_node("Pad", ["e_out", "epads"], ["e_pad"])], "else", [],
                               [helper.make_tensor_value_info("e_pad", F, [2, 4, 10])])
    inits = [w, *ln.initializer, numpy_helper.from_array(np.array([0, 1, 0, 0, 0, 0], np.int64), "epads")]
    x = helper.make_tensor_value_info("x", F, [2, 3, 10])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    g = helper.make_graph([helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)], "g",
                          [x, cond], [helper.make_tensor_value_info("y", F, [2, 4, 10])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "if.onnx"
    path.write_bytes(model.SerializeToString())
    onnxstream.convert(path, tmp_path / "out")
    session = onnxstream.Session(tmp_path / "out")
    branch = session.graph.nodes[0].attrs["then_branch"]
    assert [n.op for n in branch.nodes] == ["Conv", "LayerNormalization"]
    assert branch.nodes[0].attrs["activation"] == "relu"
    xv = RNG.standard_normal((2, 3, 10)).astype(np.float32)
    for c in (True, False):
        feeds = {"x": xv, "cond": np.array(c)}
        ref = onnxruntime_outputs(str(path), feeds)["y"]
        got = session.run(feeds)["y"]
        assert got.shape == ref.shape and rel_l2(got, ref) < 1e-5, c


def test_static_view_chain_becomes_one_reshape(tmp_path):
    """Unsqueeze -> Squeeze -> Flatten with shapes known at convert time: one Reshape to the final shape."""
    x = helper.make_tensor_value_info("x", F, [2, 3, 4])
    nodes = [helper.make_node("Unsqueeze", ["x", "ax0"], ["u"]), helper.make_node("Squeeze", ["u", "ax0"], ["s"]),
             helper.make_node("Flatten", ["s"], ["f"], axis=2), helper.make_node("Relu", ["f"], ["r"]),
             helper.make_node("Unsqueeze", ["r", "ax1"], ["y"])]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([1], np.int64), "ax1")]
    g = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", F, None)], inits)
    graph = run_both(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), tmp_path)
    assert ops(graph) == ["Reshape", "Relu", "Reshape"]


@pytest.mark.parametrize("hw,fused", [((13, 11), False), ((128, 96), True)])
def test_residual_add_joins_the_conv_only_when_large(hw, fused, tmp_path):
    """Add(conv, x) goes into the conv's epilogue from RESIDUAL_MIN_BYTES of output (256 KB) on; a small one stays a
    Conv and an Add (cheaper than the fused path's band machinery). Both against onnxruntime."""
    graph = run_both(conv_model([helper.make_node("Add", ["c0", "x"], ["y"])], hw=hw), tmp_path)
    assert ops(graph) == (["FusedConv"] if fused else ["Conv", "Add"])
