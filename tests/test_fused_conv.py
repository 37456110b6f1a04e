"""FusedConv (fusion_conv.py + runtime/ops/fused_conv.py) against onnxruntime on the unfused graphs: a small
decoder exported from torch (GroupNorm+SiLU -> conv, residual adds, nearest upsample -> conv, a 1x1 shortcut),
run with every storage trick forced on small tensors, and Resize+Conv graphs built with onnx.helper."""
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import onnxstream
from onnxstream import fusion_conv, packing
from onnxstream.graph import load_graph
from onnxstream.runtime.ops import fused_conv
from reference import onnxruntime_outputs, rel_l2, round_weights_to_fp16


class Resnet(torch.nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = torch.nn.GroupNorm(4, cin, eps=1e-6), torch.nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = torch.nn.GroupNorm(4, cout, eps=1e-6), torch.nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = torch.nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.output_scale_factor = 1.0   # diffusers' ResnetBlock2D divides by it: the exporter keeps a Div by 1

    def forward(self, x):
        h = self.conv1(torch.nn.functional.silu(self.norm1(x)))
        h = self.conv2(torch.nn.functional.silu(self.norm2(h)))
        return ((self.shortcut(x) if self.shortcut is not None else x) + h) / self.output_scale_factor


class Decoder(torch.nn.Module):
    """SD's VAE decoder in miniature: what fusion_conv.py rewrites, in the order the real one has it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv_in = torch.nn.Conv2d(4, 32, 3, padding=1)
        self.res0 = Resnet(32, 32)
        self.up = torch.nn.Conv2d(32, 32, 3, padding=1)
        self.res1, self.res2 = Resnet(32, 16), Resnet(16, 16)
        self.norm_out, self.conv_out = torch.nn.GroupNorm(4, 16, eps=1e-6), torch.nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, z):
        x = self.res0(self.conv_in(z))
        x = self.up(torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))
        x = self.res2(self.res1(x))
        return self.conv_out(torch.nn.functional.silu(self.norm_out(x)))


@pytest.fixture(scope="module")
def decoder_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("decoder") / "decoder.onnx"
    torch.onnx.export(Decoder().eval(), (torch.randn(2, 4, 12, 10),), str(path), input_names=["z"],
                      output_names=["image"], opset_version=17, dynamo=False)
    return path


def _fused_attrs(model_dir):
    return [n.attrs for n in load_graph(model_dir).nodes if n.op in ("FusedConv", "FusedGroupNormScale")]


@pytest.mark.parametrize("weights", ["fp32", "fp16"])
@pytest.mark.parametrize("storage", ["float32", "float16", "recompute", "column_blocks"])
def test_decoder_matches_onnxruntime(decoder_onnx, weights, storage, tmp_path, monkeypatch):
    monkeypatch.setattr(fusion_conv, "SUBPIXEL_MIN_PIXELS", 0)
    monkeypatch.setattr(fusion_conv, "RESIDUAL_MIN_BYTES", 0)
    if storage == "column_blocks":   # weights read 16 output channels at a time, sub-pixel ones included
        monkeypatch.setattr(packing, "COLUMN_BLOCK_BYTES", 1 << 10)
    monkeypatch.setattr(fusion_conv, "FP16_MIN_BYTES", 1 << 40 if storage == "float32" else 0)
    monkeypatch.setattr(fusion_conv, "RECOMPUTE_MIN_BYTES", 0 if storage == "recompute" else 1 << 40)
    monkeypatch.setattr(fused_conv, "BAND_BYTES", 1 << 12)   # a few rows per band: halos and reuse everywhere
    feeds = {"z": np.random.default_rng(1).standard_normal((2, 4, 12, 10)).astype(np.float32)}
    model = onnx.load(str(decoder_onnx))
    if weights == "fp16":
        round_weights_to_fp16(model)
    want = onnxruntime_outputs(model, feeds)["image"]
    out = onnxstream.convert(decoder_onnx, tmp_path / "m", weights=weights)
    got = onnxstream.Session(out).run(feeds)["image"]
    attrs = _fused_attrs(out)
    assert not [n.op for n in load_graph(out).nodes if n.op in ("Div", "Add")]   # x / 1 dropped, adds in convs
    assert sum(a.get("subpixel", 1) == 2 for a in attrs) == 1   # the upsample conv, or (recompute) the shortcut
    assert sum(a.get("activation") == "silu" for a in attrs) == 7   # every GroupNorm+SiLU went into a conv
    assert any(a.get("inplace") == "residual" for a in attrs) and any(a.get("inplace") == "input" for a in attrs)
    if storage == "column_blocks":
        blocked = [w.name for w in load_graph(out).weights if w.cols_per_block]
        assert len(blocked) >= 4 and any(fusion_conv.SUFFIX in n for n in blocked), blocked
    if storage == "recompute":   # the upsampled conv's output is recomputed by 2 readers, the 1x1 shortcut composed
        assert sum(bool(a.get("src")) for a in attrs) == 2
        assert sum(a.get("keep_bytes", 0) > 0 for a in attrs) == 1   # the statistics pass keeps the first rows
    assert got.shape == want.shape
    err = rel_l2(got, want)
    # float16 weights: the sub-pixel weights (sums of the rounded taps) are rounded again
    tolerance = 3e-3 if storage != "float32" else 1e-5 if weights == "fp32" else 5e-4
    assert err < tolerance, f"relative L2 error {err:.2e}"


def resize_conv_model(shape, scales, mode_attrs, kernel, pads, out_channels=8):
    """x -> Resize(nearest, scales) -> Conv(kernel, pads) built with onnx.helper."""
    rng = np.random.default_rng(2)
    f = TensorProto.FLOAT
    w = rng.standard_normal((out_channels, shape[1], kernel, kernel)).astype(np.float32) * 0.2
    b = rng.standard_normal(out_channels).astype(np.float32)
    inits = [numpy_helper.from_array(np.array(scales, np.float32), "scales"), numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(b, "b")]
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["up"], mode="nearest", **mode_attrs),
             helper.make_node("Conv", ["up", "w", "b"], ["y"], pads=[pads] * 4, kernel_shape=[kernel, kernel])]
    graph = helper.make_graph(nodes, "up", [helper.make_tensor_value_info("x", f, list(shape))],
                              [helper.make_tensor_value_info("y", f, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


@pytest.mark.parametrize("scale,kernel,pads,mode_attrs,fused", [
    (2, 3, 1, {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, True),   # torch's
    (2, 3, 1, {}, True),                               # half_pixel + round_prefer_floor is floor(o/2) too at s=2
    (2, 5, 2, {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, True),
    (3, 3, 1, {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, False),  # phases differ
    (2, 3, 1, {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "ceil"}, False),   # not floor(o/s)
])
def test_resize_conv_matches_onnxruntime(scale, kernel, pads, mode_attrs, fused, tmp_path, monkeypatch):
    monkeypatch.setattr(fusion_conv, "SUBPIXEL_MIN_PIXELS", 0)
    shape = (2, 6, 7, 9)
    path = tmp_path / "m.onnx"
    onnx.save(resize_conv_model(shape, [1, 1, scale, scale], mode_attrs, kernel, pads), str(path))
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    want = onnxruntime_outputs(str(path), {"x": x})["y"]
    out = onnxstream.convert(path, tmp_path / "m")
    assert any(a.get("subpixel") == scale for a in _fused_attrs(out)) == fused
    got = onnxstream.Session(out).run({"x": x})["y"]
    assert got.shape == want.shape and rel_l2(got, want) < 1e-5


def test_fused_conv_errors():
    x = np.zeros((1, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match="channels"):
        fused_conv.FusedConv(x, np.zeros((2, 3, 3, 3), np.float32), kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="norm"):
        fused_conv.FusedConv(x, np.zeros((2, 4, 3, 3), np.float32), None, np.zeros((1, 2, 3), np.float32),
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="inplace"):
        fused_conv.FusedConv(x, np.zeros((2, 4, 3, 3), np.float32), kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                             inplace="input")
