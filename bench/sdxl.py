"""Full-size SDXL networks (random weights): onnxstream vs onnxruntime, each run in a fresh process.

    python bench/sdxl.py [--networks text_encoder,text_encoder_2,unet,vae_decoder] [--weights fp16,int8] [--runs 1]
                         [--ort-memlimit 14G]

Builds the SDXL pipeline with random weights, exports and converts it (bench/sdxl_models.py, cached), then for every
network runs onnxruntime (CPU provider, fp32 weights, under /work/shared/tools/memlimit so that it cannot take a
shared machine down: where it does not fit, the row says so with its peak when killed) and onnxstream (fp16, int8)
on the same inputs: UNet batch 2 (guidance) on a 128x128 latent, the VAE decoder on a 128x128 latent (1024x1024
image). Same table as bench/sd15.py: median time per run, peak RSS (VmHWM), MB read and written per run, relative
L2 error and PSNR vs onnxruntime fp32, time ratio.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "python"))
import sdxl_models  # noqa: E402
from sd15 import RUNNER, errors, print_table  # noqa: E402

NETWORKS = ("text_encoder", "text_encoder_2", "unet", "vae_decoder")
MEMLIMIT = "/work/shared/tools/memlimit"


def inputs(net: str, size: int = 1024, batch: int = 2) -> dict:
    rng = np.random.default_rng(0)
    h = size // 8
    if net.startswith("text_encoder"):
        ids = np.concatenate([[49406], rng.integers(300, 40000, 20), [49407] * 56]).astype(np.int64)
        return {"input_ids": ids[None]}
    if net == "unet":
        return {"sample": rng.standard_normal((batch, 4, h, h)).astype(np.float32),
                "timestep": np.array([500.0], np.float32),
                "encoder_hidden_states": rng.standard_normal((batch, 77, 2048)).astype(np.float32),
                "text_embeds": rng.standard_normal((batch, 1280)).astype(np.float32),
                "time_ids": np.array([[size, size, 0, 0, size, size]] * batch, np.float32)}
    return {"latent_sample": (rng.standard_normal((1, 4, h, h)) / 0.13025).astype(np.float32)}


def run_engine(engine, model, feeds, out, runs, memlimit=None) -> dict:
    cmd = [sys.executable, "-c", RUNNER, engine, str(model), str(feeds), str(out), str(runs)]
    if memlimit:
        cmd = [MEMLIMIT, memlimit] + cmd
    env_path = str(ROOT / "python")
    r = subprocess.run(["nice", "-n", "10"] + cmd, capture_output=True, text=True,
                       env={**__import__("os").environ, "PYTHONPATH": env_path})
    limit = next((line for line in r.stderr.splitlines() if line.startswith("memlimit:")), "")
    if r.returncode != 0:
        return {"error": limit or (r.stderr.strip().splitlines() or ["killed"])[-1]}
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["outputs"] = dict(np.load(out))
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", default=",".join(NETWORKS))
    p.add_argument("--weights", default="fp16,int8")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--ort-memlimit", default="14G", help="hard limit for the onnxruntime runs (memlimit)")
    args = p.parse_args()
    onnx = sdxl_models.onnx_dir(False, 1024, 2)
    models = {w: sdxl_models.converted(False, 1024, 2, w) for w in args.weights.split(",")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for net in args.networks.split(","):
            feeds = tmp / f"{net}-feeds.npz"
            np.savez(feeds, **inputs(net))
            print(f"running onnxruntime on {net}", file=sys.stderr, flush=True)
            ref = run_engine("onnxruntime", onnx / net / "model.onnx", feeds, tmp / "ref.npz", args.runs,
                             args.ort_memlimit)
            rows.append((net, "fp32", "onnxruntime", ref, None))
            for weights, model in models.items():
                print(f"running onnxstream on {net} ({weights})", file=sys.stderr, flush=True)
                ours = run_engine("onnxstream", model / net, feeds, tmp / "ours.npz", args.runs)
                rows.append((net, weights, "onnxstream", ours, errors(ours, ref)))
            print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
