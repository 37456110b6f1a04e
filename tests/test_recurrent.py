"""LSTM, GRU and RNN against onnxruntime: the ONNX node cases, torch exports of nn.LSTM/GRU/RNN (both exporters,
batch_first, bidirectional, stacked layers, initial states), and hand-built models with constant weights (packed at
convert time) for the attributes torch never writes: sequence_lens, clip, activations, linear_before_reset=0,
input_forget, layout, peepholes."""
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxstream
from conformance import run_case
from onnxstream.graph import load_graph
from reference import onnxruntime_outputs, rel_l2, round_weights_to_fp16
from test_controlflow import node_cases, upgraded

F = TensorProto.FLOAT
CASES, SKIPPED = node_cases({"LSTM", "GRU", "RNN"})


def test_recurrent_case_list():
    assert len(CASES) == 18 and not SKIPPED


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_recurrent_node_case(case, tmp_path):
    run_case(upgraded(case), tmp_path)


def compare(path, feeds, tmp_path, weights="fp32", rtol=1e-4, atol=1e-5, reference=None):
    out = onnxstream.convert(path, tmp_path / f"m_{weights}", weights=weights,
                             input_shapes={k: v.shape for k, v in feeds.items()})
    got = onnxstream.Session(out).run(feeds)
    want = onnxruntime_outputs(reference or str(path), feeds)
    for name, w in want.items():
        assert got[name].shape == w.shape and got[name].dtype == w.dtype, name
        np.testing.assert_allclose(got[name], w, rtol=rtol, atol=atol, err_msg=name)
    return out


# ---------------------------------------------------------------- torch exports

class Stack(__import__("torch").nn.Module if __import__("importlib").util.find_spec("torch") else object):
    """A recurrent module followed by a Linear on its sequence output; optionally fed initial states."""

    def __init__(self, cell, batch_first, bidirectional, layers, with_state, nonlinearity="tanh"):
        import torch
        super().__init__()
        kwargs = {"nonlinearity": nonlinearity} if cell == "RNN" else {}
        self.rnn = getattr(torch.nn, cell)(12, 20, num_layers=layers, bidirectional=bidirectional,
                                           batch_first=batch_first, **kwargs)
        self.head = torch.nn.Linear(20 * (2 if bidirectional else 1), 5)
        self.with_state = with_state

    def forward(self, x, *state):
        y, last = self.rnn(x, (state if len(state) > 1 else state[0]) if self.with_state else None)
        return self.head(y), last[0] if isinstance(last, tuple) else last


TORCH_CASES = [  # cell, batch_first, bidirectional, layers, initial states, dynamo exporter
    ("LSTM", True, True, 2, False, True), ("LSTM", False, False, 1, True, False), ("LSTM", True, False, 2, True, True),
    ("GRU", True, True, 2, False, True), ("GRU", False, True, 1, True, False),
    ("RNN", False, True, 2, False, False), ("RNN", True, False, 1, True, False),  # (dynamo unrolls nn.RNN)
]


@pytest.mark.parametrize("cell,batch_first,bidirectional,layers,with_state,dynamo", TORCH_CASES)
def test_torch_export(cell, batch_first, bidirectional, layers, with_state, dynamo, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = Stack(cell, batch_first, bidirectional, layers, with_state).eval()
    T, B, D = 7, 3, 2 if bidirectional else 1
    x = torch.randn((B, T, 12) if batch_first else (T, B, 12))
    state = [torch.randn(layers * D, B, 20) for _ in range(2 if cell == "LSTM" else 1)] if with_state else []
    names = ["x"] + [f"s{i}" for i in range(len(state))]
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x, *state), str(path), dynamo=dynamo, input_names=names, verbose=False,
                          **({} if dynamo else {"opset_version": 17}))
    assert cell in {n.op_type for n in onnx.load(str(path)).graph.node}
    feeds = {n: t.numpy() for n, t in zip(names, [x, *state])}
    out = compare(path, feeds, tmp_path)
    packed = [w for w in load_graph(out).weights if w.layout]
    assert len(packed) >= 2 * layers  # W and R of every layer on the GEMM panels
    with torch.no_grad():
        ref = module(x, *state)
    got = onnxstream.Session(out).run(feeds)
    assert rel_l2(list(got.values())[0], ref[0].numpy()) < 1e-5


def test_torch_lstm_fp16_weights(tmp_path):
    """--weights fp16: the packed W and R stay float16 in the kernels; against onnxruntime on the same rounded
    weights."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    module = Stack("LSTM", True, True, 1, False).eval()
    x = torch.randn(2, 9, 12)
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["x"], verbose=False)
    rounded = onnx.load(str(path))
    round_weights_to_fp16(rounded)
    out = compare(path, {"x": x.numpy()}, tmp_path, weights="fp16", reference=rounded, rtol=1e-4, atol=1e-5)
    assert {w.dtype for w in load_graph(out).weights if w.layout} == {"float16"}


# ---------------------------------------------------------------- hand-built models, constant weights

def recurrent_model(op, hidden, attrs, bias=True, peepholes=False, lens=False, initial=False, seed=0,
                    T=6, B=3, I=5, layout=0):
    rng = np.random.default_rng(seed)
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    D = 2 if attrs.get("direction") == "bidirectional" else 1
    inits = [numpy_helper.from_array(rng.standard_normal((D, G * hidden, I)).astype(np.float32) * 0.5, "W"),
             numpy_helper.from_array(rng.standard_normal((D, G * hidden, hidden)).astype(np.float32) * 0.5, "R")]
    names = ["X", "W", "R", "B" if bias else "", "seq" if lens else "", "h0" if initial else ""]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal((D, 2 * G * hidden)).astype(np.float32), "B"))
    if op == "LSTM":
        names += ["c0" if initial else "", "P" if peepholes else ""]
        if peepholes:
            inits.append(numpy_helper.from_array(rng.standard_normal((D, 3 * hidden)).astype(np.float32), "P"))
    while names[-1] == "":
        names.pop()
    state_shape = [B, D, hidden] if layout else [D, B, hidden]
    graph_inputs = [helper.make_tensor_value_info("X", F, [B, T, I] if layout else [T, B, I])]
    if lens:
        graph_inputs.append(helper.make_tensor_value_info("seq", TensorProto.INT32, [B]))
    if initial:
        graph_inputs += [helper.make_tensor_value_info(n, F, state_shape) for n in (["h0", "c0"] if op == "LSTM"
                                                                                     else ["h0"])]
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, hidden_size=hidden, layout=layout, **attrs)
    g = helper.make_graph([node], "rnn", graph_inputs, [helper.make_tensor_value_info(o, F, None) for o in outs],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    reference = m
    if layout:  # onnxruntime has no batch-first recurrent ops: the same op with layout 0 between Transposes
        ref_nodes = [helper.make_node("Transpose", ["X"], ["Xt"], perm=[1, 0, 2])]
        ref_names = ["Xt"] + names[1:]
        for n in ("h0", "c0"):
            if n in names:
                ref_nodes.append(helper.make_node("Transpose", [n], [n + "t"], perm=[1, 0, 2]))
                ref_names[names.index(n)] = n + "t"
        ref_nodes.append(helper.make_node(op, ref_names, [o + "t" for o in outs], hidden_size=hidden, **attrs))
        ref_nodes += [helper.make_node("Transpose", [o + "t"], [o], perm=[2, 0, 1, 3] if o == "Y" else [1, 0, 2])
                      for o in outs]
        reference = helper.make_model(helper.make_graph(ref_nodes, "ref", graph_inputs, g.output, inits),
                                      opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    feeds = {"X": rng.standard_normal((B, T, I) if layout else (T, B, I)).astype(np.float32)}
    if lens:
        feeds["seq"] = np.array([T, 2, 4][:B], np.int32)
    if initial:
        for n in (["h0", "c0"] if op == "LSTM" else ["h0"]):
            feeds[n] = rng.standard_normal(state_shape).astype(np.float32)
    return m, feeds, reference


HANDMADE = [
    ("LSTM", 20, {"direction": "bidirectional"}, {"lens": True, "initial": True, "peepholes": True}),
    ("LSTM", 17, {"clip": 0.7}, {}),
    ("LSTM", 16, {"input_forget": 1, "direction": "reverse"}, {"initial": True}),
    ("LSTM", 9, {"activations": ["HardSigmoid", "LeakyRelu", "Softsign"], "activation_alpha": [0.3, 0.05],
                 "activation_beta": [0.4]}, {}),
    ("LSTM", 12, {"direction": "bidirectional"}, {"layout": 1, "initial": True}),
    ("GRU", 20, {"linear_before_reset": 0, "direction": "bidirectional"}, {"lens": True, "initial": True}),
    ("GRU", 18, {"linear_before_reset": 1, "clip": 0.5}, {"initial": True}),
    ("GRU", 8, {"activations": ["Sigmoid", "Elu"], "activation_alpha": [0.8]}, {"layout": 1}),
    ("RNN", 33, {"direction": "reverse", "activations": ["Relu"]}, {"lens": True, "initial": True}),
    ("RNN", 8, {"activations": ["ScaledTanh", "Affine"], "activation_alpha": [0.9, 0.5], "activation_beta": [1.2, 0.1],
                "direction": "bidirectional"}, {"bias": False}),
]


@pytest.mark.parametrize("op,hidden,attrs,kw", HANDMADE, ids=[f"{h[0]}-{i}" for i, h in enumerate(HANDMADE)])
def test_attributes_with_constant_weights(op, hidden, attrs, kw, tmp_path):
    m, feeds, reference = recurrent_model(op, hidden, attrs, **kw)
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    out = compare(path, feeds, tmp_path, reference=reference)
    assert {w.name for w in load_graph(out).weights if w.layout} == {"W", "R"}


def test_int8_weights_keep_recurrent_weights_float16(tmp_path):
    """--weights int8: W and R stay float16 panels (a direction's gates are read as one operand, which per-column
    qc8w blobs cannot be); the classifier's weight becomes int8. Close to onnxruntime's fp32 output."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    module = Stack("GRU", True, True, 1, False).eval()
    x = torch.randn(2, 9, 12)
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["x"], verbose=False)
    out = onnxstream.convert(path, tmp_path / "m", weights="int8")
    layouts = {w.name: (w.dtype, w.layout) for w in load_graph(out).weights if w.layout}
    w_r = {n.input[i] for n in onnx.load(str(path)).graph.node if n.op_type == "GRU" for i in (1, 2)}
    assert w_r and all(layouts[name][0] == "float16" for name in w_r)
    assert "int8" in {d for name, (d, _) in layouts.items() if name not in w_r}
    got = onnxstream.Session(out).run({"x": x.numpy()})
    want = onnxruntime_outputs(str(path), {"x": x.numpy()})
    for name, w in want.items():
        assert rel_l2(got[name], w) < 2e-2, name
