"""One picture of the frame, top to bottom: generate at the panel's size with a checkpoint after every step,
save the full-colour PNG, dither it to the panel's colours, save the panel image.

The checkpoint (STATE_DIR/picture.npz: latents, sampler state, random generator state, parameters; about
100 KB at 800x480) is pipelines/latents_file.py's, rewritten atomically after every step; after a power cut
the next start resumes at the last completed step and ends with the same picture, byte for byte. The caller
removes the checkpoint once the schedule has recorded the picture as done.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..pipelines.images import png_bytes, to_uint8, write_atomic
from ..pipelines.latents_file import load_latents
from .dither import dither

CHECKPOINT = "picture.npz"


def paths(output: Path, number: int) -> tuple[Path, Path]:
    """(full-colour PNG, panel image) of picture `number`."""
    return output / f"frame-{number:05d}.png", output / f"frame-{number:05d}-panel.png"


def _resumable(checkpoint: Path, job: dict, log) -> Path | None:
    """The checkpoint if it belongs to this picture (same seed and prompt), else None (and it is removed)."""
    if not checkpoint.is_file():
        return None
    try:
        saved = load_latents(checkpoint)["params"]
    except ValueError as e:
        log(f"picture {job['number']}: checkpoint unreadable ({e}); starting the picture again")
        checkpoint.unlink()
        return None
    if saved.get("seed") != job["seed"] or saved.get("prompt") != job["prompt"]:
        checkpoint.unlink()
        return None
    return checkpoint


def make(sd, job: dict, output: Path, state_dir: Path, panel, saturation: float, space: str, log) -> dict:
    """Make picture job["number"] (job: number, seed, template, prompt, steps, guidance, sampler, decoder).
    Returns the finished picture: paths, the parameters as written and the panel's palette indices."""
    checkpoint = state_dir / CHECKPOINT
    resume = _resumable(checkpoint, job, log)
    if resume is not None:
        done = load_latents(resume)["done"]
        log(f"picture {job['number']}: resuming after step {done} (checkpoint {checkpoint})")
    started = time.time()

    def progress(step, total, seconds):
        eta = seconds * (total - step)
        log(f"picture {job['number']} step {step}/{total}  {seconds:.1f} s/step  ETA {format_duration(eta)}")

    kw = dict(steps=job["steps"], guidance=job["guidance"], sampler=job["sampler"], seed=job["seed"],
              decoder=job.get("decoder") or "vae")
    # H x W x 3 float in [0, 1]; a resumed run takes every parameter from the checkpoint
    image = sd(job["prompt"], **kw, output_type="np", progress=progress, save_latents=checkpoint,
               resume=resume)[0]
    p = sd.last_params
    text = {"prompt": p["prompt"], "negative_prompt": "", "seed": p["seed"], "steps": p["steps"],
            "sampler": p["sampler"], "guidance": p["guidance"], "model": Path(sd.model_dir).resolve().name,
            "size": f"{p['width']}x{p['height']}", "software": "onnxstream frame", "template": job["template"],
            "picture": job["number"], "panel": panel.name, "decoder": p["decoder"]}
    colour, panel_png = paths(output, job["number"])
    pixels = to_uint8(image)                                       # [H, W, 3] uint8
    write_atomic(colour, png_bytes(pixels, text))
    t = time.time()
    indices = dither(pixels, panel.palette(saturation), space)     # [H, W] palette indices
    dither_seconds = time.time() - t
    write_atomic(panel_png, png_bytes(indices, {**text, "saturation": saturation, "dither": space},
                                      palette=np.asarray(panel.pure, np.uint8)))
    return dict(colour=colour, panel=panel_png, indices=indices, text=text, seconds=time.time() - started,
                dither_seconds=dither_seconds)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
