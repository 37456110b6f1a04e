"""Float16 activation storage never overflows silently (fp16_range.py, runtime/ops/fused_conv.py).

A diffusers VAE decoder with random weights whose conv_in is scaled up by 2^18 carries activations beyond float16's
65504 through its residual stream (as SDXL's VAE does at real scale), then normalizes them away before the
output. Converted with every conv output stored as float16: without calibration the engine must refuse (an error,
never inf or NaN in the image); calibrated on sample latents, the overflowing tensors are stored scaled by powers of
two (or as float32 where a scale cannot be folded) and the image matches onnxruntime's float32 decode.
"""
import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import onnxstream  # noqa: E402
from onnxstream import fusion_conv  # noqa: E402
from onnxstream.graph import load_graph  # noqa: E402
from onnxstream.runtime.ops import fused_conv  # noqa: E402
from reference import onnxruntime_outputs, rel_l2, round_weights_to_fp16  # noqa: E402

LATENT = (1, 4, 12, 10)
BOOST = 2.0 ** 18


class Decoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample, return_dict=False)[0]


@pytest.fixture(scope="module")
def overflowing_decoder(tmp_path_factory):
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8).eval()
    with torch.no_grad():
        vae.decoder.conv_in.weight.mul_(BOOST)
        vae.decoder.conv_in.bias.mul_(BOOST)
    path = tmp_path_factory.mktemp("vae") / "decoder.onnx"
    torch.onnx.export(Decoder(vae), (torch.zeros(LATENT),), str(path), input_names=["latent_sample"],
                      output_names=["sample"], opset_version=17, dynamo=False)
    feeds = {"latent_sample": np.random.default_rng(5).standard_normal(LATENT).astype(np.float32)}
    peak = []
    with torch.no_grad():
        x = vae.decoder.conv_in(torch.from_numpy(feeds["latent_sample"]))
        peak.append(float(x.abs().max()))
    assert peak[0] > 4 * 65504   # the residual stream is beyond float16's range
    return path, feeds


@pytest.fixture
def all_float16(monkeypatch):
    monkeypatch.setattr(fusion_conv, "FP16_MIN_BYTES", 0)
    monkeypatch.setattr(fusion_conv, "SUBPIXEL_MIN_PIXELS", 0)
    monkeypatch.setattr(fusion_conv, "RESIDUAL_MIN_BYTES", 0)   # the residual adds inside the float16 convs
    monkeypatch.setattr(fused_conv, "BAND_BYTES", 1 << 13)   # several bands per tensor


def _calibration(seed):
    return {"latent_sample": np.random.default_rng(seed).standard_normal(LATENT).astype(np.float32)}


def test_uncalibrated_overflow_is_an_error(overflowing_decoder, all_float16, tmp_path):
    path, feeds = overflowing_decoder
    out = onnxstream.convert(path, tmp_path / "m")
    assert any(n.attrs.get("out_dtype") == "float16" for n in load_graph(out).nodes)
    with pytest.raises(FloatingPointError, match="overflowed"):
        onnxstream.Session(out).run(feeds)


@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("weights", ["fp32", "fp16"])
def test_calibrated_storage_matches_onnxruntime(overflowing_decoder, all_float16, monkeypatch, tmp_path, weights,
                                                recompute):
    path, feeds = overflowing_decoder
    monkeypatch.setattr(fusion_conv, "RECOMPUTE_MIN_BYTES", 0 if recompute else 1 << 40)
    model = onnx.load(str(path))
    if weights == "fp16":
        round_weights_to_fp16(model)
    want = onnxruntime_outputs(model, feeds)["sample"]
    out = onnxstream.convert(path, tmp_path / "m", weights=weights, calibration=[_calibration(1), _calibration(2)])
    nodes = load_graph(out).nodes
    stored16 = [n for n in nodes if n.op == "FusedConv" and n.attrs.get("out_dtype") == "float16"]
    assert stored16   # float16 storage is still used where it fits
    got = onnxstream.Session(out).run(feeds)["sample"]
    assert np.isfinite(got).all()
    err = rel_l2(got, want)
    psnr = 20 * np.log10((want.max() - want.min()) / np.sqrt(np.mean((got.astype(np.float64) - want) ** 2)))
    print(f"{weights} recompute={recompute}: rel L2 {err:.2e}, PSNR {psnr:.1f} dB, "
          f"{len(stored16)} float16 tensors")
    assert err < 5e-3 and psnr > 50


def test_calibration_keeps_in_range_models_unchanged(tmp_path, all_float16):
    """A decoder whose activations fit float16 converts to the same graph and weights with or without calibration."""
    from diffusers import AutoencoderKL
    torch.manual_seed(1)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(16, 16), layers_per_block=1, norm_num_groups=8).eval()
    path = tmp_path / "small.onnx"
    torch.onnx.export(Decoder(vae), (torch.zeros(LATENT),), str(path), input_names=["latent_sample"],
                      output_names=["sample"], opset_version=17, dynamo=False)
    plain = onnxstream.convert(path, tmp_path / "plain")
    calibrated = onnxstream.convert(path, tmp_path / "calibrated", calibration=[_calibration(3)])
    assert (plain / "weights.bin").read_bytes() == (calibrated / "weights.bin").read_bytes()
    assert (plain / "graph.json").read_text() == (calibrated / "graph.json").read_text()
