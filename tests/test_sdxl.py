"""SDXL and SDXL Turbo pipelines vs diffusers, on tiny random-weight pipelines.

Tiny StableDiffusionXLPipelines (random UNet with addition_embed_type="text_time", two random CLIP text encoders,
the second with a projection, CLIP's real BPE vocabulary with SDXL's two tokenizer configs) are saved with
save_pretrained, exported to ONNX once (cached under ~/.cache/onnxstream/pipeline-tests), converted, and run:
for every sampler, txt2img and img2img, with and without guidance, at a non-square size (96x64), the image
must match diffusers' StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline within 2/255 given the same
prompt, negative prompt, initial latents and per-step noise (drawn from the same torch.Generator).
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
pytest.importorskip("onnxruntime")

from onnxstream.pipelines.convert_pipeline import convert_pipeline  # noqa: E402
from onnxstream.pipelines.stable_diffusion import StableDiffusion  # noqa: E402
from onnxstream.tokenizer import CLIPTokenizer  # noqa: E402
from test_pipeline import (CACHE as SD_CACHE, NEGATIVE, PROMPT, SAMPLER_NAMES, TOLERANCE, TorchNoise,  # noqa: E402
                           diffusers_scheduler, env_key)

VERSION = "1"  # bump when the tiny pipelines change
CACHE = SD_CACHE.parent / f"tiny-sdxl-v{VERSION}-{env_key()}"
HEIGHT, WIDTH = 64, 96   # non-square: latents 8 x 12
MAX_DIFFS = {}

SDXL_SCHEDULER = {  # stabilityai/stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json
    "_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.19.0.dev0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear",
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None,
    "use_karras_sigmas": False}
TURBO_SCHEDULER = {  # stabilityai/sdxl-turbo scheduler/scheduler_config.json
    "_class_name": "EulerAncestralDiscreteScheduler", "_diffusers_version": "0.24.0.dev0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear",
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "trailing", "trained_betas": None}


def build_tiny_sdxl(out: Path, refiner=False):
    """SDXL's shapes in miniature: text_time UNet (6 time ids; a refiner's 5 with requires_aesthetics_score),
    CLIP ViT-L-like text encoder (quick_gelu) + a bigG-like one with projection (gelu), 8x VAE."""
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline,
                           StableDiffusionXLPipeline, UNet2DConditionModel)
    from test_tokenizer import SD15_CONFIG, SD21_CONFIG, original_merges_gz, write_vocab_files
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    work = Path(tempfile.mkdtemp(prefix=".tiny-sdxl-", dir=out.parent))
    gz = original_merges_gz()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(write_vocab_files(gz, work / "tok", SD15_CONFIG)))
    tokenizer_2 = transformers.CLIPTokenizer.from_pretrained(str(write_vocab_files(gz, work / "tok2", SD21_CONFIG)))
    torch.manual_seed(0)
    n_ids = 5 if refiner else 6
    unet = UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=8 * n_ids + 32, cross_attention_dim=64, norm_num_groups=8)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(16, 16, 16, 16), layers_per_block=1, norm_num_groups=8, sample_size=64,
                        scaling_factor=0.13025, force_upcast=True)
    clip = dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
                max_position_embeddings=77, projection_dim=32, pad_token_id=1, bos_token_id=49406, eos_token_id=49407)
    text_encoder = CLIPTextModel(CLIPTextConfig(**clip, hidden_act="quick_gelu"))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**clip, hidden_act="gelu"))
    kw = dict(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
              tokenizer_2=tokenizer_2, unet=unet, scheduler=EulerDiscreteScheduler())
    if refiner:
        pipe = StableDiffusionXLImg2ImgPipeline(**kw, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
                                                add_watermarker=False)
    else:
        pipe = StableDiffusionXLPipeline(**kw, add_watermarker=False)
    pipe.save_pretrained(work / "pipe")
    (work / "pipe" / "scheduler" / "scheduler_config.json").write_text(json.dumps(SDXL_SCHEDULER))
    os.replace(work / "pipe", out)
    shutil.rmtree(work)


def cached(name, build):
    out = CACHE / name
    if not out.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
        build(out)
    return out


@pytest.fixture(scope="session")
def sdxl_dirs():
    """(diffusers dir, ONNX dir) of the tiny SDXL pipeline."""
    src = cached("diffusers", build_tiny_sdxl)
    onnx = cached("onnx", lambda out: convert_pipeline(src, out, onnx_only=True, unet_batches=(2, 1),
                                                       height=HEIGHT, width=WIDTH))
    return src, onnx


@pytest.fixture(scope="session")
def sdxl_engine(sdxl_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("sdxl") / "sdxl"
    convert_pipeline(sdxl_dirs[1], out)
    return out


@pytest.fixture(scope="session")
def turbo_dirs(sdxl_dirs, tmp_path_factory):
    """SDXL Turbo is an SDXL network sampled with Euler ancestral 'trailing' timesteps and no guidance: the tiny
    SDXL networks with SDXL Turbo's scheduler config, converted straight from the diffusers directory."""
    src = tmp_path_factory.mktemp("turbo") / "diffusers"
    shutil.copytree(sdxl_dirs[0], src)
    (src / "scheduler" / "scheduler_config.json").write_text(json.dumps(TURBO_SCHEDULER))
    out = src.parent / "turbo"
    convert_pipeline(src, out, height=HEIGHT, width=WIDTH)
    return src, out


@pytest.fixture(scope="session")
def refiner_dirs():
    src = cached("refiner-diffusers", lambda out: build_tiny_sdxl(out, refiner=True))
    onnx = cached("refiner-onnx", lambda out: convert_pipeline(src, out, onnx_only=True, height=HEIGHT, width=WIDTH))
    return src, onnx


def load_reference(src, scheduler_config=None, refiner=False):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if refiner:
            img2img = StableDiffusionXLImg2ImgPipeline.from_pretrained(src, add_watermarker=False)
            txt2img = None
        else:
            txt2img = StableDiffusionXLPipeline.from_pretrained(src, add_watermarker=False)
            txt2img.set_progress_bar_config(disable=True)
            img2img = StableDiffusionXLImg2ImgPipeline(**txt2img.components, add_watermarker=False)
    img2img.set_progress_bar_config(disable=True)
    return txt2img, img2img, scheduler_config or dict(img2img.scheduler.config)


@pytest.fixture(scope="session")
def reference(sdxl_dirs):
    return load_reference(sdxl_dirs[0])


def init_image(height=HEIGHT, width=WIDTH):
    y, x = np.mgrid[0:height, 0:width]
    y, x = y / (height - 1), x / (width - 1)
    return np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=-1).astype(np.float32)  # smooth, in [0, 1]


def compare(model, reference, sampler, mode, guidance, steps=5, strength=0.6, negative=NEGATIVE, name=None, **kw):
    """Our image vs diffusers' for the same latents and per-step noise; guidance/steps None = family defaults."""
    seed = 4321
    latents = np.random.Generator(np.random.PCG64(7)).standard_normal((1, 4, HEIGHT // 8, WIDTH // 8))
    latents = latents.astype(np.float32)
    sd = StableDiffusion(model)
    got = sd(PROMPT, negative_prompt=negative, steps=steps, guidance=guidance, sampler=sampler,
             latents=latents if mode == "txt2img" else None, generator=TorchNoise(seed),
             init_image=init_image() if mode == "img2img" else None, strength=strength, output_type="np", **kw)
    steps, guidance = sd.last_params["steps"], sd.last_params["guidance"]
    txt2img, img2img, config = reference
    pipe = txt2img if mode == "txt2img" else img2img
    pipe.scheduler = diffusers_scheduler(sampler, config)
    ref_kw = dict(num_inference_steps=steps, guidance_scale=guidance, negative_prompt=negative, output_type="np",
                  generator=torch.Generator().manual_seed(seed), **kw)
    if mode == "txt2img":
        ref_kw.update(latents=torch.from_numpy(latents), height=HEIGHT, width=WIDTH)
    else:
        ref_kw.update(image=init_image(), strength=strength)
    with torch.no_grad():
        expected = pipe(PROMPT, **ref_kw).images
    assert got.shape == expected.shape == (1, HEIGHT, WIDTH, 3) and got.dtype == np.float32
    diff = float(np.abs(got - expected).max())
    key = (name or Path(model).name, sampler, mode, guidance, steps, negative is None)
    MAX_DIFFS[key] = diff
    print(" ".join(map(str, key)), f"max abs pixel diff {diff * 255:.4f}/255")
    assert diff <= TOLERANCE
    assert expected.std() > 0.01  # a real picture, not a constant
    return got


MATRIX = [("onnxstream", s, m, g) for s in SAMPLER_NAMES for m in ("txt2img", "img2img") for g in (5.0, 1.0)]
MATRIX += [("onnxruntime", "euler", "txt2img", 5.0), ("onnxruntime", "dpmpp_2m", "img2img", 1.0)]


@pytest.mark.parametrize("backend,sampler,mode,guidance", MATRIX)
def test_sdxl_matches_diffusers(request, sdxl_dirs, reference, backend, sampler, mode, guidance):
    model = sdxl_dirs[1] if backend == "onnxruntime" else request.getfixturevalue("sdxl_engine")
    compare(model, reference, sampler, mode, guidance, name=f"sdxl-{backend}")


@pytest.mark.parametrize("mode", ["txt2img", "img2img"])
def test_force_zeros_for_empty_prompt(sdxl_dirs, sdxl_engine, reference, tmp_path, mode):
    """No negative prompt with guidance: zero unconditional embeddings (SDXL base's config), or "" encoded when the
    model's config says force_zeros_for_empty_prompt=False."""
    assert json.loads((sdxl_engine / "manifest.json").read_text())["force_zeros_for_empty_prompt"] is True
    zeros = compare(sdxl_engine, reference, "euler", mode, 5.0, negative=None, name="sdxl-zeros")
    model = tmp_path / "no-zeros"
    shutil.copytree(sdxl_engine, model)
    manifest = json.loads((model / "manifest.json").read_text())
    (model / "manifest.json").write_text(json.dumps({**manifest, "force_zeros_for_empty_prompt": False}))
    txt2img, img2img, config = reference
    for pipe in (txt2img, img2img):
        pipe.register_to_config(force_zeros_for_empty_prompt=False)
    try:
        encoded = compare(model, reference, "euler", mode, 5.0, negative=None, name="sdxl-no-zeros")
    finally:
        for pipe in (txt2img, img2img):
            pipe.register_to_config(force_zeros_for_empty_prompt=True)
    assert np.abs(zeros - encoded).max() > 0.01   # the two unconditional embeddings differ


def test_micro_conditioning_from_real_sizes(sdxl_engine, reference):
    """time_ids follow the sizes given (diffusers' original_size / crops_coords_top_left / target_size), and
    default to the image's own size: another original size changes the image."""
    default = compare(sdxl_engine, reference, "euler", "txt2img", 5.0, steps=3, name="sdxl-micro")
    other = compare(sdxl_engine, reference, "euler", "txt2img", 5.0, steps=3, name="sdxl-micro",
                    original_size=(1024, 768), crops_coords_top_left=(16, 32), target_size=(512, 768))
    assert np.abs(default - other).max() > 0.01


@pytest.mark.parametrize("steps,mode", [(None, "txt2img"), (4, "txt2img"), (2, "img2img")])
def test_sdxl_turbo_matches_diffusers(turbo_dirs, steps, mode):
    """Family defaults for sdxl-turbo: 1 step, guidance 0 (no unconditional pass), trailing timesteps."""
    src, model = turbo_dirs
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["family"] == "sdxl-turbo" and manifest["unet_batches"] == {"1": "unet"}
    for sampler in ("euler_a", "euler"):
        compare(model, load_reference(src, TURBO_SCHEDULER), sampler, mode, None, steps=steps, strength=0.5,
                name="sdxl-turbo")


@pytest.mark.parametrize("guidance", [5.0, 1.0])
def test_refiner_aesthetic_score(refiner_dirs, tmp_path, guidance):
    """requires_aesthetics_score (SDXL refiner: 5 time ids, the aesthetic score in place of the target size; its
    config also sets force_zeros_for_empty_prompt=False): img2img as StableDiffusionXLImg2ImgPipeline; txt2img is
    refused."""
    src, onnx = refiner_dirs
    model = tmp_path / "refiner"
    convert_pipeline(onnx, model)
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["requires_aesthetics_score"] and manifest["time_ids"] == 5
    reference = load_reference(src, refiner=True)
    compare(model, reference, "euler", "img2img", guidance, name="refiner", negative=None)
    compare(model, reference, "dpmpp_2m", "img2img", guidance, name="refiner", aesthetic_score=7.5,
            negative_aesthetic_score=1.5)
    with pytest.raises(ValueError, match="img2img only"):
        StableDiffusion(model)(PROMPT, steps=2)


def test_manifest_and_parts(sdxl_engine, sdxl_dirs):
    manifest = json.loads((sdxl_engine / "manifest.json").read_text())
    assert manifest["family"] == "sdxl" and (manifest["width"], manifest["height"]) == (WIDTH, HEIGHT)
    assert manifest["unet_batches"] == {"1": "unet_batch1", "2": "unet"} and manifest["time_ids"] == 6
    assert [e["hidden"] for e in manifest["text_encoders"]] == ["hidden_states.2", "hidden_states.2"]
    for part in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "vae_decoder", "vae_encoder"):
        assert (sdxl_engine / part).is_dir(), part
    # the first encoder's last layer is not converted: only its penultimate hidden state is read
    graph = json.loads((sdxl_engine / "text_encoder" / "graph.json").read_text())
    assert [o["name"] for o in graph["outputs"]] == ["hidden_states.2"]


def test_tokenizers_match_transformers(sdxl_dirs, sdxl_engine):
    """Both SDXL tokenizers (the second pads with "!") as transformers reads them, on the tokenizer corpus: from the
    diffusers folders and from the converted model's vocab files."""
    from test_tokenizer import make_corpus
    corpus = make_corpus()
    for name in ("tokenizer", "tokenizer_2"):
        reference = transformers.CLIPTokenizer.from_pretrained(str(sdxl_dirs[0] / name))
        theirs = reference(corpus, padding="max_length", max_length=77, truncation=True)["input_ids"]
        for folder in (sdxl_dirs[0] / name, sdxl_engine / name):
            tokenizer = CLIPTokenizer.from_dir(folder)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ours = [tokenizer.encode(t) for t in corpus]
            bad = [(t, a, b) for t, a, b in zip(corpus, ours, theirs) if a != b]
            assert not bad, f"{folder}: {len(bad)} mismatches, first {bad[0]}"
        assert tokenizer.pad_id == reference.pad_token_id == (0 if name == "tokenizer_2" else 49407)


def test_resume_continues_sdxl(sdxl_engine, tmp_path):
    sd = StableDiffusion(sdxl_engine)
    kw = dict(steps=4, guidance=5.0, sampler="dpmpp_2m", seed=3, output_type="np", original_size=(128, 192))
    full = sd(PROMPT, **kw)
    state = tmp_path / "run.npz"

    def interrupt(step, total, seconds):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sd(PROMPT, **kw, save_latents=state, progress=interrupt)
    assert np.array_equal(StableDiffusion(sdxl_engine)(None, resume=state, output_type="np"), full)


def test_zz_report_max_diffs():
    """Prints the max pixel difference per case (run with -s to see it)."""
    for key, diff in sorted(MAX_DIFFS.items(), key=str):
        print(" ".join(map(str, key)), f"{diff * 255:.4f}/255")


def test_big_model_export_path(sdxl_dirs, reference, tmp_path, monkeypatch):
    """The path SDXL's 10 GB UNet takes (export_sdxl._export_without_weights: traced on the meta device, weights
    memory-mapped from safetensors when saving; nn.Linear pre-transposed; the dynamo exporter for every part),
    forced on the tiny pipeline: the same image as diffusers."""
    from onnxstream.pipelines import export_sdxl
    monkeypatch.setattr(export_sdxl, "_too_big", lambda module: True)
    onnx = tmp_path / "onnx"
    convert_pipeline(sdxl_dirs[0], onnx, onnx_only=True, unet_batches=(2,), height=HEIGHT, width=WIDTH)
    assert (onnx / "unet" / "model.onnx.data").is_file()   # weights as external data
    model = tmp_path / "engine"
    convert_pipeline(onnx, model)
    compare(model, reference, "euler", "txt2img", 5.0, name="sdxl-big-path")
