"""TAESD vs the full VAE decoder: decode time and peak RSS at 512x512 and 800x480, each decode in a fresh process.

    python bench/taesd.py [--sizes 512x512,800x480] [--weights fp16] [--runs 1]

Full-size random weights: SD1.5's AutoencoderKL (the real vae/config.json, tests/modelzoo.py) and diffusers'
AutoencoderTiny with madebyollin/taesd's config. The decoders are exported with the pipeline's own export code
(TorchScript, as `onnxstream convert` does), converted (cached under ~/.cache/onnxstream/taesd-bench, keyed by
converter revision), then onnxstream and onnxruntime each decode the same latents in a fresh process (one decode
by default, as a pipeline run does: the first run, weights read from disk). Prints one markdown table: time per
decode, peak RSS (VmHWM of the process, loading included), and the output's relative L2 vs onnxruntime.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "python"))
from sd15 import converter_revision, rel_l2, run_engine  # noqa: E402
from cache_dir import atomic_dir  # noqa: E402

CACHE = Path(os.environ.get("ONNXSTREAM_MODEL_CACHE", Path.home() / ".cache" / "onnxstream")) / "taesd-bench"
DECODERS = ("taesd", "vae")




def _save_taesd(out: Path):
    import torch
    from diffusers import AutoencoderTiny
    torch.manual_seed(0)
    AutoencoderTiny().save_pretrained(out)


def export_decoder(decoder: str, width: int, height: int) -> Path:
    """The decoder's ONNX file for width x height latents' images (exported once, cached)."""
    def make(tmp: Path):
        import torch
        from onnxstream.pipelines.export_tiny_vae import export_tiny_vae
        from onnxstream.pipelines.export_torch import _export, _wrappers
        if decoder == "taesd":
            export_tiny_vae(taesd, tmp, height, width, latent_channels=4, vae_scale_factor=8)
            shutil.move(str(tmp / "taesd_decoder" / "model.onnx"), tmp / "model.onnx")
            return
        import modelzoo
        from diffusers import AutoencoderKL
        torch.manual_seed(0)
        vae = AutoencoderKL(**modelzoo._vae_config(True)).eval()
        _export(_wrappers()[2](vae), (torch.zeros(1, 4, height // 8, width // 8),), tmp / "model.onnx",
                ["latent_sample"], ["sample"])

    taesd = atomic_dir(CACHE / "taesd-random", _save_taesd)
    return atomic_dir(CACHE / f"{decoder}-{width}x{height}", make) / "model.onnx"


def converted(onnx_path: Path, weights: str) -> Path:
    from onnxstream.converter import convert
    name = onnx_path.parent.name
    out = CACHE / "converted" / f"{name}-{weights}-{converter_revision()}"
    if not out.exists():
        for stale in out.parent.glob(f"{name}-{weights}-*"):  # older converter revisions
            shutil.rmtree(stale, ignore_errors=True)
        start = time.time()
        convert(onnx_path, out, weights=weights)
        print(f"converted {name} ({weights}) in {time.time() - start:.0f} s", file=sys.stderr)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="512x512,800x480", help="comma-separated WxH image sizes")
    p.add_argument("--weights", default="fp16", choices=["fp32", "fp16", "int8"])
    p.add_argument("--runs", type=int, default=1, help="decodes per process (the median is reported)")
    args = p.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")])
    print("| decoder | image | onnxstream s | onnxstream peak RSS MB | onnxruntime s | onnxruntime peak RSS MB "
          "| time onnxstream / onnxruntime | rel L2 vs onnxruntime |\n|---|---|---|---|---|---|---|---|")
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            feeds = Path(tmp) / f"latents-{size}.npz"
            latents = np.random.default_rng(0).standard_normal((1, 4, height // 8, width // 8)).astype(np.float32)
            np.savez(feeds, latent_sample=latents)
            for decoder in DECODERS:
                onnx_path = export_decoder(decoder, width, height)
                ort = run_engine("onnxruntime", onnx_path, feeds, Path(tmp) / "ort.npz", args.runs)
                ours = run_engine("onnxstream", converted(onnx_path, args.weights), feeds, Path(tmp) / "os.npz",
                                  args.runs)
                if "error" in ort or "error" in ours:
                    print(f"| {decoder} | {size} | failed: {ours.get('error') or ort.get('error')} | | | | | |")
                    continue
                seconds[decoder, size] = ours["seconds"]
                err = rel_l2(ours["outputs"]["sample"], ort["outputs"]["sample"])
                print(f"| {decoder} | {size} | {ours['seconds']:.2f} | {ours['peak_mb']:.0f} | {ort['seconds']:.2f} "
                      f"| {ort['peak_mb']:.0f} | {ours['seconds'] / ort['seconds']:.2f} | {err:.1e} |", flush=True)
    for size in args.sizes.split(","):
        if ("taesd", size) in seconds and ("vae", size) in seconds:
            print(f"\n{size}: TAESD decodes {seconds['vae', size] / seconds['taesd', size]:.1f}x faster than the "
                  f"full VAE (onnxstream, {args.weights} weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
