"""`onnxstream sd`: Stable Diffusion txt2img / img2img from the command line.

User errors (missing model part, unknown sampler, bad size, unreadable init image) print one line and exit 1
through cli.main; the output file is written only at the end, atomically.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..schedulers import SAMPLERS
from .stable_diffusion import DECODERS


def add_parser(sub):
    s = sub.add_parser("sd", help="Stable Diffusion txt2img / img2img on a converted pipeline")
    s.add_argument("--model", required=True, help="a pipeline directory made by `onnxstream convert`")
    s.add_argument("--prompt", help="what to draw (required unless --resume)")
    s.add_argument("--negative-prompt", default=None)
    s.add_argument("--steps", type=int, default=None, help="sampling steps (default 20; sd-turbo: 1)")
    s.add_argument("--guidance", type=float, default=None, help="guidance scale (default 7.5; sd-turbo: 0); <= 1 skips the unconditional pass")
    s.add_argument("--sampler", default="euler", help=f"one of {', '.join(SAMPLERS)}")
    s.add_argument("--seed", type=int, default=None, help="random seed (default: random, stored in the PNG)")
    s.add_argument("--width", type=int, default=None, help="must be the size the model was converted for")
    s.add_argument("--height", type=int, default=None)
    s.add_argument("--num", type=int, default=1, help="number of images (out.png, out-1.png, ...)")
    s.add_argument("--init-image", default=None, help="img2img: the starting picture")
    s.add_argument("--strength", type=float, default=0.8, help="img2img: how much to change it (0..1]")
    s.add_argument("--output", default="out.png")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--save-latents", default=None, metavar="FILE", help="save the state after every step")
    s.add_argument("--resume", default=None, metavar="FILE", help="continue a run saved with --save-latents")
    s.add_argument("--decoder", choices=DECODERS, default="vae",
                   help="vae (default) or taesd: the tiny autoencoder (convert --tiny-vae), many times faster, "
                        "slightly softer; also encodes --init-image")
    s.add_argument("--preview", default=None, metavar="FILE",
                   help="write a PNG of the picture so far every --preview-every steps (TAESD when converted)")
    s.add_argument("--preview-every", type=int, default=1, metavar="N", help="steps between previews (default 1)")
    s.set_defaults(func=cmd_sd)


class Progress:
    """Progress on stderr: tqdm when installed, else one rewritten line with per-step time and ETA."""

    def __init__(self):
        self.bar, self.started = None, time.perf_counter()

    def __call__(self, step, total, seconds):
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            if self.bar is None:
                self.bar = tqdm(total=total, initial=step - 1, unit="step", file=sys.stderr)
            self.bar.set_postfix_str(f"{seconds:.2f} s/step")
            self.bar.update(1)
            return
        eta = seconds * (total - step)
        print(f"\rstep {step}/{total}  {seconds:.2f} s/step  ETA {eta:.0f} s", end="", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        else:
            print(file=sys.stderr)


def output_paths(output: str, num: int):
    out = Path(output)
    return [out] + [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, num)]


def cmd_sd(args) -> int:
    from .images import save_png
    from .stable_diffusion import StableDiffusion
    if args.prompt is None and args.resume is None:
        raise ValueError("--prompt is required (or --resume FILE)")
    if args.num < 1:
        raise ValueError(f"--num must be at least 1, got {args.num}")
    out = Path(args.output)
    if not out.parent.is_dir():
        raise ValueError(f"output folder {out.parent} does not exist")
    if args.preview is not None and not Path(args.preview).parent.is_dir():
        raise ValueError(f"preview folder {Path(args.preview).parent} does not exist")
    sd = StableDiffusion(args.model, threads=args.threads)
    progress = Progress()
    try:
        images = sd(args.prompt, negative_prompt=args.negative_prompt, steps=args.steps, guidance=args.guidance,
                    sampler=args.sampler, seed=args.seed, width=args.width, height=args.height,
                    init_image=args.init_image, strength=args.strength, num=args.num, output_type="np",
                    progress=progress, save_latents=args.save_latents, resume=args.resume, decoder=args.decoder,
                    preview=args.preview, preview_every=args.preview_every)
    finally:
        progress.close()
    p = sd.last_params
    text = {"prompt": p["prompt"], "negative_prompt": p["negative_prompt"] or "", "seed": p["seed"],
            "steps": p["steps"], "sampler": p["sampler"], "guidance": p["guidance"], "decoder": p["decoder"],
            "model": Path(args.model).resolve().name, "size": f"{p['width']}x{p['height']}", "software": "onnxstream"}
    if p["img2img"]:
        text["strength"] = p["strength"]
    if "micro" in p:   # SDXL micro-conditioning
        text.update({k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in p["micro"].items()})
    paths = output_paths(args.output, len(images))
    for i, (image, path) in enumerate(zip(images, paths)):
        # image i of a batch is the image of a single run with seed + i (see StableDiffusion.__call__)
        save_png(path, image, {**text, "seed": p["seed"] + i, "image_index": i} if len(images) > 1 else text)
        print(f"wrote {path}", file=sys.stderr)
    return 0
