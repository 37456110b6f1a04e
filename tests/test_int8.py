"""int8 weights (--weights int8): MatMul/Gemm/Conv weights stored as int8 panels with per-output-channel scales
(cpp/ops/qc8w.h). The quantizer matches a numpy reference byte for byte; converted models match onnxruntime running
the same model with each quantized weight replaced by its dequantized values (tight), and stay near the original
float32 model (loose: the quantization error itself, printed); the model directory is about 1/4 of fp32's."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelzoo
import onnxstream
from onnxstream import _core, packing
from onnxstream.graph import block_nbytes, column_blocks
from onnxstream.graph import WEIGHTS_FILE, load_graph
from onnxstream.graph import LAYOUT_QC8W
from onnxstream.packing import pack_conv, pack_gemm_b_qc8w
from reference import onnxruntime_outputs, rel_l2, round_weights_to_fp16

DEQUANTIZED_TOLERANCE = 1e-4   # vs onnxruntime on the dequantized weights: only float rounding differs
FP32_TOLERANCE = 5e-2          # vs the float32 model: int8 quantization error, loose so a broken quantizer fails


def reference_qc8w(b: np.ndarray) -> np.ndarray:
    """[K, N] float32 -> the qc8w blob, written out in numpy: symmetric per-column int8, panels then scales."""
    K, N = b.shape
    scale = np.abs(b).max(axis=0) / np.float32(127) if K else np.zeros(N, np.float32)
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    q = np.clip(np.round(b / scale), -127, 127).astype(np.int8)
    width = -(-N // 16) * 16
    panels = np.zeros((K, width), np.int8)
    panels[:, :N] = q
    scales = np.zeros(width, np.float32)
    scales[:N] = scale
    return np.concatenate([panels.reshape(K, -1, 16).transpose(1, 0, 2).reshape(-1), scales.view(np.int8)])


def dequantize_blob(blob: np.ndarray, K: int, N: int) -> np.ndarray:
    """A qc8w blob -> the [K, N] float32 weights it stands for (q * scale)."""
    offset = _core.qc8w_scales_offset(K, N)
    q = blob[:offset].reshape(-1, K, 16).transpose(1, 0, 2).reshape(K, -1)[:, :N]
    return q.astype(np.float32) * blob[offset:offset + 4 * N].view(np.float32)


def dequantized_weights(model_dir) -> dict:
    """Name -> dequantized value in its ONNX shape, for every weight the model directory stores as qc8w."""
    graph = load_graph(model_dir)
    raw = np.fromfile(model_dir / WEIGHTS_FILE, np.int8)
    out = {}
    for w in graph.weights:
        if w.layout != LAYOUT_QC8W:
            continue
        if w.cols_per_block:  # column blocks [n0, n1) stored one after another, each a blob of its own
            offset, parts = w.offset, []
            for n0, n1 in column_blocks(w):
                size = block_nbytes(w, n0, n1)
                parts.append(dequantize_blob(raw[offset:offset + size], w.k, n1 - n0))
                offset += size
            b = np.concatenate(parts, axis=1)
        elif len(w.shape) >= 3:  # Conv: per group the [K, M/group] operand
            b = np.concatenate([dequantize_blob(g, w.k, w.n) for g in
                                raw[w.offset:w.offset + w.nbytes].reshape(w.shape[0] // w.n, -1)], axis=1)
        else:
            b = dequantize_blob(raw[w.offset:w.offset + w.nbytes], w.k, w.n)
        if len(w.shape) >= 3:  # Conv: element (k, m) of a group's operand is w[m, k]
            out[w.name] = b.T.reshape(w.shape)
        else:
            out[w.name] = b.T if w.transposed else b
    return out


def replace_weights(model, values: dict) -> None:
    """Put values (name -> array) in place of the model's initializers or Constant outputs of those names."""
    left = dict(values)
    for t in model.graph.initializer:
        if t.name in left:
            t.CopyFrom(numpy_helper.from_array(left.pop(t.name), t.name))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] in left:
            for attr in node.attribute:
                if attr.name == "value":
                    attr.t.CopyFrom(numpy_helper.from_array(left.pop(node.output[0])))
    # Folded at convert time (e.g. Transpose of an initializer): feed the consumers a new initializer instead.
    for name, value in left.items():
        model.graph.initializer.append(numpy_helper.from_array(value, name + "__dequantized"))
        for node in model.graph.node:
            node.input[:] = [name + "__dequantized" if i == name else i for i in node.input]


# ---------------------------------------------------------------- the quantizer

@pytest.mark.parametrize("K,N", [(1, 1), (7, 16), (33, 17), (64, 50), (5, 48), (300, 33)])
def test_quantizer_matches_reference(K, N):
    b = np.random.default_rng(K * 100 + N).standard_normal((N, K)).astype(np.float32).T  # a strided view
    b[:, 0] = 0  # an all-zero column gets scale 1
    assert pack_gemm_b_qc8w(b).tobytes() == reference_qc8w(b).tobytes()


def test_conv_quantizer_groups():
    w = np.random.default_rng(1).standard_normal((6, 2, 3, 3)).astype(np.float32)
    expect = np.concatenate([reference_qc8w(g.reshape(3, -1).T) for g in w.reshape(2, 3, 2, 3, 3)])
    assert pack_conv(w, group=2, pack=pack_gemm_b_qc8w).tobytes() == expect.tobytes()


def test_quantizer_rejects_non_finite():
    b = np.ones((4, 20), np.float32)
    b[2, 17] = np.nan
    with pytest.raises(ValueError, match="inf or NaN"):
        pack_gemm_b_qc8w(b)


def test_matmul_packed_checks_blob_size():
    blob = pack_gemm_b_qc8w(np.ones((8, 20), np.float32))
    y = np.empty((1, 3, 20), np.float32)
    with pytest.raises(ValueError, match="qc8w_blob_bytes"):
        _core.matmul_packed(np.ones((1, 3, 8), np.float32), blob[:-16], 8, 20, None, y)


# ---------------------------------------------------------------- whole models

def _small_model():
    """Conv (bias, padding, stride, group 2), MatMul, Gemm transB 0 and 1: every packed weight use."""
    rng = np.random.default_rng(2)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    f = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["y", "w2"], ["z"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["z", "w3", "b3"], ["c"], group=2),
             helper.make_node("Reshape", ["c", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "m"], ["h"]),
             helper.make_node("Gemm", ["h", "g0", "c0"], ["h2"], transB=0),
             helper.make_node("Gemm", ["h2", "g1", "c1"], ["o"], transB=1)]
    inits = {"w": r(40, 8, 3, 3), "b": r(40), "w2": r(24, 40, 3, 3), "w3": r(18, 12, 1, 1), "b3": r(18),
             "shape": np.array([2, -1], np.int64), "m": r(18 * 5 * 6, 70), "g0": r(70, 33), "c0": r(33),
             "g1": r(20, 33), "c1": r(20)}
    graph = helper.make_graph(nodes, "g", [f("x", [2, 8, 9, 11])], [f("o", None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), {"x": r(2, 8, 9, 11)}


def check_int8_model(path, feeds, tmp_path, label):
    out_dir = onnxstream.convert(path, tmp_path / "int8", weights="int8")
    quantized = dequantized_weights(out_dir)
    assert quantized, "no weight was stored as int8"
    got = onnxstream.Session(out_dir).run(feeds)

    original = onnx.load(str(path))
    expect_fp32 = onnxruntime_outputs(original, feeds)
    model = onnx.load(str(path))
    round_weights_to_fp16(model)  # the weights int8 leaves alone follow the fp16 rule
    replace_weights(model, quantized)
    expect = onnxruntime_outputs(model, feeds)

    assert set(got) == set(expect)
    for key, want in expect.items():
        err, err_fp32 = rel_l2(got[key], want), rel_l2(got[key], expect_fp32[key])
        print(f"{label} {key}: relative L2 vs dequantized {err:.2e}, vs fp32 {err_fp32:.2e} "
              f"({len(quantized)} int8 weights)")
        assert err < DEQUANTIZED_TOLERANCE, f"{label} {key}: relative L2 error {err:.2e} vs the dequantized model"
        assert err_fp32 < FP32_TOLERANCE, f"{label} {key}: relative L2 error {err_fp32:.2e} vs the fp32 model"


def test_small_model_int8(tmp_path):
    model, feeds = _small_model()
    onnx.save(model, tmp_path / "m.onnx")
    check_int8_model(tmp_path / "m.onnx", feeds, tmp_path, "small")
    assert {w.name for w in load_graph(tmp_path / "int8").weights if w.layout == LAYOUT_QC8W} == \
        {"w", "w2", "w3", "m", "g0", "g1"}


def test_cli_convert_int8(tmp_path):
    from onnxstream.cli import main
    model, feeds = _small_model()
    onnx.save(model, tmp_path / "m.onnx")
    assert main(["convert", str(tmp_path / "m.onnx"), str(tmp_path / "out"), "--weights", "int8"]) == 0
    graph = load_graph(tmp_path / "out")
    assert graph.metadata["weights"] == "int8"
    assert sum(w.layout == LAYOUT_QC8W and w.dtype == "int8" for w in graph.weights) == 6


MODELS = ["tiny_unet", "tiny_vae_decoder", "tiny_text_encoder", "small_cnn", "bert_encoder"]


@pytest.mark.parametrize("exporter", modelzoo.EXPORTERS)
@pytest.mark.parametrize("name", MODELS)
def test_model_int8(name, exporter, tmp_path):
    check_int8_model(modelzoo.export(name, exporter), modelzoo.inputs(name), tmp_path, f"{name}/{exporter}")


@pytest.mark.parametrize("name", ["tiny_unet", "bert_encoder", "small_cnn"])
def test_model_int8_column_blocks(name, tmp_path, monkeypatch):
    """int8 weights stored as column blocks (made small here so tiny models have them), each a blob of its own."""
    monkeypatch.setattr(packing, "COLUMN_BLOCK_BYTES", 4096)
    check_int8_model(modelzoo.export(name, "dynamo"), modelzoo.inputs(name), tmp_path, f"{name}/blocks")
    blocked = [w for w in load_graph(tmp_path / "int8").weights if w.cols_per_block]
    assert blocked and all(w.layout == LAYOUT_QC8W for w in blocked)


def test_int8_model_is_a_quarter_of_fp32(tmp_path):
    rng = np.random.default_rng(3)
    f = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["y", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "m"], ["o"])]
    inits = {"w": rng.standard_normal((256, 64, 3, 3)).astype(np.float32), "shape": np.array([1, -1], np.int64),
             "m": rng.standard_normal((256 * 4 * 4, 512)).astype(np.float32)}
    graph = helper.make_graph(nodes, "g", [f("x", [1, 64, 4, 4])], [f("o", None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "m.onnx")
    sizes = {}
    for fmt in ("fp32", "int8"):
        out = onnxstream.convert(tmp_path / "m.onnx", tmp_path / fmt, weights=fmt)
        sizes[fmt] = sum(p.stat().st_size for p in out.iterdir())
    ratio = sizes["int8"] / sizes["fp32"]
    print(f"int8 / fp32 model directory size: {ratio:.3f}")
    assert 0.24 < ratio < 0.27


def test_int8_keeps_a_weight_with_outliers_in_float16(tmp_path):
    """A 1x1 conv whose columns each hold one large weight (as in PP-OCR's recognizer): per-column int8 would round
    every other weight of the column to a few levels, so --weights int8 stores that conv as float16 and the output
    stays close to float32; an ordinary conv beside it is still int8."""
    rng = np.random.default_rng(5)
    w_plain = rng.standard_normal((32, 16, 1, 1)).astype(np.float32)
    w_outlier = rng.standard_normal((32, 32, 1, 1)).astype(np.float32) * 0.02
    w_outlier[np.arange(32), rng.integers(0, 32, 32)] = 40.0
    assert packing.int8_column_error(w_plain, ("conv", 1)) <= packing.INT8_MAX_COLUMN_ERROR
    assert packing.int8_column_error(w_outlier, ("conv", 1)) > packing.INT8_MAX_COLUMN_ERROR
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"]), helper.make_node("Conv", ["h", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w_plain, "w1"), numpy_helper.from_array(w_outlier, "w2")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    onnxstream.convert(path, tmp_path / "int8", weights="int8")
    layouts = {w.name: (w.layout, w.dtype) for w in load_graph(tmp_path / "int8").weights}
    assert layouts["w1"] == (LAYOUT_QC8W, "int8") and layouts["w2"] == (packing.LAYOUT, "float16")
    x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
    err = rel_l2(onnxstream.Session(tmp_path / "int8").run({"x": x})["y"], onnxruntime_outputs(str(path), {"x": x})["y"])
    print(f"int8 with the outlier conv kept in float16: {err:.1e}")
    assert err < 2e-2
