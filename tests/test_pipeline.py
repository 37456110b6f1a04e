"""Stable Diffusion pipeline vs diffusers, on a tiny random-weight pipeline.

A tiny StableDiffusionPipeline (random UNet/VAE/CLIP, CLIP's real BPE vocabulary) is saved with
save_pretrained, exported to ONNX once (cached under ~/.cache/onnxstream/pipeline-tests) and run two ways:
"onnxruntime" (the exported parts, `convert --onnx-only`) and "onnxstream" (the converted engine dirs;
skipped while the engine lacks an op the parts use). For every sampler, txt2img and img2img, with and
without guidance, the image must match diffusers' within 2/255 given the same latents and per-step noise:
our pipeline draws its noise from the same torch.Generator, in diffusers' order (see TorchNoise).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

import onnxstream  # noqa: E402
from onnxstream.cli import main as cli_main  # noqa: E402
from onnxstream.pipelines.convert_pipeline import convert_pipeline  # noqa: E402
from onnxstream.pipelines.stable_diffusion import StableDiffusion  # noqa: E402
from onnxstream.tokenizer import CLIPTokenizer  # noqa: E402

VERSION = "3"  # bump when the tiny pipelines or their export change
TOLERANCE = 2 / 255
SAMPLER_NAMES = ["euler", "euler_a", "ddim", "dpmpp_2m", "dpmpp_2m_karras", "lcm"]
PROMPT, NEGATIVE = "a photo of a cat sitting on a sofa, highly detailed", "blurry, low quality"
MAX_DIFFS = {}  # (backend, sampler, mode, guidance) -> max abs difference, printed at the end


SD15_SCHEDULER = {  # runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json
    "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
    "clip_sample": False}


def env_key():
    parts = [f"{d}={importlib.metadata.version(d)}" for d in ("torch", "diffusers", "transformers", "onnx")]
    return hashlib.sha1(";".join(parts).encode()).hexdigest()[:8]


CACHE = Path(os.environ.get("ONNXSTREAM_MODEL_CACHE", Path.home() / ".cache" / "onnxstream")) / "pipeline-tests" / \
    f"tiny-sd-v{VERSION}-{env_key()}"


SD21_SCHEDULER = {  # stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json (768 px, v-prediction)
    "_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
    "prediction_type": "v_prediction", "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "trained_betas": None}
TURBO_SCHEDULER = {  # stabilityai/sd-turbo scheduler/scheduler_config.json
    "_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.24.0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear",
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "trailing", "trained_betas": None,
    "use_karras_sigmas": False}


def build_tiny_pipeline(out: Path, sd2=False, unet_config=None, vae_config=None):
    """sd2: SD 2.x shapes - OpenCLIP-style text encoder (gelu), pad token "!", linear-projection attention
    with per-block head dims, and SD2.1's v-prediction scheduler. unet_config/vae_config replace the tiny
    UNet's and VAE's configs."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from test_tokenizer import SD15_CONFIG, SD21_CONFIG, original_merges_gz, write_vocab_files
    from transformers import CLIPTextConfig, CLIPTextModel
    work = Path(tempfile.mkdtemp(prefix=".tiny-", dir=out.parent))
    tokenizer = transformers.CLIPTokenizer.from_pretrained(
        str(write_vocab_files(original_merges_gz(), work / "tok", SD21_CONFIG if sd2 else SD15_CONFIG)))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**(unet_config or dict(
        sample_size=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(32, 64), layers_per_block=1,
        norm_num_groups=8, cross_attention_dim=32, attention_head_dim=(2, 4) if sd2 else 8,
        use_linear_projection=sd2)))
    vae = AutoencoderKL(**(vae_config or dict(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 16, 16), layers_per_block=1, norm_num_groups=8, sample_size=64)))
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, hidden_act="gelu" if sd2 else "quick_gelu", projection_dim=32, pad_token_id=49407,
        bos_token_id=49406, eos_token_id=49407))
    scheduler = EulerDiscreteScheduler()  # replaced below by SD1.5's scheduler config
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(work / "pipe")
    (work / "pipe" / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD21_SCHEDULER if sd2 else SD15_SCHEDULER))
    os.replace(work / "pipe", out)
    shutil.rmtree(work)


@pytest.fixture(scope="session")
def diffusers_dir():
    out = CACHE / "diffusers"
    if not out.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
        build_tiny_pipeline(out)
    return out


@pytest.fixture(scope="session")
def onnx_model(diffusers_dir):
    out = CACHE / "onnx"
    if not out.is_dir():
        convert_pipeline(diffusers_dir, out, onnx_only=True, unet_batches=(2, 1, 4))
    return out


@pytest.fixture(scope="session")
def engine_model(onnx_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("engine") / "tiny"
    try:
        convert_pipeline(onnx_model, out)
    except ValueError as e:
        if "does not support" in str(e):
            pytest.skip(f"the engine cannot run the pipeline yet: {str(e).splitlines()[1:3]}")
        raise
    return out


def load_reference(diffusers_dir, scheduler_config=None):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        txt2img = StableDiffusionPipeline.from_pretrained(diffusers_dir, safety_checker=None)
    txt2img.set_progress_bar_config(disable=True)
    img2img = StableDiffusionImg2ImgPipeline(**txt2img.components)
    img2img.set_progress_bar_config(disable=True)
    return txt2img, img2img, scheduler_config or dict(txt2img.scheduler.config)


@pytest.fixture(scope="session")
def reference(diffusers_dir):
    return load_reference(diffusers_dir)


@pytest.fixture(scope="session")
def sd2_dirs():
    """(diffusers dir, ONNX dir) of the tiny SD 2.x (v-prediction) pipeline."""
    src, onnx = CACHE / "sd2-diffusers", CACHE / "sd2-onnx"
    if not src.is_dir():
        src.parent.mkdir(parents=True, exist_ok=True)
        build_tiny_pipeline(src, sd2=True)
    if not onnx.is_dir():
        convert_pipeline(src, onnx, onnx_only=True, unet_batches=(2, 1), family="sd2")
    return src, onnx


@pytest.fixture(scope="session")
def sd2_engine(sd2_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("sd2") / "sd2"
    convert_pipeline(sd2_dirs[1], out, family="sd2")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["family"] == "sd2" and manifest["prediction_type"] == "v_prediction"
    return out


@pytest.fixture(scope="session")
def turbo_engine(sd2_dirs, tmp_path_factory):
    """SD-Turbo is an SD 2.1 network sampled with Euler 'trailing' timesteps and no guidance: the tiny SD2
    parts with SD-Turbo's scheduler config."""
    src = tmp_path_factory.mktemp("turbo") / "onnx"
    shutil.copytree(sd2_dirs[1], src)
    (src / "scheduler" / "scheduler_config.json").write_text(json.dumps(TURBO_SCHEDULER))
    out = src.parent / "turbo"
    convert_pipeline(src, out, family="sd-turbo")
    return out


def diffusers_scheduler(name, config):
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                           EulerDiscreteScheduler, LCMScheduler)
    dpm = dict(algorithm_type="dpmsolver++", solver_order=2)
    make = {"euler": lambda: EulerDiscreteScheduler.from_config(config),
            "euler_a": lambda: EulerAncestralDiscreteScheduler.from_config(config),
            "ddim": lambda: DDIMScheduler.from_config(config),
            "dpmpp_2m": lambda: DPMSolverMultistepScheduler.from_config(config, **dpm, use_karras_sigmas=False),
            "dpmpp_2m_karras": lambda: DPMSolverMultistepScheduler.from_config(config, **dpm, use_karras_sigmas=True),
            "lcm": lambda: LCMScheduler.from_config(config)}
    return make[name]()


class TorchNoise:
    """Draws standard normals from a torch.Generator exactly as diffusers' randn_tensor does."""

    def __init__(self, seed):
        self.generator = torch.Generator().manual_seed(seed)

    def standard_normal(self, shape):
        return torch.randn(tuple(shape), generator=self.generator, dtype=torch.float32).numpy()


def init_image():
    y, x = np.mgrid[0:64, 0:64] / 63.0
    return np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=-1).astype(np.float32)  # smooth, in [0, 1]


def run_reference(reference, sampler, mode, guidance, steps, latents, seed, strength=0.6):
    txt2img, img2img, config = reference
    pipe = txt2img if mode == "txt2img" else img2img
    pipe.scheduler = diffusers_scheduler(sampler, config)
    kw = dict(num_inference_steps=steps, guidance_scale=guidance, negative_prompt=NEGATIVE, output_type="np",
              generator=torch.Generator().manual_seed(seed))
    if mode == "txt2img":
        kw["latents"] = torch.from_numpy(latents)
    else:
        kw.update(image=init_image(), strength=strength)
    with torch.no_grad():
        return pipe(PROMPT, **kw).images


def compare(model, reference, sampler, mode, guidance, steps=5, strength=0.6, name=None):
    """Our image vs diffusers' for the same latents and per-step noise; guidance/steps None = family defaults."""
    seed = 1234
    latents = np.random.Generator(np.random.PCG64(7)).standard_normal((1, 4, 8, 8)).astype(np.float32)
    sd = StableDiffusion(model)
    got = sd(PROMPT, negative_prompt=NEGATIVE, steps=steps, guidance=guidance, sampler=sampler,
             width=64, height=64, latents=latents if mode == "txt2img" else None, generator=TorchNoise(seed),
             init_image=init_image() if mode == "img2img" else None, strength=strength, output_type="np")
    steps, guidance = sd.last_params["steps"], sd.last_params["guidance"]
    expected = run_reference(reference, sampler, mode, guidance, steps, latents, seed, strength)
    assert got.shape == expected.shape == (1, 64, 64, 3) and got.dtype == np.float32
    diff = float(np.abs(got - expected).max())
    key = (name or Path(model).name, sampler, mode, guidance, steps)
    MAX_DIFFS[key] = diff
    print(" ".join(map(str, key)), f"max abs pixel diff {diff * 255:.4f}/255")
    assert diff <= TOLERANCE
    assert expected.std() > 0.01  # a real picture, not a constant


# Every sampler x mode x guidance on the engine; onnxruntime (the exported parts) as a reference path for two.
MATRIX = [("onnxstream", s, m, g) for s in SAMPLER_NAMES for m in ("txt2img", "img2img") for g in (7.5, 1.0)]
MATRIX += [("onnxruntime", "euler", "txt2img", 7.5), ("onnxruntime", "dpmpp_2m", "img2img", 1.0)]


@pytest.mark.parametrize("backend,sampler,mode,guidance", MATRIX)
def test_matches_diffusers(request, reference, backend, sampler, mode, guidance):
    model = request.getfixturevalue("onnx_model" if backend == "onnxruntime" else "engine_model")
    compare(model, reference, sampler, mode, guidance)


@pytest.mark.parametrize("sampler,mode,guidance", [("euler", "txt2img", 7.5), ("ddim", "txt2img", 7.5),
                                                   ("dpmpp_2m", "img2img", 7.5), ("euler_a", "txt2img", 1.0),
                                                   ("lcm", "txt2img", 1.0)])
def test_sd2_v_prediction_matches_diffusers(sd2_dirs, sd2_engine, sampler, mode, guidance):
    compare(sd2_engine, load_reference(sd2_dirs[0]), sampler, mode, guidance, name="sd2")


@pytest.mark.parametrize("steps,mode", [(None, "txt2img"), (4, "txt2img"), (2, "img2img")])
def test_sd_turbo_matches_diffusers(sd2_dirs, turbo_engine, steps, mode):
    """Family defaults for sd-turbo: 1 step, guidance 0 (no unconditional pass), Euler with trailing timesteps."""
    compare(turbo_engine, load_reference(sd2_dirs[0], TURBO_SCHEDULER), "euler", mode, None, steps=steps,
            strength=0.5, name="sd-turbo")


def test_num_images_share_one_unet_pass_per_step(engine_model):
    sd = StableDiffusion(engine_model)
    kw = dict(negative_prompt=NEGATIVE, steps=3, guidance=7.5, sampler="euler_a", output_type="np")
    batch = sd(PROMPT, num=2, seed=11, **kw)
    singles = np.concatenate([sd(PROMPT, seed=seed, **kw) for seed in (11, 12)])
    assert batch.shape == (2, 64, 64, 3) and np.abs(batch - singles).max() <= 1e-4
    assert np.abs(batch[0] - batch[1]).max() > 0.05  # different seeds, different images

    latents = np.random.Generator(np.random.PCG64(3)).standard_normal((2, 4, 8, 8)).astype(np.float32)
    kw = dict(steps=3, guidance=1.0, sampler="dpmpp_2m", output_type="np")
    batch = sd(PROMPT, num=2, latents=latents, **kw)  # no guidance: batch 2 = the two images
    singles = np.concatenate([sd(PROMPT, latents=latents[i:i + 1], **kw) for i in range(2)])
    assert np.abs(batch - singles).max() <= 1e-4

    # guidance 7.5, num 2: one batch-4 pass per step reads the UNet's weights exactly once
    # resident_bytes=0: the tiny UNet would fit the resident-weight budget; a full-size one streams at every step
    unet = onnxstream.Session(sd.model_dir / "unet_batch4", resident_bytes=0)
    unet.input_dtypes = {v.name: v.dtype for v in unet.inputs}
    sd._parts["unet_batch4"] = unet
    weight_bytes = sum(w.nbytes for w in unet.graph.weights)
    run, batches, reads, last = unet.run, [], [], [unet.bytes_read]
    unet.run = lambda feeds, *a: batches.append(feeds["sample"].shape[0]) or run(feeds, *a)

    def progress(step, total, seconds):
        reads.append(unet.bytes_read - last[0])
        last[0] = unet.bytes_read

    sd(PROMPT, negative_prompt=NEGATIVE, num=2, seed=11, steps=3, guidance=7.5, progress=progress, output_type="np")
    assert batches == [4, 4, 4] and reads == [weight_bytes] * 3

    with pytest.raises(ValueError, match="--unet-batch 6"):
        sd(PROMPT, num=3, steps=1, guidance=7.5)


def test_tokenizer_json_only_folder(diffusers_dir):
    """transformers 5 saves only tokenizer.json: our tokenizer must read it, and convert writes vocab files."""
    folder = diffusers_dir / "tokenizer"
    reference = transformers.CLIPTokenizer.from_pretrained(str(folder))
    ours = CLIPTokenizer.from_dir(folder)
    for text in [PROMPT, NEGATIVE, "", "Ünïcode, 東京 <|endoftext|> it's!!"]:
        assert ours.encode(text) == reference(text, padding="max_length", max_length=77, truncation=True)["input_ids"]


def test_seed_is_reproducible_and_resume_continues(onnx_model, tmp_path):
    sd = StableDiffusion(onnx_model)
    for sampler in ("euler_a", "dpmpp_2m"):
        kw = dict(steps=5, guidance=7.5, sampler=sampler, seed=99, output_type="np")
        full = sd(PROMPT, **kw)
        assert np.array_equal(full, sd(PROMPT, **kw))
        state = tmp_path / f"{sampler}.npz"

        def interrupt(step, total, seconds):
            if step == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            sd(PROMPT, **kw, save_latents=state, progress=interrupt)
        resumed = sd(None, resume=state, output_type="np")
        assert np.array_equal(resumed, full), sampler


def png_text(path):
    data, chunks, pos = Path(path).read_bytes(), {}, 8
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) == int.from_bytes(data[pos + 8 + n:pos + 12 + n], "big")
        if kind == b"tEXt":
            key, value = body.split(b"\0", 1)
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + n
    return chunks


def test_cli_writes_png_with_parameters(onnx_model, tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    out = tmp_path / "cat.png"
    cmd = [sys.executable, "-m", "onnxstream", "sd", "--model", str(onnx_model), "--prompt", PROMPT,
           "--negative-prompt", NEGATIVE, "--steps", "4", "--seed", "5", "--sampler", "dpmpp_2m_karras",
           "--output", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = png_text(out)
    assert text["prompt"] == PROMPT and text["negative_prompt"] == NEGATIVE and text["seed"] == "5"
    assert text["steps"] == "4" and text["sampler"] == "dpmpp_2m_karras" and text["size"] == "64x64"
    expected = StableDiffusion(onnx_model)(PROMPT, negative_prompt=NEGATIVE, steps=4, seed=5,
                                           sampler="dpmpp_2m_karras", output_type="np")[0]
    with PIL.open(out) as im:
        assert np.array_equal(np.asarray(im), (expected * 255).round().astype(np.uint8))


def test_board_needs_only_numpy_and_onnxstream(engine_model, tmp_path):
    """`onnxstream sd` on a converted model with torch, onnx, onnxruntime, diffusers and transformers unimportable."""
    out = tmp_path / "board.png"
    blocked = ("torch", "onnx", "onnxruntime", "diffusers", "transformers", "PIL")
    code = ("import sys\n"
            f"for name in {blocked!r}:\n    sys.modules[name] = None  # any import of it now fails\n"
            "from onnxstream.cli import main\nsys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "sd", "--model", str(engine_model), "--prompt", PROMPT,
                             "--steps", "3", "--seed", "9", "--output", str(out)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    expected = StableDiffusion(engine_model)(PROMPT, steps=3, seed=9, output_type="np")[0]
    assert png_pixels(out).shape == expected.shape
    assert np.array_equal(png_pixels(out), (expected * 255).round().astype(np.uint8))


def png_pixels(path):
    """A PNG's RGB pixels, read with Pillow in the test process."""
    PIL = pytest.importorskip("PIL.Image")
    with PIL.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("case", ["missing_part", "no_manifest", "sampler", "size_multiple", "size_mismatch",
                                  "init_image", "strength", "num"])
def test_cli_bad_input(onnx_model, tmp_path, capsys, case):
    model = tmp_path / "model"
    shutil.copytree(onnx_model, model)
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    args = ["sd", "--model", str(model), "--prompt", "a cat", "--steps", "2", "--output", str(out)]
    expect = {"missing_part": "missing a part", "no_manifest": "not a converted pipeline",
              "sampler": "unknown sampler", "size_multiple": "multiples of 8", "size_mismatch": "converted for",
              "init_image": "cannot read init image", "strength": "strength", "num": "--unet-batch 6"}[case]
    if case == "missing_part":
        shutil.rmtree(model / "unet")
    elif case == "no_manifest":
        (model / "manifest.json").unlink()
    elif case == "sampler":
        args += ["--sampler", "heun"]
    elif case == "size_multiple":
        args += ["--width", "100", "--height", "64"]
    elif case == "size_mismatch":
        args += ["--width", "128", "--height", "64"]
    elif case == "init_image":
        (tmp_path / "bad.png").write_bytes(b"not a png")
        args += ["--init-image", str(tmp_path / "bad.png")]
    elif case == "num":  # guidance 7.5: batch 6, but the UNet was converted for 1, 2 and 4
        args += ["--num", "3"]
    elif case == "strength":
        args += ["--init-image", str(tmp_path / "im.npy"), "--strength", "0.1"]
        np.save(tmp_path / "im.npy", init_image())
    assert cli_main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("onnxstream: error:") and expect in err[0], err
    assert out.read_bytes() == b"keep me"


def test_convert_rejects_bad_pipeline_dirs(tmp_path, diffusers_dir, capsys):
    assert cli_main(["convert", str(tmp_path), str(tmp_path / "out")]) == 1
    assert "no model_index.json" in capsys.readouterr().err
    partial = tmp_path / "partial"
    shutil.copytree(diffusers_dir, partial)
    shutil.rmtree(partial / "unet")
    assert cli_main(["convert", str(partial), str(tmp_path / "out")]) == 1
    assert "unet/config.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_convert_diffusers_dir_writes_manifest(onnx_model):
    manifest = json.loads((onnx_model / "manifest.json").read_text())
    assert manifest["family"] == "sd1" and manifest["prediction_type"] == "epsilon"
    assert (manifest["width"], manifest["height"], manifest["latent_channels"]) == (64, 64, 4)
    assert manifest["unet_batches"] == {"1": "unet_batch1", "2": "unet", "4": "unet_batch4"}
    assert (onnx_model / "tokenizer" / "vocab.json").is_file() and (onnx_model / "tokenizer" / "merges.txt").is_file()


def test_zz_report_max_diffs():
    """Prints the max pixel difference per sampler (run with -s to see it)."""
    for key, diff in sorted(MAX_DIFFS.items()):
        print(" ".join(map(str, key)), f"{diff * 255:.4f}/255")
