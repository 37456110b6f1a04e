"""TAESD (diffusers' AutoencoderTiny: madebyollin/taesd, taesdxl) -> ONNX decoder and encoder, with torch.

PC side only. The tiny autoencoder works on the same latents as the pipeline's full VAE at a small fraction of
its cost (Conv + ReLU only, 1.2M parameters), with slightly softer detail. Written beside the other exports:

  taesd_decoder/model.onnx   latent_sample [1, C, h, w] -> sample [1, 3, H, W]   (in [-1, 1], like vae_decoder)
  taesd_decoder/config.json  the AutoencoderTiny config (scaling_factor, shift_factor, latent_channels)
  taesd_encoder/model.onnx   sample [1, 3, H, W] in [-1, 1] -> latents [1, C, h, w]   (no distribution: a point)

Latent scaling follows diffusers' pipelines with `pipe.vae = AutoencoderTiny(...)`: they decode
`latents / vae.config.scaling_factor` and encode to `vae.config.scaling_factor * latents`, and TAESD's
scaling_factor is 1.0: TAESD reads and writes the *scaled* latents the UNet works on.
"""
from __future__ import annotations

import re
from pathlib import Path

from .export_torch import _export

PARTS = ("taesd_decoder", "taesd_encoder")


def load_tiny_vae(source):
    """AutoencoderTiny from a local save_pretrained directory or a hub id (e.g. madebyollin/taesd), safetensors only."""
    import torch
    from diffusers import AutoencoderTiny
    path = Path(source)
    if not path.is_dir():
        if path.exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)):
            raise ValueError(f"--tiny-vae {source}: not a directory and not a hub id like madebyollin/taesd")
    elif not (path / "config.json").is_file():
        raise ValueError(f"--tiny-vae {source}: no config.json (expected a diffusers AutoencoderTiny directory)")
    try:
        model = AutoencoderTiny.from_pretrained(str(source), torch_dtype=torch.float32, use_safetensors=True)
    except (OSError, ValueError, EnvironmentError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot load the tiny VAE {source} (diffusers AutoencoderTiny, safetensors): {first}") from None
    return model.eval()


def export_tiny_vae(source, out_dir, height: int, width: int, latent_channels: int, vae_scale_factor: int,
                    progress=None):
    """Export TAESD's decoder and encoder for height x width images into out_dir/taesd_{decoder,encoder}/."""
    import torch
    log = progress or (lambda m: None)
    out = Path(out_dir)
    vae = load_tiny_vae(source)
    cfg = vae.config
    factor = 2 ** (len(cfg.decoder_block_out_channels) - 1)
    if cfg.latent_channels != latent_channels or factor != vae_scale_factor:
        raise ValueError(f"the tiny VAE {source} has {cfg.latent_channels} latent channels and scale factor {factor}; "
                         f"this pipeline needs {latent_channels} and {vae_scale_factor} (taesd is for SD 1.x/2.x, "
                         f"taesdxl for SDXL)")

    class Half(torch.nn.Module):  # vae.decode or vae.encode as a module's forward
        def __init__(self, method):
            super().__init__()
            self.vae, self.method = vae, method

        def forward(self, x):
            return getattr(self.vae, self.method)(x, return_dict=False)[0]

    h, w = height // factor, width // factor
    log("exporting taesd_decoder")
    _export(Half("decode"), (torch.zeros(1, latent_channels, h, w),), out / "taesd_decoder" / "model.onnx",
            ["latent_sample"], ["sample"])
    vae.save_config(out / "taesd_decoder")  # config.json: scaling_factor and shift_factor for the manifest
    log("exporting taesd_encoder")
    _export(Half("encode"), (torch.zeros(1, 3, height, width),), out / "taesd_encoder" / "model.onnx",
            ["sample"], ["latents"])
    return out
