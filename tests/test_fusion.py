"""Fused ops against onnxruntime running the unfused pattern the exporters emit."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxstream
from onnxstream.graph import load_graph
from reference import onnxruntime_outputs, rel_l2


def attention_model(b, h, m, n, d, mask_shape=None, scale=0.125, nan_guard=False):
    """q, k, v -> softmax(q*s @ (k^T*s) [+ mask]) @ v, the way torch exports scaled_dot_product_attention."""
    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("q", f, [b, h, m, d]), helper.make_tensor_value_info("k", f, [b, h, n, d]),
              helper.make_tensor_value_info("v", f, [b, h, n, d])]
    s = helper.make_tensor("s", f, [], [scale ** 0.5])
    nodes = [helper.make_node("Mul", ["q", "s"], ["qs"]), helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
             helper.make_node("Mul", ["kt", "s"], ["kts"]), helper.make_node("MatMul", ["qs", "kts"], ["scores"])]
    last = "scores"
    if mask_shape is not None:
        inputs.append(helper.make_tensor_value_info("mask", f, list(mask_shape)))
        nodes.append(helper.make_node("Add", ["scores", "mask"], ["masked"]))
        last = "masked"
    nodes.append(helper.make_node("Softmax", [last], ["p"], axis=-1))
    inits = [s]
    if nan_guard:  # the dynamo exporter's guard against fully masked rows
        inits.append(helper.make_tensor("zero", f, [], [0.0]))
        nodes += [helper.make_node("IsNaN", ["p"], ["nan"]), helper.make_node("Where", ["nan", "zero", "p"], ["pg"])]
    nodes.append(helper.make_node("MatMul", ["pg" if nan_guard else "p", "v"], ["y"]))
    graph = helper.make_graph(nodes, "attn", inputs, [helper.make_tensor_value_info("y", f, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


@pytest.mark.parametrize("b,h,m,n,d,mask_shape", [
    (2, 8, 300, 300, 40, None),          # self-attention, head dim 40 like SD1.5's first level
    (2, 8, 256, 77, 40, None),           # cross-attention to 77 text tokens
    (1, 12, 77, 77, 64, (1, 1, 77, 77)),  # CLIP's causal mask
    (2, 1, 17, 600, 8, (2, 1, 17, 600)),
    (1, 2, 65, 130, 80, None),           # SD's second level head dim, odd M and N
    (1, 2, 20, 33, 160, (1, 2, 20, 33)),  # SD's third level head dim, masked
])
def test_fused_attention_matches_onnxruntime(b, h, m, n, d, mask_shape, tmp_path):
    path = tmp_path / "attn.onnx"
    onnx.save(attention_model(b, h, m, n, d, mask_shape), str(path))
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(s).astype(np.float32) * 2 for k, s in
             (("q", (b, h, m, d)), ("k", (b, h, n, d)), ("v", (b, h, n, d)))}
    if mask_shape is not None:
        feeds["mask"] = np.where(np.triu(np.ones(mask_shape[-2:]), 1) > 0, -1e9, 0).astype(np.float32) \
            * np.ones(mask_shape, np.float32)
    out = onnxstream.convert(path, tmp_path / "m")
    assert [n.op for n in load_graph(out).nodes].count("FusedAttention") == 1
    got = onnxstream.Session(out).run(feeds)["y"]
    assert rel_l2(got, onnxruntime_outputs(str(path), feeds)["y"]) < 1e-5


def test_fused_attention_with_nan_guard_and_fully_masked_rows(tmp_path):
    path = tmp_path / "attn.onnx"
    onnx.save(attention_model(1, 2, 5, 6, 4, (1, 1, 5, 6), nan_guard=True), str(path))
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal((1, 2, m, 4)).astype(np.float32) for k, m in (("q", 5), ("k", 6), ("v", 6))}
    mask = np.zeros((1, 1, 5, 6), np.float32)
    mask[..., 2, :] = -np.inf  # row 2 sees no key: softmax gives NaN, the guard turns it into 0
    feeds["mask"] = mask
    out = onnxstream.convert(path, tmp_path / "m")
    assert [n.op for n in load_graph(out).nodes] .count("FusedAttention") == 1
    want = onnxruntime_outputs(str(path), feeds)["y"]
    np.testing.assert_allclose(onnxstream.Session(out).run(feeds)["y"], want, rtol=1e-5, atol=1e-6)


# (b, h, m, n, d, masked): head dims of SD (40, 80, 160) and CLIP (64); odd M and N leave partial query blocks,
# microkernel tiles and 16-key panels; N > 256 crosses key tiles (the online softmax rescales).
KERNEL_CASES = [
    (1, 2, 33, 47, 40, False),
    (2, 3, 70, 300, 64, False),
    (1, 1, 17, 513, 80, False),
    (1, 2, 5, 7, 160, False),
    (1, 1, 1, 1, 40, False),
    (2, 2, 37, 290, 64, True),
    (1, 3, 77, 77, 64, True),
]


def check_attention_kernel(cases=KERNEL_CASES):
    """_core.attention on the dispatch path of this process vs onnxruntime on the unfused model."""
    from onnxstream import _core
    rng = np.random.default_rng(0)
    for b, h, m, n, d, masked in cases:
        q, k, v = (rng.standard_normal(s).astype(np.float32) * 2 for s in ((b, h, m, d), (b, h, n, d), (b, h, n, d)))
        feeds = {"q": q, "k": k, "v": v}
        mask4 = None
        if masked:  # causal (-inf above the diagonal, so later key tiles raise some rows' max) plus random biases
            causal = np.where(np.triu(np.ones((m, n)), 1) > 0, -np.inf, 0).astype(np.float32)
            feeds["mask"] = (causal + rng.standard_normal((b, 1, m, n)).astype(np.float32)).astype(np.float32)
            mask4 = np.broadcast_to(feeds["mask"], (b, h, m, n))
        model = attention_model(b, h, m, n, d, feeds["mask"].shape if masked else None, scale=d ** -0.5)
        want = onnxruntime_outputs(model, feeds)["y"]
        s = np.float32(d ** -0.25)
        kt = (k * s).transpose(0, 1, 3, 2)  # a strided view: the kernel packs it
        y = np.full((b, h, m, d), np.nan, np.float32)
        _core.attention(q * s, kt, v, mask4, y, False)
        err = rel_l2(y, want)
        assert err < 1e-5, f"{(b, h, m, n, d, masked)}: rel L2 {err:.2e}"


def test_attention_kernel_default_isa():
    check_attention_kernel()


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_attention_kernel_forced_isa(isa):
    """Each dispatch path (GEMM and softmax kernels), in a fresh process: the ISA is chosen once per process."""
    from onnxstream import _core  # noqa: F401  (skip cleanly if the module is not built)
    env = {**os.environ, "ONNXSTREAM_ISA": isa,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    probe = subprocess.run([sys.executable, "-c", "from onnxstream import _core; import numpy as n; "
                            "_core.matmul(n.ones((1,1,1),'f'), n.ones((1,1,1),'f'), None, n.empty((1,1,1),'f'))"],
                           env=env, capture_output=True, text=True)
    if "does not support" in probe.stderr or "not one of" in probe.stderr:
        pytest.skip(f"CPU cannot run ONNXSTREAM_ISA={isa}")
    out = subprocess.run([sys.executable, "-c", "import test_fusion as t; t.check_attention_kernel()"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def geglu_model(tokens=1024, dim=320, inner=1280, split_axis=-1):
    """SD's GEGLU feed-forward as exported: MatMul+bias -> Split -> a * gelu(b) via Erf -> MatMul+bias."""
    rng = np.random.default_rng(0)
    f = TensorProto.FLOAT
    w = lambda name, *s: numpy_helper.from_array((rng.standard_normal(s) * 0.05).astype(np.float32), name)  # noqa
    inits = [w("w1", dim, 2 * inner), w("b1", 2 * inner), w("w2", inner, dim), w("b2", dim),
             numpy_helper.from_array(np.array([inner, inner], np.int64), "sizes"),
             numpy_helper.from_array(np.array(2 ** 0.5, np.float32), "sqrt2"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"), numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h"]),
             helper.make_node("Split", ["h", "sizes"], ["a", "g"], axis=split_axis),
             helper.make_node("Div", ["g", "sqrt2"], ["g1"]), helper.make_node("Erf", ["g1"], ["g2"]),
             helper.make_node("Add", ["g2", "one"], ["g3"]), helper.make_node("Mul", ["g", "g3"], ["g4"]),
             helper.make_node("Mul", ["g4", "half"], ["gelu"]), helper.make_node("Mul", ["a", "gelu"], ["m"]),
             helper.make_node("MatMul", ["m", "w2"], ["y0"]), helper.make_node("Add", ["y0", "b2"], ["y"])]
    graph = helper.make_graph(nodes, "ff", [helper.make_tensor_value_info("x", f, [2, tokens, dim])],
                              [helper.make_tensor_value_info("y", f, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


@pytest.mark.parametrize("weights,split_axis", [("fp32", -1), ("fp16", -1), ("fp32", 2)])
def test_row_tiled_feed_forward_matches_onnxruntime(weights, split_axis, tmp_path):
    from reference import round_weights_to_fp16
    path = tmp_path / "ff.onnx"
    model = geglu_model(split_axis=split_axis)  # the dynamo exporter writes axis=2, the legacy one -1
    onnx.save(model, str(path))
    if weights == "fp16":
        round_weights_to_fp16(model)
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 1024, 320)).astype(np.float32)}
    out = onnxstream.convert(path, tmp_path / "m", weights=weights)
    graph = load_graph(out)
    assert [n.op for n in graph.nodes] == ["FusedRowTiled"]
    assert {w.name for w in graph.weights if w.layout} == {"w1", "w2"}  # packed once at convert time
    got = onnxstream.Session(out).run(feeds)["y"]
    assert rel_l2(got, onnxruntime_outputs(model, feeds)["y"]) < 1e-5


def gelu_model(order: str):
    """x * 0.5 * (1 + erf(x / sqrt 2)) in the spellings exporters use; x is also read by a second consumer."""
    f = TensorProto.FLOAT
    inits = [helper.make_tensor("r2", f, [], [2 ** 0.5]), helper.make_tensor("ir2", f, [], [2 ** -0.5]),
             helper.make_tensor("one", f, [], [1.0]), helper.make_tensor("half", f, [], [0.5])]
    scale = helper.make_node("Div", ["x", "r2"], ["s"]) if order != "mul_first" else \
        helper.make_node("Mul", ["x", "ir2"], ["s"])
    nodes = [scale, helper.make_node("Erf", ["s"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"])]
    if order == "half_last":    # (x * (1 + erf)) * 0.5
        nodes += [helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["g"])]
    elif order == "x_last":     # torch.onnx (dynamo): (0.5 * (1 + erf)) * x
        nodes += [helper.make_node("Mul", ["half", "a"], ["m"]), helper.make_node("Mul", ["x", "m"], ["g"])]
    else:                       # (x * 0.5) * (1 + erf)
        nodes += [helper.make_node("Mul", ["x", "half"], ["h"]), helper.make_node("Mul", ["h", "a"], ["g"])]
    nodes.append(helper.make_node("Add", ["g", "x"], ["y"]))
    graph = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", f, [3, 70, 33])],
                              [helper.make_tensor_value_info("y", f, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


@pytest.mark.parametrize("order", ["half_last", "x_last", "half_first", "mul_first"])
def test_fused_gelu_matches_onnxruntime(order, tmp_path):
    path = tmp_path / "gelu.onnx"
    onnx.save(gelu_model(order), str(path))
    out = onnxstream.convert(path, tmp_path / "m")
    ops = [n.op for n in load_graph(out).nodes]
    assert ops == ["Gelu", "Add"], ops
    x = np.random.default_rng(0).standard_normal((3, 70, 33)).astype(np.float32) * 3
    got = onnxstream.Session(out).run({"x": x})["y"]
    assert rel_l2(got, onnxruntime_outputs(str(path), {"x": x})["y"]) < 1e-6


def test_erf_pattern_with_other_constants_is_not_fused(tmp_path):
    """x * 0.5 * (1 + erf(x / 1.5)) is not GELU: it must stay as written and still match onnxruntime."""
    model = gelu_model("half_last")
    r2 = next(t for t in model.graph.initializer if t.name == "r2")
    r2.CopyFrom(helper.make_tensor("r2", TensorProto.FLOAT, [], [1.5]))
    path = tmp_path / "notgelu.onnx"
    onnx.save(model, str(path))
    out = onnxstream.convert(path, tmp_path / "m")
    ops = [n.op for n in load_graph(out).nodes]
    assert "Gelu" not in ops and "Erf" in ops, ops
    x = np.random.default_rng(0).standard_normal((3, 70, 33)).astype(np.float32) * 3
    got = onnxstream.Session(out).run({"x": x})["y"]
    assert rel_l2(got, onnxruntime_outputs(str(path), {"x": x})["y"]) < 1e-6
