"""Control flow (If, Loop, Scan) and sequences against onnxruntime: the ONNX node cases, torch exports, and the
converter's handling of subgraphs (constant conditions inlined, unsupported ops found inside branches, weights in
subgraphs streamed and checksummed, outer values kept alive and unfused)."""
import json
import types
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxstream
from conformance import all_cases, run_case
from onnxstream.converter import ConversionError
from onnxstream.graph import GRAPH_FILE, WEIGHTS_FILE, load_graph
from reference import onnxruntime_outputs

F = TensorProto.FLOAT


def upgraded(case, opset=13):
    """The case with its model upgraded to opset 13 by onnx.version_converter (the converter takes 13 and up)."""
    from onnx import version_converter
    model = case.model
    if {o.domain or "": o.version for o in model.opset_import}.get("", 0) < opset:
        model = version_converter.convert_version(model, opset)
    return types.SimpleNamespace(model=model, data_sets=case.data_sets, name=case.name)


def node_cases(ops: set[str]):
    """The node cases using one of ops, with tensors as graph inputs and outputs (a sequence or optional at the
    graph boundary is not a tensor input the engine takes: those cases are listed, not run)."""
    run, skipped = [], []
    for c in all_cases():
        if not ({n.op_type for n in c.model.graph.node} & ops):
            continue
        tensors = all(isinstance(v, (np.ndarray, np.generic))  # (some cases hold 0-d numpy scalars)
                      for ins, outs in c.data_sets for v in list(ins) + list(outs))
        (run if tensors else skipped).append(c)
    return run, skipped


CONTROL = {"If", "Loop", "Scan"}
CASES, SKIPPED = node_cases(CONTROL)
# Cases whose data the engine cannot take, with the reason (the rest must pass).
NOT_RUN = {
    "test_scan_sum": "opset-8 Scan (batch axis): version_converter's upgrade drops the batch axis the data has; "
                     "test_scan8_semantics runs the op on the case's data",
    "test_range_bfloat16_type_positive_delta_expanded": "bfloat16 tensors",
}


def test_control_flow_case_list():
    print(f"\ncontrol-flow node cases: {len(CASES)} with tensor inputs and outputs; not run (sequence or optional "
          f"at the graph boundary): {', '.join(c.name for c in SKIPPED)}")
    assert len(CASES) >= 20 and {c.name for c in CASES} >= {"test_if", "test_loop11", "test_scan9_sum"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_control_flow_node_case(case, tmp_path):
    if case.name in NOT_RUN:
        pytest.skip(NOT_RUN[case.name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_case(upgraded(case), tmp_path)


def test_scan8_semantics():
    """Scan of opset 8 (batch axis, optional lengths) on test_scan_sum's data. The converter takes opset 13 and up
    here, so the op is called directly with the case's body (sum_out = sum_in + next; scan_out = sum_out)."""
    from onnxstream.graph import ValueInfo
    from onnxstream.runtime.ops.control import Scan
    (case,) = [c for c in all_cases() if c.name == "test_scan_sum"]
    body = lambda s, x: (s + x, s + x)  # noqa: E731
    body.outputs = [ValueInfo("sum_out", [2], "float32"), ValueInfo("scan_out", [2], "float32")]
    for inputs, expected in case.data_sets:
        got = Scan(None, *inputs, body=body, num_scan_inputs=1, _opset=8)
        for g, w in zip(got, expected):
            np.testing.assert_allclose(g, w, rtol=1e-6)
        lens = np.array([2] * inputs[0].shape[0], np.int64)  # shorter sequences: outputs past them are 0
        short = Scan(lens, *inputs, body=body, num_scan_inputs=1, _opset=8)
        np.testing.assert_allclose(short[1][:, :2], expected[1][:, :2], rtol=1e-6)
        assert not short[1][:, 2:].any()


# ---------------------------------------------------------------- helpers

def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def convert_and_compare(m, feeds, tmp_path, rtol=1e-5, atol=1e-6):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    out = onnxstream.convert(path, tmp_path / "m", input_shapes={k: v.shape for k, v in feeds.items()})
    got = onnxstream.Session(out).run(feeds)
    want = onnxruntime_outputs(str(path), feeds)
    for name, w in want.items():
        assert got[name].dtype == w.dtype and got[name].shape == w.shape, name
        np.testing.assert_allclose(got[name], w, rtol=rtol, atol=atol, err_msg=name)
    return out


def branch(name, nodes, outputs):
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(o, F, None) for o in outputs])


# ---------------------------------------------------------------- torch exports

def test_torch_cond_both_branches(tmp_path):
    torch = pytest.importorskip("torch")

    class Cond(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(16, 8), torch.nn.Linear(16, 8)

        def forward(self, x):
            return torch.cond(x.sum() > 0, lambda x: torch.relu(self.a(x)), lambda x: self.b(x) * 2, (x,))

    torch.manual_seed(0)
    path = tmp_path / "cond.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Cond().eval(), (torch.randn(4, 16),), str(path), dynamo=True, verbose=False)
    assert "If" in {n.op_type for n in onnx.load(str(path)).graph.node}
    out = onnxstream.convert(path, tmp_path / "cond", input_shapes={"x": (4, 16)})
    session = onnxstream.Session(out)
    for sign in (1, -1):
        x = {"x": (sign * np.abs(np.random.default_rng(1).standard_normal((4, 16)))).astype(np.float32)}
        want = onnxruntime_outputs(str(path), x)
        got = session.run(x)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_torchscript_loop_with_list(tmp_path):
    """A scripted loop appending to a list: Loop over SequenceEmpty/SequenceInsert, then ConcatFromSequence."""
    torch = pytest.importorskip("torch")

    class Accumulate(torch.nn.Module):
        def forward(self, x):
            y = x[0]
            outs = []
            for i in range(x.shape[0]):
                y = torch.tanh(y * 0.5 + x[i])
                outs.append(y)
            return torch.stack(outs), y

    path = tmp_path / "loop.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.jit.script(Accumulate()), (torch.randn(5, 3),), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Loop", "SequenceEmpty", "ConcatFromSequence"} <= ops
    for steps in (5, 1):
        x = {"x": np.random.default_rng(steps).standard_normal((steps, 3)).astype(np.float32)}
        convert_and_compare(onnx.load(str(path)), x, tmp_path / f"n{steps}")


# ---------------------------------------------------------------- converter: subgraphs

def if_model(cond_node, then_nodes, else_nodes, inits=()):
    """y = If(c) over x [2, 3]; the branches compute 'y_then' / 'y_else' from outer values."""
    nodes = [cond_node, helper.make_node("If", ["c"], ["y"], name="if0",
                                         then_branch=branch("then", then_nodes, ["y_then"]),
                                         else_branch=branch("else", else_nodes, ["y_else"]))]
    return model(nodes, [helper.make_tensor_value_info("x", F, [2, 3])], [helper.make_tensor_value_info("y", F, None)],
                 inits)


def test_constant_condition_inlines_the_branch(tmp_path):
    """Greater(Size(Relu(x)), 4) is known at convert time (x is 2x3): the If is gone, the then-branch runs."""
    m = if_model(helper.make_node("Size", ["r"], ["n"]),
                 [helper.make_node("Mul", ["x", "x"], ["y_then"])], [helper.make_node("Neg", ["x"], ["y_else"])])
    m.graph.node.insert(0, helper.make_node("Relu", ["x"], ["r"]))
    m.graph.node.insert(2, helper.make_node("Greater", ["n", "four"], ["c"]))
    m.graph.initializer.append(numpy_helper.from_array(np.array(4, np.int64), "four"))
    out = convert_and_compare(m, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, tmp_path)
    ops = [n.op for n in load_graph(out).nodes]
    assert "If" not in ops and "Mul" in ops and "Neg" not in ops


def test_unsupported_op_inside_a_branch_is_reported(tmp_path):
    m = if_model(helper.make_node("Greater", ["x", "x"], ["c2"]),
                 [helper.make_node("NoSuchOp", ["x"], ["y_then"], name="deep", domain="custom.x")],
                 [helper.make_node("Neg", ["x"], ["y_else"])])
    m.graph.node.insert(1, helper.make_node("ReduceMin", ["c2f"], ["c"], keepdims=0))
    m.graph.node.insert(1, helper.make_node("Cast", ["c2"], ["c2f"], to=TensorProto.BOOL))
    m.opset_import.append(helper.make_opsetid("custom.x", 1))
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    with pytest.raises(ConversionError, match=r"custom\.x\.NoSuchOp: if0/then_branch/deep"):
        onnxstream.convert(path, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_outer_value_read_by_a_branch_is_kept(tmp_path):
    """s = Sigmoid(x) is read by x * s (which the SiLU rewrite would fuse, dropping s) and by a branch."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["m"]),
             helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
             helper.make_node("Greater", ["total", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["b"], then_branch=branch("t", [helper.make_node("Add", ["s", "m"], ["o1"])],
                                                                      ["o1"]),
                              else_branch=branch("e", [helper.make_node("Sub", ["s", "m"], ["o2"])], ["o2"])),
             helper.make_node("Mul", ["b", "m"], ["y"])]
    m = model(nodes, [helper.make_tensor_value_info("x", F, [2, 3])], [helper.make_tensor_value_info("y", F, None)],
              [numpy_helper.from_array(np.array(0, np.float32), "zero")])
    for sign in (1, -1):
        convert_and_compare(m, {"x": (sign * np.linspace(0.1, 2, 6)).reshape(2, 3).astype(np.float32)},
                            tmp_path / f"s{sign}")


def test_branches_reusing_names_and_nested_scopes(tmp_path):
    """Both branches define 't' and a constant 'k' (ONNX allows it); the else branch holds a Loop whose body reads
    the branch's 't' and the main graph's x."""
    then = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["t"]), helper.make_node("Relu", ["t"], ["out"])],
                             "then", [], [helper.make_tensor_value_info("out", F, None)],
                             [numpy_helper.from_array(np.array(3, np.float32), "k")])
    body = helper.make_graph(
        [helper.make_node("Add", ["acc", "t"], ["acc2"]), helper.make_node("Mul", ["acc2", "x"], ["acc3"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in",
                                                                                                  TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc", F, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("acc3", F, None)])
    other = helper.make_graph(
        [helper.make_node("Sub", ["x", "k"], ["t"]),
         helper.make_node("Loop", ["trips", "", "x"], ["out"], body=body)], "else", [],
        [helper.make_tensor_value_info("out", F, None)],
        [numpy_helper.from_array(np.array(0.5, np.float32), "k"), numpy_helper.from_array(np.array(3, np.int64),
                                                                                          "trips")])
    nodes = [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
             helper.make_node("Greater", ["total", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    m = model(nodes, [helper.make_tensor_value_info("x", F, [2, 3])], [helper.make_tensor_value_info("y", F, None)],
              [numpy_helper.from_array(np.array(0, np.float32), "zero")])
    for sign in (1, -1):
        convert_and_compare(m, {"x": (sign * np.linspace(0.1, 1, 6)).reshape(2, 3).astype(np.float32)},
                            tmp_path / f"s{sign}")


def scan_model(hidden=64):
    """A Scan whose body multiplies by a [64, 64] weight (streamed from weights.bin, packed for the GEMM)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((hidden, hidden)) / 8).astype(np.float32), "W")
    body = helper.make_graph(
        [helper.make_node("MatMul", ["h", "W"], ["hw"]), helper.make_node("Add", ["hw", "xt"], ["a"]),
         helper.make_node("Tanh", ["a"], ["h2"]), helper.make_node("Identity", ["h2"], ["y"])], "body",
        [helper.make_tensor_value_info("h", F, [1, hidden]), helper.make_tensor_value_info("xt", F, [1, hidden])],
        [helper.make_tensor_value_info("h2", F, [1, hidden]), helper.make_tensor_value_info("y", F, [1, hidden])])
    nodes = [helper.make_node("Scan", ["h0", "x"], ["hT", "ys"], body=body, num_scan_inputs=1)]
    return model(nodes, [helper.make_tensor_value_info("h0", F, [1, hidden]),
                         helper.make_tensor_value_info("x", F, [7, 1, hidden])],
                 [helper.make_tensor_value_info("hT", F, None), helper.make_tensor_value_info("ys", F, None)], [w])


def scan_feeds(hidden=64):
    rng = np.random.default_rng(1)
    return {"h0": rng.standard_normal((1, hidden)).astype(np.float32),
            "x": rng.standard_normal((7, 1, hidden)).astype(np.float32)}


def test_weight_in_a_loop_body_streams_and_is_checksummed(tmp_path):
    out = convert_and_compare(scan_model(), scan_feeds(), tmp_path)
    graph = load_graph(out)
    (w,) = [w for w in graph.weights if w.name == "W"]
    assert w.layout  # packed for the GEMM like a weight of the main graph
    session = onnxstream.Session(out, resident_bytes=0)
    session.run(scan_feeds())
    assert session.bytes_read == 7 * w.nbytes  # streamed: read when the body's MatMul runs, each step
    resident = onnxstream.Session(out)  # a small model keeps its weights after the first read
    resident.run(scan_feeds())
    resident.run(scan_feeds())
    assert resident.bytes_read == w.nbytes
    with open(out / WEIGHTS_FILE, "r+b") as f:  # damage the weight: the read inside the body must notice
        f.seek(w.offset + 100)
        byte = f.read(1)
        f.seek(w.offset + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(Exception, match="checksum mismatch in tensor 'W'"):
        onnxstream.Session(out, resident_bytes=0).run(scan_feeds())


def test_nested_graph_format(tmp_path):
    """graph.json holds the Scan body as {"graph": {inputs, outputs, nodes}}; load_graph reads it back."""
    out = convert_and_compare(scan_model(), scan_feeds(), tmp_path)
    doc = json.loads((out / GRAPH_FILE).read_text())
    (scan,) = doc["nodes"]
    body = scan["attrs"]["body"]["graph"]
    assert sorted(body) == ["inputs", "nodes", "outputs"]
    assert [n["op"] for n in body["nodes"]] == ["MatMul", "Add", "Tanh", "Identity"]
    graph = load_graph(out)
    assert [n.op for n in graph.nodes[0].attrs["body"].nodes] == ["MatMul", "Add", "Tanh", "Identity"]


def test_sequence_ops_inside_a_graph(tmp_path):
    """SplitToSequence -> SequenceErase / SequenceInsert / SequenceAt / SequenceLength -> ConcatFromSequence, the
    sequences never at the graph boundary (which takes tensors only)."""
    i64 = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    nodes = [helper.make_node("SplitToSequence", ["x", "sizes"], ["s"], axis=1),
             helper.make_node("SequenceErase", ["s", "one"], ["s2"]),
             helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("SequenceInsert", ["s2", "r", "zero"], ["s3"]),
             helper.make_node("SequenceAt", ["s3", "minus_one"], ["last"]),
             helper.make_node("SequenceLength", ["s3"], ["n"]),
             helper.make_node("ConcatFromSequence", ["s3"], ["cat"], axis=1),
             helper.make_node("SplitToSequence", ["x"], ["pieces"], axis=0, keepdims=0),
             helper.make_node("ConcatFromSequence", ["pieces"], ["stacked"], axis=1, new_axis=1),
             helper.make_node("SequenceConstruct", ["x", "r"], ["pair"]),
             helper.make_node("ConcatFromSequence", ["pair"], ["both"], axis=0)]
    outs = [helper.make_tensor_value_info(n, t, None) for n, t in
            (("last", F), ("n", TensorProto.INT64), ("cat", F), ("stacked", F), ("both", F))]
    m = model(nodes, [helper.make_tensor_value_info("x", F, [3, 7])], outs,
              [i64("sizes", [2, 4, 1]), i64("one", 1), i64("zero", 0), i64("minus_one", -1)])
    convert_and_compare(m, {"x": np.linspace(-1, 1, 21, dtype=np.float32).reshape(3, 7)}, tmp_path)
