"""The normalizations (and upsampling) Stable Diffusion depends on, against torch.nn.functional on random data."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from onnxstream.runtime.ops import norm, resize


def _rel_err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("eps", [1e-5, 1e-6])
@pytest.mark.parametrize("opset", [18, 21])
def test_group_norm_sd_shape(eps, opset):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 320, 32, 32)) * 3 + 1.5).astype(np.float32)
    scale = rng.standard_normal(320).astype(np.float32)
    bias = rng.standard_normal(320).astype(np.float32)
    want = F.group_norm(torch.from_numpy(x).double(), 32, torch.from_numpy(scale).double(),
                        torch.from_numpy(bias).double(), eps).numpy()
    if opset < 21:  # opset 18 takes one scale/bias per group: use per-group values and expand for torch
        gs, gb = scale[::10].copy(), bias[::10].copy()
        want = F.group_norm(torch.from_numpy(x).double(), 32, torch.from_numpy(np.repeat(gs, 10)).double(),
                            torch.from_numpy(np.repeat(gb, 10)).double(), eps).numpy()
        got = norm.GroupNormalization(x, gs, gb, num_groups=32, epsilon=eps, _opset=opset)
    else:
        got = norm.GroupNormalization(x, scale, bias, num_groups=32, epsilon=eps, _opset=opset)
    assert got.dtype == np.float32 and got.shape == x.shape
    assert _rel_err(got, want) < 1e-5


def test_layer_norm_clip_shape():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 77, 768)) * 2 - 0.7).astype(np.float32)
    scale = rng.standard_normal(768).astype(np.float32)
    bias = rng.standard_normal(768).astype(np.float32)
    want = F.layer_norm(torch.from_numpy(x).double(), (768,), torch.from_numpy(scale).double(),
                        torch.from_numpy(bias).double(), 1e-5).numpy()
    y, mean, inv_std = norm.LayerNormalization(x, scale, bias, axis=-1, epsilon=1e-5, _num_results=3)
    assert y.shape == x.shape and mean.shape == (2, 77, 1) and inv_std.shape == (2, 77, 1)
    assert _rel_err(y, want) < 1e-5
    np.testing.assert_allclose(mean[..., 0], x.astype(np.float64).mean(-1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_sd_upsample(mode):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 64, 16, 16)).astype(np.float32)
    scales = np.array([1, 1, 2, 2], np.float32)
    if mode == "nearest":
        got = resize.Resize(x, None, scales, mode="nearest", coordinate_transformation_mode="asymmetric",
                            nearest_mode="floor")
        want = F.interpolate(torch.from_numpy(x), scale_factor=2.0, mode="nearest").numpy()
        np.testing.assert_array_equal(got, want)
    else:
        got = resize.Resize(x, None, scales, mode="linear", coordinate_transformation_mode="half_pixel")
        want = F.interpolate(torch.from_numpy(x), scale_factor=2.0, mode="bilinear", align_corners=False).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
