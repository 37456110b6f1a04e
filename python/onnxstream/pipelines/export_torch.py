"""Diffusers directory -> ONNX files of the parts (text encoder, UNet, VAE decoder/encoder), with torch.

PC side only: imports torch, diffusers and transformers. The exports have fixed shapes (the engine fixes
shapes at convert time anyway) and follow the optimum layout and names, so the result can also be fed
back to `convert_pipeline` as an "ONNX directory":

  text_encoder/model.onnx  input_ids [1, 77] int64 -> last_hidden_state [1, 77, D]
  unet/model.onnx          sample [B, C, h, w], timestep [1] float32, encoder_hidden_states [B, 77, D] -> out_sample
  vae_decoder/model.onnx   latent_sample [1, C, h, w] -> sample [1, 3, H, W]   (unscaled latents in, [-1, 1] out)
  vae_encoder/model.onnx   sample [1, 3, H, W] -> latent_parameters [1, 2C, h, w] (mean and log-variance)

We use the TorchScript exporter (dynamo=False, opset 17): on diffusers' UNet it is several times faster
than the dynamo exporter and has been the reliable path for SD for years. Parts over 2 GB (the fp32 SD1.5
UNet) go through the dynamo exporter (opset 18, external data), which the TorchScript one cannot write.
"""
from __future__ import annotations

from pathlib import Path

OPSET = 17
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


def use_safetensors(part_dir: Path, allow_pickle: bool) -> bool:
    """How a part's weights are loaded: from safetensors (True) whenever it has them; from a pickle checkpoint
    (False) only when allowed, since unpickling runs whatever code the file holds."""
    if any(part_dir.glob("*.safetensors")):
        return True
    pickles = sorted(p.name for p in part_dir.glob("*") if p.suffix in PICKLE_SUFFIXES)
    if not pickles:
        raise ValueError(f"{part_dir} holds no weights (*.safetensors)")
    if not allow_pickle:
        raise ValueError(f"{part_dir / pickles[0]} is a pickle checkpoint: loading one can run any code it holds, "
                         f"so onnxstream loads weights from safetensors only. Save the pipeline with safetensors "
                         f"(diffusers' save_pretrained does by default), or pass --allow-pickle (allow_pickle=True) "
                         f"if you trust where the file came from")
    return False


def _wrappers():
    import torch

    class TextEncoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            return self.model(input_ids=input_ids, return_dict=False)[0]

    class UNet(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    class VaeDecoder(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, latent_sample):
            return self.vae.decode(latent_sample, return_dict=False)[0]

    class VaeEncoder(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, sample):
            return self.vae.encode(sample).latent_dist.parameters

    return TextEncoder, UNet, VaeDecoder, VaeEncoder


def _too_big(module) -> bool:
    """Over protobuf's 2 GiB: the TorchScript exporter cannot write it (the full SD1.5 UNet in fp32 is 3.4 GB)."""
    return sum(p.numel() * p.element_size() for p in module.parameters()) > 1_900_000_000


def _export(module, args, path: Path, input_names, output_names):
    import torch
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = dict(input_names=input_names, output_names=output_names)
    with torch.no_grad():
        if _too_big(module):  # the dynamo exporter writes the weights as external data
            program = torch.onnx.export(module, args, None, dynamo=True, opset_version=18, **kw)
            program.save(str(path), external_data=True)
        else:
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, do_constant_folding=True,
                              **kw)


def export_parts(diffusers_dir, out_dir, height: int, width: int, unet_batches=(2,), progress=None,
                 allow_pickle=False):
    """Export the four parts of the pipeline in `diffusers_dir` into `out_dir` (optimum layout).

    UNet batch sizes other than the first go to unet_batch{B}/model.onnx. Weights are read from safetensors;
    pickle checkpoints (.bin, .ckpt, .pt) only with allow_pickle."""
    safe = {part: use_safetensors(Path(diffusers_dir) / part, allow_pickle) for part in ("text_encoder", "vae", "unet")}
    try:
        import torch
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel
    except ImportError as e:
        raise ValueError(f"exporting a diffusers directory needs torch, diffusers and transformers ({e}); "
                         f"or convert a directory of ONNX exports instead") from None
    TextEncoder, UNet, VaeDecoder, VaeEncoder = _wrappers()
    src, out = Path(diffusers_dir), Path(out_dir)
    log = progress or (lambda m: None)

    log("exporting text_encoder")
    text_encoder = CLIPTextModel.from_pretrained(src / "text_encoder", torch_dtype=torch.float32,
                                                 use_safetensors=safe["text_encoder"]).eval()
    ids = torch.zeros(1, text_encoder.config.max_position_embeddings, dtype=torch.int64)
    _export(TextEncoder(text_encoder), (ids,), out / "text_encoder" / "model.onnx", ["input_ids"],
            ["last_hidden_state"])
    context = text_encoder.config.hidden_size
    del text_encoder

    vae = AutoencoderKL.from_pretrained(src / "vae", torch_dtype=torch.float32,
                                        use_safetensors=safe["vae"]).eval()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latent_c, h, w = vae.config.latent_channels, height // factor, width // factor
    log("exporting vae_decoder")
    _export(VaeDecoder(vae), (torch.zeros(1, latent_c, h, w),), out / "vae_decoder" / "model.onnx",
            ["latent_sample"], ["sample"])
    log("exporting vae_encoder")
    _export(VaeEncoder(vae), (torch.zeros(1, 3, height, width),), out / "vae_encoder" / "model.onnx",
            ["sample"], ["latent_parameters"])
    del vae

    unet = UNet2DConditionModel.from_pretrained(src / "unet", torch_dtype=torch.float32,
                                                use_safetensors=safe["unet"]).eval()
    # Attention stays diffusers' default SDPA processor: both exporters decompose it into the MatMul/Softmax/MatMul
    # the converter fuses. The classic processor's baddbmm(empty, q, k, beta=0) would be exported as a constant
    # [B*heads, n, n] tensor (2.3 GB per layer for SD1.5 at 800x480) between MatMul and Softmax, blocking the fusion.
    for i, batch in enumerate(unet_batches):
        name = "unet" if i == 0 else f"unet_batch{batch}"
        log(f"exporting {name} (batch {batch})")
        args = (torch.randn(batch, unet.config.in_channels, h, w), torch.tensor([999.0]),
                torch.randn(batch, ids.shape[1], context))
        _export(UNet(unet), args, out / name / "model.onnx", ["sample", "timestep", "encoder_hidden_states"],
                ["out_sample"])
    return out
