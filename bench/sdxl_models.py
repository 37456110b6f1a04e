"""Full-size SDXL / SDXL Turbo pipelines with random weights, for bench/sdxl.py and bench/sdxl_pipeline.py.

    python bench/sdxl_models.py [--size 1024 --batch 2] [--weights fp16,int8]   # build, export, convert (cached)

The real stabilityai/stable-diffusion-xl-base-1.0 configs (UNet 2.6B parameters, CLIP ViT-L + OpenCLIP bigG
text encoders, the SDXL VAE), random weights, CLIP's real BPE vocabulary. Each component is built and saved on its
own (save_pretrained, safetensors), so at most the UNet (10.3 GB in float32) is in memory. SDXL Turbo is the same
networks with Turbo's scheduler (a directory of links). Exports (convert --onnx-only) and conversions are cached
under ~/.cache/onnxstream/sdxl-bench, each written to a temp dir renamed at the end; a conversion is keyed by the
converter's revision (bench/sd15.py; ONNXSTREAM_BENCH_REUSE=1 takes the newest conversion of any revision).
Every step prints its time and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from cache_dir import atomic_dir  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("ONNXSTREAM_MODEL_CACHE", Path.home() / ".cache" / "onnxstream")) / "sdxl-bench"

UNET = dict(  # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
    act_fn="silu", addition_embed_type="text_time", addition_embed_type_num_heads=64, addition_time_embed_dim=256,
    attention_head_dim=[5, 10, 20], block_out_channels=[320, 640, 1280], center_input_sample=False,
    cross_attention_dim=2048, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2,
    mid_block_scale_factor=1, norm_eps=1e-05, norm_num_groups=32, out_channels=4,
    projection_class_embeddings_input_dim=2816, sample_size=128, transformer_layers_per_block=[1, 2, 10],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], upcast_attention=False,
    use_linear_projection=True)
VAE = dict(  # stabilityai/stable-diffusion-xl-base-1.0 vae/config.json
    act_fn="silu", block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
    in_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, out_channels=3, sample_size=1024,
    scaling_factor=0.13025, up_block_types=["UpDecoderBlock2D"] * 4, force_upcast=True)
TEXT_ENCODER = dict(  # CLIP ViT-L/14 text tower
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, bos_token_id=49406, eos_token_id=49407,
    pad_token_id=1)
TEXT_ENCODER_2 = dict(  # OpenCLIP ViT-bigG/14 text tower, with projection
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=1280, bos_token_id=49406, eos_token_id=49407,
    pad_token_id=1)
SCHEDULER = {  # stabilityai/stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json
    "_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.19.0.dev0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear",
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None,
    "use_karras_sigmas": False}
TURBO_SCHEDULER = {**SCHEDULER, "_class_name": "EulerAncestralDiscreteScheduler", "timestep_spacing": "trailing"}
COMPONENTS = {"text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers",
              "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"],
              "tokenizer_2": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
              "vae": ["diffusers", "AutoencoderKL"]}


def log(msg):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[{time.strftime('%H:%M:%S')}] {msg} (peak RSS so far {peak:.0f} MB)", file=sys.stderr, flush=True)




def _index(class_name, scheduler):
    return {"_class_name": class_name, "_diffusers_version": "0.42.1", "force_zeros_for_empty_prompt": True,
            **COMPONENTS, "scheduler": ["diffusers", scheduler["_class_name"]]}


def diffusers_dir() -> Path:
    """The random-weight SDXL pipeline, saved like a downloaded one."""
    def build(tmp: Path):
        import torch
        import transformers
        from diffusers import AutoencoderKL, UNet2DConditionModel
        sys.path.insert(0, str(ROOT / "tests"))
        from test_tokenizer import SD15_CONFIG, SD21_CONFIG, original_merges_gz, write_vocab_files
        gz = original_merges_gz()
        for name, config in (("tokenizer", SD15_CONFIG), ("tokenizer_2", SD21_CONFIG)):
            tok = transformers.CLIPTokenizer.from_pretrained(str(write_vocab_files(gz, tmp / f".{name}", config)))
            tok.save_pretrained(tmp / name)
            shutil.rmtree(tmp / f".{name}")
        torch.manual_seed(0)
        for name, make in (("text_encoder", lambda: transformers.CLIPTextModel(
                                transformers.CLIPTextConfig(**TEXT_ENCODER))),
                           ("text_encoder_2", lambda: transformers.CLIPTextModelWithProjection(
                               transformers.CLIPTextConfig(**TEXT_ENCODER_2))),
                           ("vae", lambda: AutoencoderKL(**VAE)), ("unet", lambda: UNet2DConditionModel(**UNET))):
            log(f"building {name}")
            with torch.no_grad():
                model = make().eval()
            model.save_pretrained(tmp / name, safe_serialization=True)
            del model
        (tmp / "scheduler").mkdir()
        (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER, indent=2))
        (tmp / "model_index.json").write_text(json.dumps(_index("StableDiffusionXLPipeline", SCHEDULER), indent=2))
    return atomic_dir(CACHE / "diffusers", build)


def turbo_dir() -> Path:
    """SDXL Turbo: the same networks (links) with SDXL Turbo's scheduler."""
    base = diffusers_dir()

    def build(tmp: Path):
        for name in COMPONENTS:
            (tmp / name).symlink_to(base / name, target_is_directory=True)
        (tmp / "scheduler").mkdir()
        (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(TURBO_SCHEDULER, indent=2))
        (tmp / "model_index.json").write_text(json.dumps(_index("StableDiffusionXLPipeline", TURBO_SCHEDULER),
                                                         indent=2))
    return atomic_dir(CACHE / "turbo-diffusers", build)


def onnx_dir(turbo: bool, size: int, batch: int) -> Path:
    """The pipeline's ONNX exports (convert --onnx-only) for one image size and UNet batch."""
    from onnxstream.pipelines.convert_pipeline import convert_pipeline
    src = turbo_dir() if turbo else diffusers_dir()
    out = CACHE / f"onnx-{'turbo' if turbo else 'sdxl'}-{size}-b{batch}"
    if not out.is_dir():
        start = time.time()
        convert_pipeline(src, out, height=size, width=size, unet_batches=(batch,), onnx_only=True, progress=log)
        log(f"exported {out.name} in {time.time() - start:.0f} s")
    return out


def converted(turbo: bool, size: int, batch: int, weights: str) -> Path:
    from onnxstream.pipelines.convert_pipeline import convert_pipeline
    sys.path.insert(0, str(ROOT / "bench"))
    from sd15 import converter_revision
    src = onnx_dir(turbo, size, batch)
    prefix = f"{'turbo' if turbo else 'sdxl'}-{size}-b{batch}-{weights}"
    out = CACHE / f"{prefix}-{converter_revision()}"
    existing = sorted(CACHE.glob(f"{prefix}-*"), key=lambda d: d.stat().st_mtime)
    if not out.is_dir() and existing and os.environ.get("ONNXSTREAM_BENCH_REUSE"):   # any revision will do
        return existing[-1]
    if not out.is_dir():
        for stale in CACHE.glob(f"{prefix}-*"):   # older converter revisions: GBs each
            shutil.rmtree(stale, ignore_errors=True)
        start = time.time()
        convert_pipeline(src, out, weights=weights, progress=log)
        log(f"converted {out.name} in {time.time() - start:.0f} s")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turbo", action="store_true")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--weights", default="fp16", help="comma-separated, or 'none' to stop after the export")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "python"))
    onnx_dir(args.turbo, args.size, args.batch)
    for weights in args.weights.split(","):
        if weights != "none":
            print(converted(args.turbo, args.size, args.batch, weights))


if __name__ == "__main__":
    main()
