"""The C++-backed ops of the new op groups at shapes beyond the conformance cases' (key tiles, grouped heads,
partial rotations, out-of-range grid points): Attention, RMSNormalization and RotaryEmbedding vs onnxruntime,
GridSample vs onnxruntime and torch.nn.functional.grid_sample."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxstream
from reference import onnxruntime_outputs

RNG = np.random.default_rng(0)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def run_both(tmp_path, op, feeds, outputs=("y",), consts=None, opset=23, **attrs):
    """The single-node model run by onnxstream and onnxruntime: {output: (ours, theirs)}."""
    consts = consts or {}
    names = list(feeds) + list(consts)
    node = helper.make_node(op, attrs.pop("_inputs", names), list(outputs), **attrs)
    elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
            np.dtype(np.bool_): TensorProto.BOOL}
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, elem[v.dtype], v.shape) for n, v in feeds.items()],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs if o],
                              [numpy_helper.from_array(v, n) for n, v in consts.items()])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    ours = onnxstream.Session(onnxstream.convert(path, tmp_path / "m")).run(feeds)
    theirs = onnxruntime_outputs(str(path), feeds)
    return {o: (ours[o], theirs[o]) for o in outputs if o}


def close(pairs, rtol=1e-4, atol=1e-5):
    for name, (ours, theirs) in pairs.items():
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, name
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=name)


# ---------------------------------------------------------------- Attention

ATTENTION = {
    # 8 query heads over 2 key/value heads, 300 keys (two 256-key tiles), causal after a 263-step past
    "gqa_causal_past": dict(q=(1, 8, 37, 32), k=(1, 2, 37, 32), v=(1, 2, 37, 48), past=263, is_causal=1),
    # 3-D inputs, a boolean [M, N] mask
    "3d_bool_mask": dict(q=(2, 20, 64), k=(2, 30, 64), v=(2, 30, 64), mask=("bool", (20, 30)), q_num_heads=4,
                         kv_num_heads=4),
    # a float mask per query head with grouped heads
    "gqa_head_mask": dict(q=(2, 6, 17, 16), k=(2, 3, 40, 16), v=(2, 3, 40, 16), mask=("float", (2, 6, 17, 40))),
    # a [B, 1, M, N] mask, scale given
    "mask_scale": dict(q=(3, 2, 9, 8), k=(3, 2, 12, 8), v=(3, 2, 12, 8), mask=("float", (3, 1, 9, 12)), scale=0.3),
    # softcap and the post-softmax scores as a fourth output
    "softcap_probs": dict(q=(1, 2, 9, 8), k=(1, 2, 12, 8), v=(1, 2, 12, 8), softcap=2.0, qk_matmul_output_mode=3,
                          is_causal=1),
}


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_attention_matches_onnxruntime(name, tmp_path):
    cfg = dict(ATTENTION[name])
    feeds = {"q": randn(*cfg.pop("q")), "k": randn(*cfg.pop("k")), "v": randn(*cfg.pop("v"))}
    inputs = ["q", "k", "v"]
    mask = cfg.pop("mask", None)
    if mask:
        kind, shape = mask
        feeds["mask"] = RNG.random(shape) > 0.3 if kind == "bool" else randn(*shape)
        if kind == "bool":
            feeds["mask"][..., 0] = True  # every query sees a key (ORT and ONNX differ on fully masked rows)
    inputs.append("mask" if mask else "")
    past = cfg.pop("past", 0)
    if past:
        b, h, _, d = feeds["k"].shape
        feeds["past_k"], feeds["past_v"] = randn(b, h, past, d), randn(b, h, past, feeds["v"].shape[3])
        inputs += ["past_k", "past_v"]
    outputs = ["y", "present_k", "present_v"] if past else ["y"]
    if cfg.get("qk_matmul_output_mode"):
        outputs = ["y", "", "", "qk"]
    close(run_both(tmp_path, "Attention", feeds, outputs, _inputs=inputs, **cfg))


# ---------------------------------------------------------------- RMSNormalization, RotaryEmbedding

@pytest.mark.parametrize("shape, axis", [((3, 7, 1000), -1), ((2, 4, 5, 6), 1), ((64, 4096), -1)])
def test_rms_normalization_matches_onnxruntime(shape, axis, tmp_path):
    scale = randn(*shape[axis:])
    close(run_both(tmp_path, "RMSNormalization", {"x": randn(*shape) * 3}, consts={"s": scale}, axis=axis,
                   epsilon=1e-6))


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("layout", ["4d", "3d_partial"])
def test_rotary_embedding_matches_onnxruntime(layout, interleaved, tmp_path):
    if layout == "4d":
        x, rotary, attrs = randn(2, 4, 33, 64), 64, {}
    else:  # [B, S, H * D] with 8 heads of 32, the first 16 features rotated
        x, rotary, attrs = randn(2, 33, 8 * 32), 16, {"num_heads": 8, "rotary_embedding_dim": 16}
    angles = np.arange(100)[:, None] * (10000.0 ** (-np.arange(rotary // 2) / (rotary // 2)))[None, :]
    feeds = {"x": x, "pos": RNG.integers(0, 100, (2, 33)).astype(np.int64)}
    consts = {"cos": np.cos(angles).astype(np.float32), "sin": np.sin(angles).astype(np.float32)}
    # The inputs are (X, cos, sin, position_ids): the caches are constants between the two feeds.
    node = helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"], interleaved=interleaved, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
                                            helper.make_tensor_value_info("pos", TensorProto.INT64, [2, 33])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, n) for n, v in consts.items()])
    path = tmp_path / "rope.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)]), str(path))
    ours = onnxstream.Session(onnxstream.convert(path, tmp_path / "rope")).run(feeds)["y"]
    close({"y": (ours, onnxruntime_outputs(str(path), feeds)["y"])}, rtol=1e-5)


# ---------------------------------------------------------------- GridSample

def grid_sample_model(tmp_path, x, grid, **attrs):
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
                                            helper.make_tensor_value_info("grid", TensorProto.FLOAT, grid.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "gs.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)]), str(path))
    ours = onnxstream.Session(onnxstream.convert(path, tmp_path / "gs")).run({"x": x, "grid": grid})["y"]
    return path, ours


@pytest.mark.parametrize("align_corners", [0, 1])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_grid_sample_matches_onnxruntime_and_torch(mode, padding, align_corners, tmp_path):
    """Grid points up to 40% outside the image. torch agrees except for cubic with border or reflection padding:
    it pads each tap, where ONNX (and onnxruntime) first move the point inside."""
    x, grid = randn(2, 3, 11, 13), RNG.uniform(-1.4, 1.4, (2, 7, 9, 2)).astype(np.float32)
    path, ours = grid_sample_model(tmp_path, x, grid, mode=mode, padding_mode=padding, align_corners=align_corners)
    np.testing.assert_allclose(ours, onnxruntime_outputs(str(path), {"x": x, "grid": grid})["y"], rtol=1e-4,
                               atol=1e-5)
    if mode == "cubic" and padding != "zeros":
        return
    torch = pytest.importorskip("torch")
    want = torch.nn.functional.grid_sample(torch.from_numpy(x), torch.from_numpy(grid),
                                           mode={"linear": "bilinear", "cubic": "bicubic"}.get(mode, mode),
                                           padding_mode=padding, align_corners=bool(align_corners)).numpy()
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_grid_sample_3d_matches_torch(mode, tmp_path):
    torch = pytest.importorskip("torch")
    x, grid = randn(1, 2, 5, 6, 7), RNG.uniform(-1.2, 1.2, (1, 3, 4, 5, 3)).astype(np.float32)
    _, ours = grid_sample_model(tmp_path, x, grid, mode=mode, padding_mode="border")
    want = torch.nn.functional.grid_sample(torch.from_numpy(x), torch.from_numpy(grid),
                                           mode="bilinear" if mode == "linear" else mode, padding_mode="border",
                                           align_corners=False).numpy()
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-5)
