"""SDXL's text conditioning, as diffusers' StableDiffusionXL(Img2Img)Pipeline computes it (numpy only).

Two CLIP encoders read the same prompt, each tokenized by its own tokenizer (the second pads with "!", the first
with <|endoftext|>; tokenizer_config.json says which): the penultimate hidden states of both, concatenated
([1, 77, 768 + 1280]), are the cross-attention context, and the second encoder's pooled, projected output
([1, 1280]) goes to the UNet as text_embeds. With guidance and no negative prompt, a model whose config sets
force_zeros_for_empty_prompt (SDXL base does) takes zeros as the unconditional embeddings instead of encoding "".

The UNet also reads micro-conditioning time_ids: original size, crop top-left and target size, (h, w) each, from
the real image size unless given. A refiner (requires_aesthetics_score) reads an aesthetic score in place of the
target size: 6 for the prompt, 2.5 for the negative prompt by default, as diffusers' img2img pipeline.
"""
from __future__ import annotations

import numpy as np

from ..tokenizer import CLIPTokenizer


class SDXLConditioning:
    def __init__(self, model_dir, manifest):
        self.encoders = manifest["text_encoders"]   # [{part, tokenizer, hidden, [pooled]}] in concatenation order
        self.tokenizers = [CLIPTokenizer.from_dir(model_dir / e["tokenizer"]) for e in self.encoders]
        self.force_zeros = manifest["force_zeros_for_empty_prompt"]
        self.aesthetics = manifest["requires_aesthetics_score"]

    def parts(self):
        return [e["part"] for e in self.encoders]

    def tokenizer_dirs(self):
        return [e["tokenizer"] for e in self.encoders]

    def encode(self, text: str, part) -> dict:
        """One prompt -> {"encoder_hidden_states": [1, 77, 2048], "text_embeds": [1, 1280]}; part(name) opens a part."""
        hidden, pooled = [], None
        for encoder, tokenizer in zip(self.encoders, self.tokenizers):
            ids = np.array([tokenizer.encode(text)], dtype=np.int64)                  # [1, 77]
            out = part(encoder["part"]).run({"input_ids": ids})
            hidden.append(np.asarray(out[encoder["hidden"]], np.float32))            # [1, 77, D_i]
            if "pooled" in encoder:
                pooled = np.asarray(out[encoder["pooled"]], np.float32)               # [1, 1280]
        return {"encoder_hidden_states": np.concatenate(hidden, axis=-1), "text_embeds": pooled}

    def zeros_for_empty_negative(self, negative_prompt) -> bool:
        return negative_prompt is None and self.force_zeros

    def check(self, img2img: bool) -> None:
        if self.aesthetics and not img2img:
            raise ValueError("this model (requires_aesthetics_score: an SDXL refiner) makes img2img only: "
                             "pass an init image")

    def time_ids(self, micro: dict, negative: bool) -> np.ndarray:
        """[1, 6] (original h, w, crop top, left, target h, w), or [1, 5] ending with the aesthetic score."""
        last = ([micro["negative_aesthetic_score" if negative else "aesthetic_score"]] if self.aesthetics
                else list(micro["target_size"]))
        return np.array([list(micro["original_size"]) + list(micro["crops_coords_top_left"]) + last], np.float32)


def micro_conditioning(height, width, original_size=None, crops_coords_top_left=(0, 0), target_size=None,
                       aesthetic_score=6.0, negative_aesthetic_score=2.5) -> dict:
    """The micro-conditioning parameters, (height, width) pairs defaulting to the image's size (as diffusers)."""
    pair = lambda v, what: [int(v[0]), int(v[1])] if len(v) == 2 else _bad(what, v)  # noqa: E731
    return dict(original_size=pair(original_size or (height, width), "original_size"),
                crops_coords_top_left=pair(crops_coords_top_left, "crops_coords_top_left"),
                target_size=pair(target_size or (height, width), "target_size"),
                aesthetic_score=float(aesthetic_score), negative_aesthetic_score=float(negative_aesthetic_score))


def _bad(what, value):
    raise ValueError(f"{what} must be a (height, width) pair, got {value!r}")
