"""Full-size SD1.5-shaped pipeline (random weights) at 512x512, end to end: time per step, total, peak RSS.

    python bench/sd15_pipeline.py [--steps 3] [--weights fp16] [--memlimit 1G]

Builds a diffusers pipeline with the real SD1.5 configs (UNet2DConditionModel, AutoencoderKL, CLIPTextModel,
random weights, CLIP's real BPE vocabulary) and saves it with save_pretrained, converts it with
`convert_pipeline` (exported to ONNX, then converted; all cached under ~/.cache/onnxstream/pipeline-bench), then runs one txt2img generation
(guidance 7.5: one batch-2 UNet pass per step) in a fresh process and prints a markdown table: text encoder,
time per UNet step, VAE decode, total, and the peak RSS of each part (VmHWM of that process, reset
before each part through /proc/self/clear_refs). With --memlimit it also runs the same
command under /work/shared/tools/memlimit (a cgroup limit that also charges the page cache).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("ONNXSTREAM_MODEL_CACHE", Path.home() / ".cache" / "onnxstream")) / "pipeline-bench"
SD15_SCHEDULER = {  # runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json
    "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
    "clip_sample": False}


def build_diffusers_dir(out: Path):
    """Random-weight SD1.5-shaped pipeline, saved like a downloaded one."""
    import torch
    import transformers
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    sys.path.insert(0, str(ROOT / "tests"))
    import modelzoo
    from test_tokenizer import SD15_CONFIG, original_merges_gz, write_vocab_files
    work = Path(tempfile.mkdtemp(prefix=".sd15-", dir=out.parent))
    tokenizer = transformers.CLIPTokenizer.from_pretrained(
        str(write_vocab_files(original_merges_gz(), work / "tok", SD15_CONFIG)))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**modelzoo._unet_config(True))
    vae = AutoencoderKL(**modelzoo._vae_config(True))
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(**modelzoo._clip_config(True)))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=EulerDiscreteScheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(work / "pipe")
    (work / "pipe" / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD15_SCHEDULER))
    os.replace(work / "pipe", out)
    shutil.rmtree(work)


RUNNER = ROOT / "bench" / "pipeline_runner.py"  # one txt2img run, timed part by part, in a fresh process


def run(model: Path, steps: int, memlimit=None):
    cmd = [sys.executable, str(RUNNER), str(model), str(steps), "7.5", "euler"]
    if memlimit:
        cmd = ["/work/shared/tools/memlimit", memlimit] + cmd
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    limit_line = next((l for l in result.stderr.splitlines() if l.startswith("memlimit:")), "")
    if result.returncode != 0:
        return None, (limit_line or result.stderr.strip().splitlines()[-1:])
    return json.loads(result.stdout.strip().splitlines()[-1]), limit_line


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--weights", default="fp16", choices=["fp32", "fp16", "int8"])
    ap.add_argument("--memlimit", default=None, help="also run under /work/shared/tools/memlimit LIMIT, e.g. 1G")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "python"))
    from onnxstream.pipelines.convert_pipeline import convert_pipeline

    from sd15 import converter_revision
    diffusers_dir = CACHE / "sd15-random" / "diffusers"
    converted = CACHE / "sd15-random" / f"converted-{args.weights}-{converter_revision()}"
    if not diffusers_dir.is_dir():
        diffusers_dir.parent.mkdir(parents=True, exist_ok=True)
        print("building the random-weight SD1.5 pipeline", file=sys.stderr)
        build_diffusers_dir(diffusers_dir)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    onnx_dir = diffusers_dir.parent / "onnx"  # the torch export, kept: re-converting after engine changes is cheap
    if not onnx_dir.is_dir():
        convert_pipeline(diffusers_dir, onnx_dir, onnx_only=True, progress=log)
    if not converted.is_dir():
        for stale in converted.parent.glob(f"converted-{args.weights}*"):  # older converter revisions
            shutil.rmtree(stale, ignore_errors=True)
        convert_pipeline(onnx_dir, converted, weights=args.weights, progress=log)
    unet_mb = sum(f.stat().st_size for f in (converted / "unet").rglob("*") if f.is_file()) / 2**20
    print(f"model: {converted} (UNet dir {unet_mb:.0f} MB, {args.weights} weights)\n")
    print("| run | text encoder s | UNet s/step (batch 2) | VAE decode s | total s | peak RSS MB: text / UNet / VAE "
          "| RSS at exit MB (anon + file) |")
    print("|---|---|---|---|---|---|---|")
    for limit in [None] + ([args.memlimit] if args.memlimit else []):
        result, note = run(converted, args.steps, limit)
        name = f"memlimit {limit}" if limit else "no limit"
        if result is None:
            print(f"| {name} | failed: {note} | | | | | |")
            continue
        per_step, peaks = sum(result["steps"]) / len(result["steps"]), result["peaks"]
        print(f"| {name} | {result['text']:.2f} | {per_step:.2f} | {result['vae']:.2f} | {result['total']:.1f} | "
              f"{peaks['text']:.0f} / {peaks['unet']:.0f} / {peaks['vae']:.0f} | "
              f"{result['anon_mb']:.0f} + {result['file_mb']:.0f} |"
              + (f" {note}" if note else ""))


if __name__ == "__main__":
    main()
