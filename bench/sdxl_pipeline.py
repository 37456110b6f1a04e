"""Full-size SDXL and SDXL Turbo pipelines (random weights), end to end under a hard memory limit.

    python bench/sdxl_pipeline.py [--weights fp16] [--memlimit turbo=256M,sdxl=320M] [--runs turbo,sdxl]

turbo: SDXL Turbo 512x512, 1 step, guidance 0 (one batch-1 UNet pass); sdxl: SDXL 1024x1024, guidance 5, 2 steps
(one batch-2 UNet pass per step). Models from bench/sdxl_models.py (built, exported and converted once, cached).
Each run is one fresh process started under /work/shared/tools/memlimit LIMIT (a cgroup limit that also charges
the page cache) and prints: time of the text encoders, per UNet step and of the VAE decode, total, the peak RSS of
each part (VmHWM reset before each part), MB written during the run (/proc/self/io), exit status and whether the
kernel's OOM killer fired.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "python"))
import sdxl_models  # noqa: E402

RUNS = {"turbo": dict(turbo=True, size=512, batch=1, steps=1, guidance=0.0, sampler="euler_a"),
        "sdxl": dict(turbo=False, size=1024, batch=2, steps=2, guidance=5.0, sampler="euler")}

RUNNER = ROOT / "bench" / "pipeline_runner.py"  # one txt2img run, timed part by part, in a fresh process


def run(model: Path, cfg: dict, memlimit: str | None):
    cmd = [sys.executable, str(RUNNER), str(model), str(cfg["steps"]), str(cfg["guidance"]), cfg["sampler"]]
    if memlimit:
        cmd = ["/work/shared/tools/memlimit", memlimit] + cmd
    result = subprocess.run(["nice", "-n", "10"] + cmd, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "python")})
    limit = next((line for line in result.stderr.splitlines() if line.startswith("memlimit:")), "")
    if result.returncode != 0:
        return None, limit or " ".join(result.stderr.strip().splitlines()[-1:])
    return json.loads(result.stdout.strip().splitlines()[-1]), limit


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="fp16", choices=["fp32", "fp16", "int8"])
    ap.add_argument("--memlimit", default="turbo=256M,sdxl=320M", help="per run: name=LIMIT,...; '' for none")
    ap.add_argument("--runs", default="turbo,sdxl")
    args = ap.parse_args()
    limits = dict(item.split("=") for item in args.memlimit.split(",") if item)
    print("| run | limit | text encoders s | UNet s/step | VAE decode s | total s | peak RSS MB: text / UNet / VAE "
          "| MB written | result |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.runs.split(","):
        cfg = RUNS[name]
        model = sdxl_models.converted(cfg["turbo"], cfg["size"], cfg["batch"], args.weights)
        result, note = run(model, cfg, limits.get(name))
        label = f"{name} {cfg['size']}x{cfg['size']}, {cfg['steps']} step(s), guidance {cfg['guidance']:g}"
        if result is None:
            print(f"| {label} | {limits.get(name, 'none')} | failed | | | | | | {note} |")
            continue
        per_step, peaks = sum(result["steps"]) / len(result["steps"]), result["peaks"]
        print(f"| {label} | {limits.get(name, 'none')} | {result['text']:.1f} | {per_step:.1f} | {result['vae']:.1f} | "
              f"{result['total']:.0f} | {peaks['text']:.0f} / {peaks['unet']:.0f} / {peaks['vae']:.0f} | "
              f"{result['written_mb']:.1f} | {note or 'rc=0'}{'' if result['finite'] else ', NaN in image'} |",
              flush=True)


if __name__ == "__main__":
    main()
