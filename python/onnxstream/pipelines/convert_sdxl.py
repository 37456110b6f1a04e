"""What converting an SDXL / SDXL Turbo pipeline adds to convert_pipeline.py (PC side).

SDXL has a second text encoder and tokenizer (OpenCLIP bigG: penultimate hidden states, and the pooled, projected
output that the UNet also reads), and the UNet takes two more inputs: text_embeds [B, 1280] and the
micro-conditioning time_ids [B, 6] (original size, crop top-left, target size; a refiner's 5 end with an aesthetic
score instead of the target size). Which hidden state each encoder gives, the pipeline's
force_zeros_for_empty_prompt and requires_aesthetics_score go into the manifest.
"""
from __future__ import annotations

import re
from pathlib import Path

FAMILIES = ("sdxl", "sdxl-turbo")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
ONNX_PARTS = ("text_encoder", "text_encoder_2", "unet", "vae_decoder", "vae_encoder")


def is_sdxl(src: Path, index: dict, unet_cfg: dict) -> bool:
    return ("StableDiffusionXL" in str(index.get("_class_name", "")) or unet_cfg.get("addition_embed_type") == "text_time"
            or (src / "text_encoder_2").is_dir())


def guess_sdxl_family(index: dict, sched_cfg: dict) -> str:
    """SDXL Turbo is an SDXL network sampled with 'trailing' timesteps (1-4 steps, no guidance)."""
    name = str(index.get("_name_or_path", "")).lower()
    return "sdxl-turbo" if "turbo" in name or sched_cfg.get("timestep_spacing") == "trailing" else "sdxl"


def check_diffusers_dir(src: Path) -> None:
    missing = [p + "/config.json" for p in ("text_encoder_2",) if not (src / p / "config.json").is_file()]
    missing += [p + "/" for p in ("tokenizer_2",) if not (src / p).is_dir()]
    if missing:
        raise ValueError(f"{src} is an SDXL pipeline without {', '.join(missing)}")


def text_encoder_outputs(output_names: list[str], part: str) -> dict:
    """{"hidden": the penultimate hidden state's output, "pooled": text_embeds (second encoder)} of an export:
    ours has only the penultimate one; optimum's has hidden_states.0 .. hidden_states.L (L layers)."""
    hidden = sorted((int(m.group(1)), n) for n in output_names if (m := re.fullmatch(r"hidden_states\.(\d+)", n)))
    if not hidden:
        raise ValueError(f"{part}/model.onnx has no hidden_states.N output (outputs: {output_names}); export it with "
                         f"the hidden states (optimum exports SDXL's text encoders so)")
    out = {"hidden": hidden[0][1] if len(hidden) == 1 else hidden[-2][1]}
    if part == "text_encoder_2":
        if "text_embeds" not in output_names:
            raise ValueError(f"text_encoder_2/model.onnx has no text_embeds output (outputs: {output_names})")
        out["pooled"] = "text_embeds"
    return out


def unet_extra_shapes(unet_inputs: dict, batch: int, unet_cfg: dict, pooled_dim: int) -> dict:
    """Fixed shapes of the UNet's text_embeds and time_ids inputs."""
    n_ids = unet_inputs["time_ids"][1] if unet_inputs["time_ids"][1:] and unet_inputs["time_ids"][1] else None
    if n_ids is None:
        in_dim, step = unet_cfg.get("projection_class_embeddings_input_dim"), unet_cfg.get("addition_time_embed_dim")
        n_ids = (in_dim - pooled_dim) // step if in_dim and step else 6
    pooled = unet_inputs["text_embeds"][1] or pooled_dim
    return {"text_embeds": (batch, pooled), "time_ids": (batch, n_ids)}


def manifest_entries(index: dict, onnx_outputs: dict, time_ids: int, pooled_dim: int) -> dict:
    requires_aesthetics = bool(index.get("requires_aesthetics_score", False))
    if requires_aesthetics != (time_ids == 5):
        raise ValueError(f"the UNet takes {time_ids} time ids, but model_index.json says requires_aesthetics_score="
                         f"{requires_aesthetics} (a refiner takes 5: sizes, crop and aesthetic score; a base model 6)")
    return {"text_encoders": [{"part": p, "tokenizer": p.replace("text_encoder", "tokenizer"), **onnx_outputs[p]}
                              for p in TEXT_ENCODERS],
            "force_zeros_for_empty_prompt": bool(index.get("force_zeros_for_empty_prompt", True)),
            "requires_aesthetics_score": requires_aesthetics, "time_ids": time_ids, "pooled_dim": pooled_dim}
