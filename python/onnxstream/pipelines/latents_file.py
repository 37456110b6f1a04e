"""Save / resume a generation between steps (--save-latents / --resume), so a run interrupted by a power
loss continues from the last completed step and ends with the same image.

One .npz (no pickles): the latents after `done` steps, the images already finished (--num > 1), the sampler's
multistep state (DPM++ 2M keeps the previous model outputs), the random generator's state, and every
generation parameter as JSON. Rewritten atomically (temp file + rename) after every step.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from .images import write_atomic

FORMAT = "onnxstream-latents-1"
# The sampler attributes that change while stepping; everything else is rebuilt from the parameters.
SCHEDULER_STATE = ("_step_index", "_begin_index", "lower_order_nums", "model_outputs")


def save_latents(path, latents, done, image_index, images, params, scheduler, rng):
    arrays, sched_json = {"latents": np.asarray(latents, np.float32)}, {}
    for key in SCHEDULER_STATE:
        if not hasattr(scheduler, key):
            continue
        value = getattr(scheduler, key)
        if isinstance(value, list):  # model_outputs: arrays or None
            sched_json[key] = {"list": len(value)}
            for i, item in enumerate(value):
                if item is not None:
                    arrays[f"sched.{key}.{i}"] = np.asarray(item)
        else:
            sched_json[key] = None if value is None else int(value)
    for i, image in enumerate(images):
        arrays[f"image.{i}"] = np.asarray(image, np.float32)
    meta = dict(format=FORMAT, done=done, image_index=image_index, images=len(images), params=params,
                scheduler=sched_json, rng=rng.get_state() if hasattr(rng, "get_state") else None)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def load_latents(path):
    """-> dict(latents, done, image_index, images, params, restore(scheduler, rng))."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"resume file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    except Exception as e:
        raise ValueError(f"{path} is not a latents file written by --save-latents ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a latents file written by --save-latents")
    _check(path, meta, arrays)

    def restore(scheduler, rng):
        for key, value in meta["scheduler"].items():  # (keys checked: SCHEDULER_STATE only)
            if isinstance(value, dict):
                setattr(scheduler, key, [arrays.get(f"sched.{key}.{i}") for i in range(value["list"])])
            else:
                setattr(scheduler, key, value)
        if meta["rng"] is not None and hasattr(rng, "set_state"):
            try:
                rng.set_state(meta["rng"])
            except Exception as e:  # numpy checks the generator state it is given
                raise ValueError(f"{path} is damaged (rng: {e}); start the run again without --resume") from None

    return dict(latents=arrays["latents"], done=meta["done"], image_index=meta["image_index"],
                images=[arrays[f"image.{i}"] for i in range(meta["images"])], params=meta["params"],
                restore=restore)


PARAMS = {"prompt": (str, type(None)), "negative_prompt": (str, type(None)), "steps": int, "guidance": (int, float),
          "sampler": str, "seed": (int, type(None)), "width": int, "height": int, "strength": (int, float),
          "num": int, "img2img": bool}


def _check(path, meta, arrays):
    """Every field resume uses, so a damaged file is an error here, never a wrong picture later. (Each array's
    bytes are covered by the zip member's CRC-32, which numpy's loader checks.)"""
    def bad(what):
        raise ValueError(f"{path} is damaged ({what}); start the run again without --resume")

    latents = arrays.get("latents")
    if latents is None or latents.dtype != np.float32 or latents.ndim != 4 or not np.all(np.isfinite(latents)):
        bad("latents")
    params = meta.get("params")
    if not isinstance(params, dict) or not set(PARAMS) <= set(params) or \
            not all(isinstance(params[k], t) and not (t is int and isinstance(params[k], bool)) for k, t in PARAMS.items()):
        bad("params")
    if params["num"] != latents.shape[0] or params["steps"] < 1:
        bad("params do not match the latents")
    done = meta.get("done")
    if not isinstance(done, int) or not 0 <= done <= params["steps"]:
        bad("done")
    sched = meta.get("scheduler")
    if not isinstance(sched, dict) or not set(sched) <= set(SCHEDULER_STATE):
        bad("scheduler")
    for key, value in sched.items():
        if isinstance(value, dict):
            if set(value) != {"list"} or not isinstance(value["list"], int) or not 0 <= value["list"] <= 16:
                bad(f"scheduler.{key}")
        elif value is not None and not isinstance(value, int):
            bad(f"scheduler.{key}")
    if not isinstance(meta.get("images"), int) or not all(f"image.{i}" in arrays for i in range(meta["images"])):
        bad("images")
    if not isinstance(meta.get("image_index"), int):
        bad("image_index")
    rng = meta.get("rng")
    if rng is not None and not (isinstance(rng, list) and all(isinstance(r, dict) for r in rng)):
        bad("rng")
