"""One e-ink frame picture at 800x480 with a full-size SD-Turbo-shaped pipeline: time, peak RSS, bytes written.

    python bench/frame.py [--weights fp16] [--decoders vae,taesd] [--memlimit 1G]

Builds a diffusers pipeline with SD-Turbo's shapes (stabilityai/sd-turbo: the SD 2.1 UNet with linear-projection
attention and per-block head dims, the OpenCLIP ViT-H text encoder, SD's VAE, SD-Turbo's scheduler config) with
random weights and CLIP's real BPE vocabulary, and TAESD (AutoencoderTiny, madebyollin/taesd's config, random
weights); converts both at 800x480 (`convert_pipeline(..., width=800, height=480, tiny_vae=...)`, cached under
~/.cache/onnxstream/frame-bench, keyed by converter revision); then runs, per decoder, in a fresh process each,
what a frame runs: `onnxstream frame --once --steps 1 --display none --decoder D` (SD-Turbo's defaults: Euler,
guidance 0, so one batch-1 UNet pass), and prints one markdown table from the frame's own log line: the picture's
time, the process's peak RSS (VmHWM) and the bytes it wrote (/proc/self/io write_bytes). With --memlimit the
same runs go under /work/shared/tools/memlimit too (a hard cgroup limit that also charges the page cache).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "python"))
from sd15 import converter_revision  # noqa: E402
from cache_dir import atomic_dir  # noqa: E402
from taesd import _save_taesd  # noqa: E402

CACHE = Path(os.environ.get("ONNXSTREAM_MODEL_CACHE", Path.home() / ".cache" / "onnxstream")) / "frame-bench"
MEMLIMIT = Path("/work/shared/tools/memlimit")
WIDTH, HEIGHT = 800, 480
PROMPTS = "a {watercolor|linocut} painting of a lighthouse on a cliff at dusk\n"
UNET = dict(  # stabilityai/sd-turbo unet/config.json (the SD 2.1 UNet at sample size 64)
    sample_size=64, in_channels=4, out_channels=4, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32,
    norm_eps=1e-5, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)
TEXT_ENCODER = dict(  # stabilityai/sd-turbo text_encoder/config.json (OpenCLIP ViT-H/14 text tower)
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=512, pad_token_id=1,
    bos_token_id=0, eos_token_id=2)


def build_diffusers_dir(tmp: Path):
    import torch
    import transformers
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    import modelzoo
    from test_pipeline import TURBO_SCHEDULER
    from test_tokenizer import SD21_CONFIG, original_merges_gz, write_vocab_files
    with tempfile.TemporaryDirectory() as tok:
        tokenizer = transformers.CLIPTokenizer.from_pretrained(
            str(write_vocab_files(original_merges_gz(), Path(tok), SD21_CONFIG)))
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**modelzoo._vae_config(True)), unet=UNet2DConditionModel(**UNET),
        text_encoder=transformers.CLIPTextModel(transformers.CLIPTextConfig(**TEXT_ENCODER)), tokenizer=tokenizer,
        scheduler=EulerDiscreteScheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.save_pretrained(tmp)  # safetensors
    (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(TURBO_SCHEDULER))


def converted_model(weights: str) -> Path:
    from onnxstream.pipelines.convert_pipeline import convert_pipeline
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    diffusers_dir = atomic_dir(CACHE / "sd-turbo-random", build_diffusers_dir)
    taesd = atomic_dir(CACHE / "taesd-random", _save_taesd)
    out = CACHE / f"sd-turbo-{WIDTH}x{HEIGHT}-{weights}-{converter_revision()}"
    if not out.is_dir():
        start = time.perf_counter()
        convert_pipeline(diffusers_dir, out, weights=weights, width=WIDTH, height=HEIGHT, tiny_vae=taesd,
                         progress=log)  # a temp dir renamed at the end
        log(f"converted in {time.perf_counter() - start:.0f} s")
    return out


DONE = re.compile(r"done in (?P<time>\S+): .*dithered in (?P<dither>[\d.]+) s\); wrote (?P<mb>[\d.]+) MB to disk; "
                  r"peak RSS (?P<peak>\d+) MB")


def run_frame(model: Path, decoder: str, memlimit: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="frame-bench-") as work:
        work = Path(work)
        (work / "prompts.txt").write_text(PROMPTS)
        cmd = [sys.executable, "-m", "onnxstream", "frame", "--model", str(model), "--prompts",
               str(work / "prompts.txt"), "--display", "none", "--once", "--steps", "1", "--seed", "3",
               "--decoder", decoder, "--output", str(work / "pictures"), "--state-dir", str(work / "state")]
        if memlimit:
            cmd = [str(MEMLIMIT), memlimit, *cmd]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "PYTHONDONTWRITEBYTECODE": "1"}
        start = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
    found = DONE.search(r.stdout)
    if r.returncode != 0 or not found:
        tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:]
        return {"error": f"exit {r.returncode}: {' '.join(tail)}"}
    limit = next((line for line in r.stderr.splitlines() if line.startswith("memlimit:")), "")
    return {"wall": wall, **found.groupdict(), "limit": limit}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="fp16", choices=["fp32", "fp16", "int8"])
    ap.add_argument("--decoders", default="vae,taesd")
    ap.add_argument("--memlimit", default=None, help="also run under /work/shared/tools/memlimit LIMIT, e.g. 1G")
    args = ap.parse_args()
    if args.memlimit and not MEMLIMIT.is_file():
        sys.exit(f"bench/frame.py: --memlimit needs {MEMLIMIT}")
    model = converted_model(args.weights)
    print(f"model: {model} ({args.weights} weights, {WIDTH}x{HEIGHT}, SD-Turbo defaults: 1 step, Euler, guidance 0)\n")
    print("| decoder | limit | picture s (frame log) | process wall s | peak RSS MB | written MB | dithering s |")
    print("|---|---|---|---|---|---|---|")
    for limit in [None] + ([args.memlimit] if args.memlimit else []):
        for decoder in args.decoders.split(","):
            r = run_frame(model, decoder, limit)
            name = f"memlimit {limit}" if limit else "none"
            if "error" in r:
                print(f"| {decoder} | {name} | failed: {r['error']} | | | | |", flush=True)
                continue
            print(f"| {decoder} | {name} | {r['time']} | {r['wall']:.1f} | {r['peak']} | {r['mb']} | {r['dither']} |"
                  + (f" {r['limit']}" if r["limit"] else ""), flush=True)


if __name__ == "__main__":
    main()
