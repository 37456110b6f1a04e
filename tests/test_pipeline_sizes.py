"""Any image size that is a multiple of 8 (e-ink panels: 800x480, 600x448, 640x400, portrait 480x800) vs diffusers.

The tiny pipelines here have SD's real depth at tiny channel widths: a 4-level UNet (3 downsamplings, cross
attention on the first three levels) and a 4-level VAE, so an 800x480 image has SD1.5's real latent cascade
60x100 -> 30x50 -> 15x25 -> 8x13, where the UNet's upsamplers must go back to 15x25 by explicit sizes (diffusers
passes them), and the top-level attention runs over 6000 tokens. Exports are cached per size under
~/.cache/onnxstream/pipeline-tests; every image must match diffusers' within 2/255.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")

from onnxstream.graph import load_graph  # noqa: E402
from onnxstream.pipelines.convert_pipeline import convert_pipeline  # noqa: E402
from onnxstream.pipelines.stable_diffusion import StableDiffusion  # noqa: E402
from test_pipeline import (NEGATIVE, PROMPT, TOLERANCE, TURBO_SCHEDULER, TorchNoise,  # noqa: E402
                           build_tiny_pipeline, diffusers_scheduler, env_key)

VERSION = "1"  # bump when the tiny pipelines or their export change
CACHE = Path(os.environ.get("ONNXSTREAM_MODEL_CACHE", Path.home() / ".cache" / "onnxstream")) / "pipeline-tests" / \
    f"sizes-v{VERSION}-{env_key()}"


def deep_configs(sd2=False):
    """SD's depth at tiny widths (UNet, VAE configs). sd2: linear projections, per-block head counts."""
    unet = dict(sample_size=8, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, block_out_channels=(8, 16, 16, 16),
                layers_per_block=1, norm_num_groups=4, cross_attention_dim=32,
                attention_head_dim=(2, 4, 4, 4) if sd2 else 2, use_linear_projection=sd2)
    vae = dict(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
               block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, sample_size=64)
    return unet, vae


def cached(path: Path, make):
    """path, made by make(tmp) into a temp dir renamed into place (other sessions share the cache)."""
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        try:
            make(tmp / "out")
            try:
                os.replace(tmp / "out", path)
            except OSError:  # another session made it first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def diffusers_dir(family):
    sd2 = family == "sd2"
    return cached(CACHE / f"{family}-diffusers", lambda out: build_tiny_pipeline(out, sd2, *deep_configs(sd2)))


def onnx_dir(family, width, height):
    batches = (2, 1) if family == "sd2" else (2,)
    return cached(CACHE / f"{family}-onnx-{width}x{height}",
                  lambda out: convert_pipeline(diffusers_dir(family), out, width=width, height=height, onnx_only=True,
                                               unet_batches=batches, family=family))


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """(family, width, height) -> converted engine dir; sd-turbo is the SD2 parts with SD-Turbo's scheduler."""
    made = {}

    def get(family, width, height):
        key = (family, width, height)
        if key not in made:
            src = onnx_dir("sd2" if family == "sd-turbo" else family, width, height)
            if family == "sd-turbo":
                copy = tmp_path_factory.mktemp("turbo-onnx") / "onnx"
                shutil.copytree(src, copy)
                (copy / "scheduler" / "scheduler_config.json").write_text(json.dumps(TURBO_SCHEDULER))
                src = copy
            made[key] = convert_pipeline(src, tmp_path_factory.mktemp("engine") / f"{family}-{width}x{height}",
                                         family=family)
        return made[key]
    return get


def init_image(width, height):
    y, x = np.mgrid[0:height, 0:width]
    x, y = x / (width - 1), y / (height - 1)
    return np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=-1).astype(np.float32)  # smooth, in [0, 1]


def reference_pipe(family, mode):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = StableDiffusionPipeline.from_pretrained(diffusers_dir("sd2" if family == "sd-turbo" else family),
                                                       safety_checker=None)
    if mode == "img2img":
        pipe = StableDiffusionImg2ImgPipeline(**pipe.components)
    pipe.set_progress_bar_config(disable=True)
    return pipe, (TURBO_SCHEDULER if family == "sd-turbo" else dict(pipe.scheduler.config))


def compare(model, family, width, height, sampler, mode, guidance, steps, strength=0.6):
    """Our image vs diffusers' at width x height, same latents and per-step noise; returns the max difference."""
    seed = 4321
    shape = (1, 4, height // 8, width // 8)
    latents = np.random.Generator(np.random.PCG64(7)).standard_normal(shape).astype(np.float32)
    image = init_image(width, height) if mode == "img2img" else None
    sd = StableDiffusion(model)
    got = sd(PROMPT, negative_prompt=NEGATIVE, steps=steps, guidance=guidance, sampler=sampler, width=width,
             height=height, latents=latents if mode == "txt2img" else None, generator=TorchNoise(seed),
             init_image=image, strength=strength, output_type="np")
    pipe, config = reference_pipe(family, mode)
    pipe.scheduler = diffusers_scheduler(sampler, config)
    kw = dict(num_inference_steps=sd.last_params["steps"], guidance_scale=sd.last_params["guidance"],
              negative_prompt=NEGATIVE, output_type="np", generator=torch.Generator().manual_seed(seed))
    if mode == "txt2img":
        kw.update(latents=torch.from_numpy(latents), width=width, height=height)
    else:
        kw.update(image=image, strength=strength)
    with torch.no_grad():
        expected = pipe(PROMPT, **kw).images
    assert got.shape == expected.shape == (1, height, width, 3)
    diff = float(np.abs(got - expected).max())
    print(f"{family} {width}x{height} {sampler} {mode} guidance {kw['guidance_scale']} "
          f"steps {kw['num_inference_steps']}: max abs pixel diff {diff * 255:.4f}/255")
    assert diff <= TOLERANCE
    assert expected.std() > 0.01  # a real picture, not a constant
    return diff


PANELS = [(800, 480), (480, 800), (600, 448), (640, 400)]
CASES = [("sd1", w, h, "euler", "txt2img", 7.5, 2) for w, h in PANELS]
CASES += [("sd1", 800, 480, "dpmpp_2m", "img2img", 7.5, 4), ("sd1", 480, 800, "euler_a", "img2img", 1.0, 3),
          ("sd1", 72, 64, "ddim", "txt2img", 7.5, 3),  # the smallest sizes: latent 9x8 -> 5x4 -> 3x2 -> 2x1
          ("sd2", 800, 480, "ddim", "txt2img", 7.5, 2), ("sd2", 600, 448, "euler", "img2img", 7.5, 4),
          ("sd-turbo", 800, 480, "euler", "txt2img", None, None), ("sd-turbo", 640, 400, "euler", "img2img", None, 2)]


@pytest.mark.parametrize("family,width,height,sampler,mode,guidance,steps", CASES)
def test_panel_sizes_match_diffusers(engine, family, width, height, sampler, mode, guidance, steps):
    compare(engine(family, width, height), family, width, height, sampler, mode, guidance, steps)


def test_onnxruntime_runs_the_800x480_export():
    """The export itself (run with onnxruntime, `convert --onnx-only`) matches diffusers at 800x480."""
    compare(onnx_dir("sd1", 800, 480), "sd1", 800, 480, "euler", "txt2img", 7.5, 2)


def test_export_has_no_attention_sized_constants(engine):
    """diffusers' classic attention processor exports baddbmm(empty, q, k) as a [B*heads, n, n] constant (576 MB
    per layer here, 2.3 GB for SD1.5 at 800x480) that blocks the attention fusion: the export keeps SDPA, and every
    attention is fused (the scores never exist in full)."""
    model = onnx.load(str(onnx_dir("sd1", 800, 480) / "unet" / "model.onnx"), load_external_data=False)
    sizes = [int(np.prod(t.dims)) for t in model.graph.initializer]
    sizes += [int(np.prod(a.t.dims)) for n in model.graph.node if n.op_type == "Constant" for a in n.attribute
              if a.name == "value"]
    assert max(sizes) < 1 << 20
    ops = [n.op for n in load_graph(engine("sd1", 800, 480) / "unet").nodes]
    assert ops.count("FusedAttention") == 20 and "Softmax" not in ops  # 10 transformer blocks, self + cross


def test_manifest_records_the_size(engine):
    manifest = json.loads((engine("sd1", 600, 448) / "manifest.json").read_text())
    assert (manifest["width"], manifest["height"]) == (600, 448)
    assert (manifest["latent_width"], manifest["latent_height"]) == (75, 56)
