"""TAESD (diffusers' AutoencoderTiny) beside the full VAE: `convert --tiny-vae`, `sd --decoder taesd`, previews.

The tiny autoencoder has its real config (madebyollin/taesd's shapes) with random weights, saved with
save_pretrained as a local directory (the hub is unreachable here), scaled so that its images and latents are
not constant. References: diffusers' AutoencoderTiny for the converted parts, and diffusers' pipelines with
`pipe.vae = AutoencoderTiny(...)` for whole txt2img / img2img runs, within 2/255.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("onnxruntime")

from onnxstream.cli import main as cli_main  # noqa: E402
from onnxstream.converter import convert  # noqa: E402
from onnxstream.pipelines.convert_pipeline import convert_pipeline  # noqa: E402
from onnxstream.pipelines.export_tiny_vae import export_tiny_vae  # noqa: E402
from onnxstream.pipelines.stable_diffusion import StableDiffusion  # noqa: E402
from onnxstream.runtime.executor import Session  # noqa: E402
from reference import rel_l2  # noqa: E402
from test_pipeline import (CACHE, NEGATIVE, PROMPT, TOLERANCE, TorchNoise, diffusers_scheduler,  # noqa: E402
                           init_image, load_reference, png_pixels)
from child_env import child_env  # noqa: E402
from test_pipeline import diffusers_dir, onnx_model  # noqa: E402,F401  (fixtures)


def build_taesd(out: Path):
    """AutoencoderTiny with madebyollin/taesd's config; random He-scaled conv weights (the default init decodes to
    a near-constant image), the decoder's last bias centring pixels at 0.5, the encoder's output near unit scale."""
    from diffusers import AutoencoderTiny
    torch.manual_seed(0)
    vae = AutoencoderTiny()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in vae.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.6 * (2 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
        vae.decoder.layers[-1].bias.fill_(0.5)
        vae.encoder.layers[-1].weight.mul_(10)
    work = Path(tempfile.mkdtemp(prefix=".taesd-", dir=out.parent))
    vae.save_pretrained(work / "taesd")  # safetensors
    os.replace(work / "taesd", out)
    shutil.rmtree(work)


@pytest.fixture(scope="session")
def taesd_dir():
    out = CACHE / "taesd-random"
    if not out.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
        build_taesd(out)
    return out


def taesd_torch(taesd_dir):
    from diffusers import AutoencoderTiny
    return AutoencoderTiny.from_pretrained(taesd_dir).eval()


@pytest.fixture(scope="session")
def taesd_engine(onnx_model, taesd_dir, tmp_path_factory):
    """The tiny pipeline's ONNX parts converted with --tiny-vae: the full VAE and TAESD side by side."""
    out = tmp_path_factory.mktemp("taesd") / "tiny-taesd"
    return convert_pipeline(onnx_model, out, tiny_vae=taesd_dir)


@pytest.fixture(scope="session")
def taesd_onnx(onnx_model, taesd_dir, tmp_path_factory):
    """The same kept as ONNX exports (run with onnxruntime): the exported graphs themselves."""
    return convert_pipeline(onnx_model, tmp_path_factory.mktemp("taesd-onnx") / "onnx", tiny_vae=taesd_dir,
                            onnx_only=True)


@pytest.mark.parametrize("width,height,parts", [(64, 64, "both"), (136, 200, "both"), (800, 480, "decoder")])
def test_converted_taesd_matches_autoencoder_tiny(taesd_dir, tmp_path, width, height, parts):
    """Decoder and encoder, converted, vs diffusers' AutoencoderTiny: relative L2 below 1e-4. 800x480: the
    decoder at the panel's size (60x100 latents), full-size as TAESD is (the encoder would add 20 s)."""
    vae = taesd_torch(taesd_dir)
    export_tiny_vae(taesd_dir, tmp_path / "onnx", height, width, latent_channels=4, vae_scale_factor=8)
    latents = np.random.default_rng(0).standard_normal((1, 4, height // 8, width // 8)).astype(np.float32)
    convert(tmp_path / "onnx" / "taesd_decoder" / "model.onnx", tmp_path / "dec")
    got_image = Session(tmp_path / "dec").run({"latent_sample": latents})["sample"]
    with torch.no_grad():
        want_image = vae.decode(torch.from_numpy(latents)).sample.numpy()
    assert got_image.shape == want_image.shape == (1, 3, height, width)
    assert rel_l2(got_image, want_image) < 1e-4
    assert want_image.std() > 0.1  # not a degenerate random network
    if parts == "both":
        image = (init_image_at(width, height) * 2 - 1).transpose(2, 0, 1)[None].copy()
        convert(tmp_path / "onnx" / "taesd_encoder" / "model.onnx", tmp_path / "enc")
        got_latents = Session(tmp_path / "enc").run({"sample": image})["latents"]
        with torch.no_grad():
            want_latents = vae.encode(torch.from_numpy(image)).latents.numpy()
        assert got_latents.shape == want_latents.shape == (1, 4, height // 8, width // 8)
        assert rel_l2(got_latents, want_latents) < 1e-4 and want_latents.std() > 0.3


def init_image_at(width, height):
    y, x = np.mgrid[0:height, 0:width]
    x, y = x / (width - 1), y / (height - 1)
    return np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=-1).astype(np.float32)


def reference_with_taesd(diffusers_dir, taesd_dir):
    txt2img, img2img, config = load_reference(diffusers_dir)
    txt2img.vae = img2img.vae = taesd_torch(taesd_dir)  # what diffusers' TAESD docs do
    return txt2img, img2img, config


def run_both(model, reference, sampler, mode, guidance, steps=4, strength=0.6, **ours):
    seed = 77
    latents = np.random.Generator(np.random.PCG64(5)).standard_normal((1, 4, 8, 8)).astype(np.float32)
    got = StableDiffusion(model)(PROMPT, negative_prompt=NEGATIVE, steps=steps, guidance=guidance, sampler=sampler,
                                 latents=latents if mode == "txt2img" else None, generator=TorchNoise(seed),
                                 init_image=init_image() if mode == "img2img" else None, strength=strength,
                                 output_type="np", **ours)
    txt2img, img2img, config = reference
    pipe = txt2img if mode == "txt2img" else img2img
    pipe.scheduler = diffusers_scheduler(sampler, config)
    kw = dict(num_inference_steps=steps, guidance_scale=guidance, negative_prompt=NEGATIVE, output_type="np",
              generator=torch.Generator().manual_seed(seed))
    kw.update(latents=torch.from_numpy(latents)) if mode == "txt2img" else kw.update(image=init_image(),
                                                                                    strength=strength)
    with torch.no_grad():
        expected = pipe(PROMPT, **kw).images
    return got, expected


@pytest.mark.parametrize("backend,sampler,mode,guidance", [
    ("onnxstream", "euler", "txt2img", 7.5), ("onnxstream", "euler_a", "txt2img", 1.0),
    ("onnxstream", "dpmpp_2m", "img2img", 7.5), ("onnxstream", "euler_a", "img2img", 1.0),
    ("onnxruntime", "euler", "txt2img", 7.5), ("onnxruntime", "ddim", "img2img", 7.5)])
def test_pipeline_with_taesd_matches_diffusers(request, diffusers_dir, taesd_dir, backend, sampler, mode, guidance):
    """decoder="taesd" vs diffusers with pipe.vae = AutoencoderTiny: decode latents / 1.0 (TAESD's scaling
    factor), img2img encodes to the latents themselves (no sampling, so no noise drawn for it)."""
    model = request.getfixturevalue("taesd_engine" if backend == "onnxstream" else "taesd_onnx")
    got, expected = run_both(model, reference_with_taesd(diffusers_dir, taesd_dir), sampler, mode, guidance,
                             decoder="taesd")
    diff = float(np.abs(got - expected).max())
    print(f"taesd {backend} {sampler} {mode} {guidance}: max abs pixel diff {diff * 255:.4f}/255")
    assert got.shape == expected.shape == (1, 64, 64, 3) and diff <= TOLERANCE
    assert expected.std() > 0.02


def test_full_vae_stays_the_default(taesd_engine, diffusers_dir, taesd_dir):
    """With TAESD converted beside it, the default decoder is still the full VAE (diffusers' own pipeline)."""
    got, expected = run_both(taesd_engine, load_reference(diffusers_dir), "euler", "img2img", 7.5)
    assert np.abs(got - expected).max() <= TOLERANCE
    manifest = json.loads((taesd_engine / "manifest.json").read_text())
    assert manifest["tiny_vae"] == {"decoder": "taesd_decoder", "encoder": "taesd_encoder", "scaling_factor": 1.0,
                                    "shift_factor": 0.0, "source": str(taesd_dir)}
    assert StableDiffusion(taesd_engine).decoders == ["vae", "taesd"]
    for part in ("vae_decoder", "vae_encoder", "taesd_decoder", "taesd_encoder"):
        assert (taesd_engine / part / "graph.json").is_file()


def euler_estimates(reference, guidance, steps, latents, seed):
    """diffusers' Euler run, recording its latents after every step; returns the x0 estimate of each step,
    recovered from two consecutive latents: x_{i+1} = x_i + (x_i - x0_i) / sigma_i * (sigma_{i+1} - sigma_i)."""
    txt2img, _, config = reference
    txt2img.scheduler = diffusers_scheduler("euler", config)
    seen = [torch.from_numpy(latents) * txt2img.scheduler.init_noise_sigma]

    def record(pipe, i, t, kwargs):
        seen.append(kwargs["latents"].clone())
        return kwargs

    with torch.no_grad():
        txt2img(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=guidance,
                latents=torch.from_numpy(latents), generator=torch.Generator().manual_seed(seed), output_type="latent",
                callback_on_step_end=record)
    sigmas = txt2img.scheduler.sigmas
    return [(seen[i] - (seen[i + 1] - seen[i]) * sigmas[i] / (sigmas[i + 1] - sigmas[i])) for i in range(steps)]


def test_preview_is_taesd_decode_of_the_estimate(taesd_engine, diffusers_dir, taesd_dir):
    """preview(step, total, images) every 2 steps: TAESD's decode of the sampler's estimate of the final latents,
    vs diffusers' AutoencoderTiny on the estimate recovered from diffusers' own Euler run."""
    latents = np.random.Generator(np.random.PCG64(5)).standard_normal((1, 4, 8, 8)).astype(np.float32)
    calls = []
    final = StableDiffusion(taesd_engine)(PROMPT, negative_prompt=NEGATIVE, steps=5, guidance=7.5, sampler="euler",
                                          latents=latents, output_type="np", preview_every=2,
                                          preview=lambda step, total, images: calls.append((step, total, images)))
    assert [(s, t) for s, t, _ in calls] == [(2, 5), (4, 5)]
    estimates = euler_estimates(load_reference(diffusers_dir), 7.5, 5, latents, 0)
    vae = taesd_torch(taesd_dir)
    for step, _, images in calls:
        with torch.no_grad():
            want = (vae.decode(estimates[step - 1]).sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        assert images.shape == (1, 64, 64, 3) and np.abs(images - want).max() <= TOLERANCE
    assert np.abs(calls[-1][2] - final).max() > 0  # a preview, not the final image


def test_cli_decoder_and_preview_files(taesd_engine, onnx_model, tmp_path):
    """sd --decoder taesd --preview FILE --preview-every N: valid PNGs; the image is the API's; no temp files
    left. A model without TAESD previews with its full VAE."""
    out, preview = tmp_path / "out.png", tmp_path / "preview.png"
    for model, decoder in ((taesd_engine, "taesd"), (onnx_model, "vae")):
        preview.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "onnxstream", "sd", "--model", str(model), "--prompt", PROMPT, "--steps", "3",
               "--seed", "3", "--decoder", decoder, "--preview", str(preview), "--preview-every", "1",
               "--output", str(out)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                                env=child_env())
        assert result.returncode == 0, result.stderr
        expected = StableDiffusion(model)(PROMPT, steps=3, seed=3, decoder=decoder, output_type="np")[0]
        assert np.array_equal(png_pixels(out), (expected * 255).round().astype(np.uint8))
        shown = png_pixels(preview)  # Pillow reads it: a whole PNG, the step-2 preview (none after the last step)
        assert shown.shape == (64, 64, 3) and not np.array_equal(shown, png_pixels(out))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "preview.png"]


def test_taesd_resume_keeps_the_decoder(taesd_engine, tmp_path):
    sd = StableDiffusion(taesd_engine)
    kw = dict(steps=4, guidance=7.5, sampler="euler_a", seed=8, output_type="np", decoder="taesd")
    full = sd(PROMPT, **kw)

    def interrupt(step, total, seconds):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sd(PROMPT, **kw, save_latents=tmp_path / "run.npz", progress=interrupt)
    assert np.array_equal(sd(None, resume=tmp_path / "run.npz", output_type="np"), full)
    assert not np.array_equal(full, sd(PROMPT, **{**kw, "decoder": "vae"}))


def test_errors(onnx_model, taesd_dir, tmp_path, capsys):
    """One clear line each: no TAESD converted, no TAESD encoder, a missing directory, an unreachable hub id, a
    tiny VAE for other latents."""
    args = ["sd", "--model", str(onnx_model), "--prompt", "a cat", "--steps", "1", "--decoder", "taesd",
            "--output", str(tmp_path / "x.png")]
    assert cli_main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no TAESD decoder" in err[0] and "--tiny-vae" in err[0]
    assert not (tmp_path / "x.png").exists()

    model = tmp_path / "dec-only"
    shutil.copytree(onnx_model, model)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["tiny_vae"] = {"decoder": "vae_decoder", "encoder": None, "scaling_factor": 1.0, "shift_factor": 0.0}
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="no TAESD encoder"):
        StableDiffusion(model)(PROMPT, steps=2, init_image=init_image(), decoder="taesd")
    with pytest.raises(ValueError, match="preview_every"):
        StableDiffusion(model)(PROMPT, steps=2, preview=tmp_path / "p.png", preview_every=0)

    def convert_with(tiny):
        return cli_main(["convert", str(onnx_model), str(tmp_path / "out"), "--tiny-vae", str(tiny)])

    assert convert_with(tmp_path / "nothing-here") == 1
    assert "not a directory and not a hub id" in capsys.readouterr().err
    assert cli_main(["convert", str(onnx_model / "unet" / "model.onnx"), str(tmp_path / "out"), "--tiny-vae",
                     str(taesd_dir)]) == 1
    assert "needs a Stable Diffusion pipeline directory" in capsys.readouterr().err
    # A hub id goes through diffusers' real hub loading; offline (the hub is unreachable here) it fails fast.
    result = subprocess.run([sys.executable, "-m", "onnxstream", "convert", str(onnx_model), str(tmp_path / "out"),
                             "--tiny-vae", "madebyollin/taesd-not-cached"], capture_output=True, text=True,
                            timeout=300, env=child_env(HF_HUB_OFFLINE="1"))
    err = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "cannot load the tiny VAE madebyollin/taesd-not-cached" in err[-1], err
    other = tmp_path / "taesd-8ch"
    from diffusers import AutoencoderTiny
    AutoencoderTiny(latent_channels=8).save_pretrained(other)
    assert convert_with(other) == 1
    assert "8 latent channels" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
