"""Whole Stable Diffusion pipeline -> one onnxstream model directory (PC side).

Input: a diffusers directory (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/; the parts
are exported to ONNX with torch first) or a directory of ONNX exports in the optimum layout
(text_encoder/model.onnx, unet/model.onnx, vae_decoder/model.onnx, vae_encoder/model.onnx + tokenizer/,
scheduler/, model_index.json). Output, written to a temp dir renamed at the end:

  text_encoder/ unet/ [unet_batch1/] vae_decoder/ vae_encoder/   onnxstream model dirs
  [taesd_decoder/ taesd_encoder/]   the tiny autoencoder (--tiny-vae), beside the full VAE
  tokenizer/   vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json
  (SDXL also text_encoder_2/ and tokenizer_2/: convert_sdxl.py)
  scheduler/   scheduler_config.json
  manifest.json   family, prediction type, latent channels, VAE scaling factor, image size, UNet batches

The engine fixes every shape at convert time, so a converted model makes images of ONE size (--height/--width,
default the UNet's sample_size * 8; any multiple of 8 from 64 up, e.g. a panel's 800x480). Convert again (to another
directory) for another size.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..tokenizer import write_vocab_files
from . import convert_sdxl

PARTS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")
MANIFEST_VERSION = 1
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _source_kind(src: Path) -> str:
    if not src.is_dir() or not (src / "model_index.json").is_file():
        raise ValueError(f"{src} is not a diffusers pipeline directory (no model_index.json)")
    parts = convert_sdxl.ONNX_PARTS if (src / "text_encoder_2").is_dir() else PARTS
    if all((src / p / "model.onnx").is_file() for p in parts):
        return "onnx"
    missing = [p for p in ("unet", "vae", "text_encoder") if not (src / p / "config.json").is_file()]
    if missing:
        onnx_missing = [p for p in parts if not (src / p / "model.onnx").is_file()]
        raise ValueError(f"{src} is neither a diffusers directory (missing {', '.join(m + '/config.json' for m in missing)}) "
                         f"nor a directory of ONNX exports (missing {', '.join(p + '/model.onnx' for p in onnx_missing)})")
    for p in ("tokenizer", "scheduler"):
        if not (src / p).is_dir():
            raise ValueError(f"{src} has no {p}/ folder")
    return "diffusers"


def guess_family(index: dict, unet_cfg: dict, sched_cfg: dict, context_dim: int) -> str:
    """sd1 / sd2 / sd-turbo from the configs (SD-Turbo is an SD2.1 UNet sampled with 'trailing' timesteps)."""
    name = str(index.get("_name_or_path", "")).lower()
    if "turbo" in name:
        return "sd-turbo"
    if "StableDiffusionXL" in str(index.get("_class_name", "")) or unet_cfg.get("addition_embed_type") == "text_time":
        return convert_sdxl.guess_sdxl_family(index, sched_cfg)
    if context_dim == 1024:
        return "sd-turbo" if sched_cfg.get("timestep_spacing") == "trailing" else "sd2"
    return "sd1"


def _vae_calibration(part: str, shapes: dict, vae_cfg: dict):
    """Sample inputs on which the VAE's float16-stored activations are measured (fp16_range.py): latents as the
    sampler ends with them (unit variance, unscaled by the VAE's factor), images in [-1, 1]."""
    import numpy as np
    if part not in ("vae_decoder", "vae_encoder"):
        return None
    name, shape = next(iter(shapes.items()))
    feeds = []
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        if part == "vae_decoder":
            x = rng.standard_normal(shape) / vae_cfg.get("scaling_factor", 0.18215) + (vae_cfg.get("shift_factor") or 0)
        else:
            x = rng.uniform(-1, 1, shape)
        feeds.append({name: x.astype(np.float32)})
    return feeds


def _copy_configs(src: Path, onnx_dir: Path) -> None:
    """Each exported part gets its diffusers config.json, as in optimum's layout (the VAE's scaling factor, the
    UNet's sample size), so converting the exports later reads the same settings."""
    for part in [p.name for p in onnx_dir.iterdir() if (p / "model.onnx").is_file()]:
        config = src / ("vae" if part.startswith("vae_") else "unet" if part.startswith("unet") else part) / "config.json"
        if config.is_file():
            shutil.copy(config, onnx_dir / part / "config.json")


def _onnx_outputs(onnx_path: Path) -> dict:
    """name -> shape list (None for dynamic dims) of an ONNX file's outputs, without loading the weights."""
    import onnx
    model = onnx.load(str(onnx_path), load_external_data=False)
    return {o.name: [d.dim_value if d.HasField("dim_value") else None for d in o.type.tensor_type.shape.dim]
            for o in model.graph.output}


def _onnx_inputs(onnx_path: Path) -> dict:
    """name -> shape list (None for dynamic dims) of an ONNX file's inputs, without loading the weights."""
    import onnx
    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    return {i.name: [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input if i.name not in inits}


def _fixed(shape, want, what):
    if any(s is not None and s != w for s, w in zip(shape, want)) or len(shape) != len(want):
        raise ValueError(f"{what} has shape {shape}, which does not fit {want} (wrong --height/--width?)")
    return tuple(want)


def _plan(onnx_dir: Path, height, width, unet_cfg, vae_cfg, tiny_dir: Path):
    """Fixed input shapes of every part -> ({part_dir_name: (onnx path, {input: shape})}, sizes).
    The tiny autoencoder's parts (taesd_decoder/, taesd_encoder/) join the plan when tiny_dir holds them."""
    unet_dirs = sorted(p.name for p in onnx_dir.iterdir() if p.name == "unet" or p.name.startswith("unet_batch"))
    unet_in = _onnx_inputs(onnx_dir / "unet" / "model.onnx")
    sample = unet_in["sample"]
    latent_c = sample[1] or unet_cfg.get("in_channels", 4)
    factor = 2 ** (len(vae_cfg.get("block_out_channels", [0] * 4)) - 1)
    if height is None:
        height = sample[2] * factor if sample[2] else unet_cfg.get("sample_size", 64) * factor
    if width is None:
        width = sample[3] * factor if sample[3] else unet_cfg.get("sample_size", 64) * factor
    if height % factor or width % factor or height < 64 or width < 64:
        raise ValueError(f"height and width must be multiples of {factor}, at least 64 (got {height}x{width})")
    h, w = height // factor, width // factor
    ids = _onnx_inputs(onnx_dir / "text_encoder" / "model.onnx")["input_ids"]
    seq = ids[1] or 77
    ehs = unet_in["encoder_hidden_states"]
    context = ehs[2] or unet_cfg.get("cross_attention_dim")
    plan = {"text_encoder": (onnx_dir / "text_encoder" / "model.onnx", {"input_ids": _fixed(ids, (1, seq), "input_ids")}),
            "vae_decoder": (onnx_dir / "vae_decoder" / "model.onnx", {"latent_sample": (1, latent_c, h, w)}),
            "vae_encoder": (onnx_dir / "vae_encoder" / "model.onnx", {"sample": (1, 3, height, width)})}
    sdxl = (onnx_dir / "text_encoder_2" / "model.onnx").is_file()
    outputs = {}   # part -> the outputs to keep (SDXL text encoders: the hidden state the pipeline reads)
    if sdxl:
        ids2 = _onnx_inputs(onnx_dir / "text_encoder_2" / "model.onnx")["input_ids"]
        plan["text_encoder_2"] = (onnx_dir / "text_encoder_2" / "model.onnx",
                                  {"input_ids": _fixed(ids2, (1, seq), "text_encoder_2 input_ids")})
        for part in convert_sdxl.TEXT_ENCODERS:
            outputs[part] = convert_sdxl.text_encoder_outputs(list(_onnx_outputs(plan[part][0])), part)
        pooled = _onnx_outputs(plan["text_encoder_2"][0])["text_embeds"][-1] or 1280
    for name, shapes in (("taesd_decoder", {"latent_sample": (1, latent_c, h, w)}),
                         ("taesd_encoder", {"sample": (1, 3, height, width)})):
        if (tiny_dir / name / "model.onnx").is_file():
            plan[name] = (tiny_dir / name / "model.onnx", shapes)
    batches = {}
    for name in unet_dirs:
        shapes = _onnx_inputs(onnx_dir / name / "model.onnx")
        batch = shapes["sample"][0] or (int(name[len("unet_batch"):]) if name != "unet" else 2)
        t = shapes["timestep"]
        plan[name] = (onnx_dir / name / "model.onnx",
                      {"sample": _fixed(shapes["sample"], (batch, latent_c, h, w), f"{name} sample"),
                       "timestep": tuple(d or 1 for d in t),
                       "encoder_hidden_states": _fixed(shapes["encoder_hidden_states"], (batch, seq, context),
                                                       f"{name} encoder_hidden_states")})
        if sdxl:
            plan[name][1].update(convert_sdxl.unet_extra_shapes(shapes, batch, unet_cfg, pooled))
        batches[batch] = name
    sizes = dict(height=height, width=width, latent_channels=latent_c, latent_height=h, latent_width=w,
                 vae_scale_factor=factor, max_length=seq, context_dim=context)
    if sdxl:
        sizes["sdxl"] = dict(outputs=outputs, pooled_dim=pooled, time_ids=plan["unet"][1]["time_ids"][1])
    return plan, batches, sizes


def _tiny_vae_manifest(plan, source):
    """The manifest's record of the tiny autoencoder (None without one): its parts and latent scaling."""
    if "taesd_decoder" not in plan:
        return None
    cfg = _read_json(plan["taesd_decoder"][0].parent / "config.json")
    return {"decoder": "taesd_decoder", "encoder": "taesd_encoder" if "taesd_encoder" in plan else None,
            "scaling_factor": cfg.get("scaling_factor", 1.0), "shift_factor": cfg.get("shift_factor") or 0.0,
            "source": str(source) if source is not None else cfg.get("_name_or_path")}


def convert_pipeline(src, out_dir, weights="fp32", height=None, width=None, unet_batches=None, family=None,
                     onnx_only=False, overwrite=False, progress=None, allow_pickle=False, tiny_vae=None) -> Path:
    """Convert the pipeline at `src` into `out_dir` (see the module docstring); returns out_dir.

    unet_batches: UNet batch sizes to build (diffusers input only): 2 serves guidance (cond + uncond in one
    pass), 1 serves guidance 1 / Turbo. Default (2,) for sd1/sd2, (1,) for sd-turbo.
    onnx_only: write the ONNX exports (model.onnx per part) instead of converting them; such a directory can
    be converted later, or run with onnxruntime for reference.
    allow_pickle: also load pickle checkpoints (.bin, .ckpt, .pt) where a part has no safetensors (loading one can
    run code: only for files you trust).
    tiny_vae: a diffusers AutoencoderTiny directory or hub id (madebyollin/taesd; taesdxl for SDXL), exported and
    converted beside the full VAE (`sd(..., decoder="taesd")`). An ONNX source directory's own taesd_decoder/ and
    taesd_encoder/ exports are converted without it."""
    src, out_dir = Path(src), Path(out_dir)
    log = progress or (lambda m: None)
    if out_dir.exists() and not overwrite:
        raise ValueError(f"{out_dir} already exists (pass overwrite=True / --force to replace it)")
    kind = _source_kind(src)
    index = _read_json(src / "model_index.json")
    unet_cfg, vae_cfg = _read_json(src / "unet" / "config.json"), _read_json(src / "vae" / "config.json")
    if not vae_cfg:  # optimum layout keeps the VAE config in vae_decoder/
        vae_cfg = _read_json(src / "vae_decoder" / "config.json")
    sched_cfg = _read_json(src / "scheduler" / "scheduler_config.json")
    if not sched_cfg:
        raise ValueError(f"{src / 'scheduler' / 'scheduler_config.json'} is missing")
    if family is None:
        family = guess_family(index, unet_cfg, sched_cfg, unet_cfg.get("cross_attention_dim", 0))
    if family not in ("sd1", "sd2", "sd-turbo", *convert_sdxl.FAMILIES):
        raise ValueError(f"unknown model family {family!r}; use sd1, sd2, sd-turbo, sdxl or sdxl-turbo")
    sdxl = family in convert_sdxl.FAMILIES
    if sdxl and kind == "diffusers":
        convert_sdxl.check_diffusers_dir(src)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    from ..converter import remove_stale_temp_dirs
    remove_stale_temp_dirs(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        onnx_dir = src
        if kind == "diffusers":
            from .export_sdxl import export_sdxl_parts
            from .export_torch import export_parts
            if height is None or width is None:
                size = unet_cfg.get("sample_size", 64) * 2 ** (len(vae_cfg.get("block_out_channels", [0] * 4)) - 1)
                height, width = height or size, width or size
            batches = tuple(unet_batches or ((1,) if family in ("sd-turbo", "sdxl-turbo") else (2,)))
            onnx_dir = (tmp if onnx_only else tmp / "onnx")
            (export_sdxl_parts if sdxl else export_parts)(src, onnx_dir, height, width, batches, progress=log,
                                                          allow_pickle=allow_pickle)
            _copy_configs(src, onnx_dir)
        tiny_dir = onnx_dir
        if tiny_vae is not None:
            from .export_tiny_vae import export_tiny_vae
            _, _, sizes = _plan(onnx_dir, height, width, unet_cfg, vae_cfg, onnx_dir)
            tiny_dir = onnx_dir if kind == "diffusers" else (tmp if onnx_only else tmp / "onnx")
            export_tiny_vae(tiny_vae, tiny_dir, sizes["height"], sizes["width"], sizes["latent_channels"],
                            sizes["vae_scale_factor"], progress=log)
        plan, batches, sizes = _plan(onnx_dir, height, width, unet_cfg, vae_cfg, tiny_dir)
        sdxl_sizes = sizes.pop("sdxl", None)
        tiny_manifest = _tiny_vae_manifest(plan, tiny_vae)  # before the exports are deleted
        if not onnx_only:
            from ..converter import convert
            for name, (path, shapes) in plan.items():
                log(f"converting {name}")
                keep = sdxl_sizes["outputs"].get(name) if sdxl_sizes else None
                convert(path, tmp / name, weights=weights, input_shapes=shapes, progress=log,
                        outputs=list(keep.values()) if keep else None,
                        calibration=_vae_calibration(name, shapes, vae_cfg))
            shutil.rmtree(tmp / "onnx", ignore_errors=True)  # the exports (diffusers input; a tiny VAE exported now)
        elif kind == "onnx":
            for name, (path, _) in plan.items():
                if path.parent != tmp / name:  # a tiny VAE exported just now is already in place
                    shutil.copytree(path.parent, tmp / name)

        for tokenizer in ("tokenizer", "tokenizer_2") if sdxl else ("tokenizer",):
            (tmp / tokenizer).mkdir()
            write_vocab_files(src / tokenizer, tmp / tokenizer)
            for name in TOKENIZER_FILES:
                if (src / tokenizer / name).is_file():
                    shutil.copy(src / tokenizer / name, tmp / tokenizer / name)
        (tmp / "scheduler").mkdir()
        (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched_cfg, indent=2))
        manifest = {
            "format": "onnxstream-stable-diffusion", "version": MANIFEST_VERSION, "family": family,
            "source": index.get("_name_or_path") or src.name,
            "prediction_type": sched_cfg.get("prediction_type", "epsilon"),
            "vae_scaling_factor": vae_cfg.get("scaling_factor", 0.18215),
            "vae_shift_factor": vae_cfg.get("shift_factor"),
            "sample_size": unet_cfg.get("sample_size"),
            "unet_batches": {str(b): name for b, name in sorted(batches.items())},
            "weights": weights, "engine": "onnx" if onnx_only else "onnxstream", **sizes,
            "tiny_vae": tiny_manifest,
        }
        if sdxl:
            if not sdxl_sizes:
                raise ValueError(f"family {family} needs text_encoder_2/model.onnx in {onnx_dir}")
            manifest.update(convert_sdxl.manifest_entries(index, sdxl_sizes["outputs"], sdxl_sizes["time_ids"],
                                                          sdxl_sizes["pooled_dim"]))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        shutil.copy(src / "model_index.json", tmp / "model_index.json")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {out_dir}")
    return out_dir
