"""Diffusers SDXL / SDXL Turbo directory -> ONNX files of the parts, in optimum's SDXL layout (PC side only).

  text_encoder/model.onnx    input_ids [1, 77] int64 -> hidden_states.{L-1} [1, 77, 768]   (CLIP ViT-L, penultimate)
  text_encoder_2/model.onnx  input_ids [1, 77] int64 -> text_embeds [1, 1280] (pooled, projected),
                                                         hidden_states.{L-1} [1, 77, 1280]  (OpenCLIP bigG, penultimate)
  unet/model.onnx            sample [B, 4, h, w], timestep [1], encoder_hidden_states [B, 77, 2048],
                             text_embeds [B, 1280], time_ids [B, 6] -> out_sample
  vae_decoder/, vae_encoder/ as for SD 1.x (export_torch.py)

Only the hidden state SDXL reads is exported (optimum exports them all; convert_pipeline keeps the same one of
those), so the last layer of the first encoder is never computed. Weights are loaded from safetensors when the
folder has them.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from .export_torch import _export, _too_big, _wrappers, use_safetensors


def _sdxl_wrappers():
    import torch

    class PenultimateTextEncoder(torch.nn.Module):
        """CLIPTextModel -> its penultimate hidden state (what SDXL's encode_prompt reads)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            return self.model(input_ids=input_ids, output_hidden_states=True, return_dict=True).hidden_states[-2]

    class PooledTextEncoder(torch.nn.Module):
        """CLIPTextModelWithProjection -> (projected pooled output, penultimate hidden state)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            out = self.model(input_ids=input_ids, output_hidden_states=True, return_dict=True)
            return out.text_embeds, out.hidden_states[-2]

    class UNetXL(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids):
            return self.unet(sample, timestep, encoder_hidden_states, return_dict=False,
                             added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids})[0]

    return PenultimateTextEncoder, PooledTextEncoder, UNetXL


def _pretranspose_linears(module) -> None:
    """Every nn.Linear as x @ W^T with W^T the stored parameter. The dynamo exporter otherwise folds Transpose(W)
    into a second copy of each weight while exporting: for SDXL's 10 GB UNet, 7 GB more than this machine has."""
    import torch

    class LinearT(torch.nn.Module):
        def __init__(self, linear):
            super().__init__()
            self.weight_t = torch.nn.Parameter(linear.weight.detach().t().contiguous(), requires_grad=False)
            self.bias = linear.bias

        def forward(self, x):
            y = torch.matmul(x, self.weight_t)
            return y if self.bias is None else y + self.bias

    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, LinearT(child))   # the old weight is freed here, one layer at a time
        else:
            _pretranspose_linears(child)


def export_sdxl_parts(diffusers_dir, out_dir, height: int, width: int, unet_batches=(2,), progress=None,
                      allow_pickle=False):
    """Export the parts of the SDXL pipeline in `diffusers_dir` into `out_dir` (optimum's SDXL layout)."""
    try:
        import torch
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTextModelWithProjection
    except ImportError as e:
        raise ValueError(f"exporting a diffusers directory needs torch, diffusers and transformers ({e}); "
                         f"or convert a directory of ONNX exports instead") from None
    _, _, VaeDecoder, VaeEncoder = _wrappers()
    PenultimateTextEncoder, PooledTextEncoder, UNetXL = _sdxl_wrappers()
    src, out = Path(diffusers_dir), Path(out_dir)
    log = progress or (lambda m: None)

    log("exporting text_encoder")
    te = CLIPTextModel.from_pretrained(src / "text_encoder", torch_dtype=torch.float32,
                                       use_safetensors=use_safetensors(src / "text_encoder", allow_pickle)).eval()
    seq, layers = te.config.max_position_embeddings, te.config.num_hidden_layers
    ids = torch.zeros(1, seq, dtype=torch.int64)
    _export(PenultimateTextEncoder(te), (ids,), out / "text_encoder" / "model.onnx", ["input_ids"],
            [f"hidden_states.{layers - 1}"])
    context = te.config.hidden_size
    del te
    log("exporting text_encoder_2")
    te2 = CLIPTextModelWithProjection.from_pretrained(src / "text_encoder_2", torch_dtype=torch.float32,
                                                      use_safetensors=use_safetensors(src / "text_encoder_2",
                                                                                      allow_pickle)).eval()
    if _too_big(te2):   # OpenCLIP bigG: 2.8 GB in float32
        _pretranspose_linears(te2)
    _export(PooledTextEncoder(te2), (ids,), out / "text_encoder_2" / "model.onnx", ["input_ids"],
            ["text_embeds", f"hidden_states.{te2.config.num_hidden_layers - 1}"])
    context += te2.config.hidden_size
    pooled = te2.config.projection_dim
    del te2

    vae = AutoencoderKL.from_pretrained(src / "vae", torch_dtype=torch.float32,
                                        use_safetensors=use_safetensors(src / "vae", allow_pickle)).eval()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latent_c, h, w = vae.config.latent_channels, height // factor, width // factor
    log("exporting vae_decoder")
    _export(VaeDecoder(vae), (torch.zeros(1, latent_c, h, w),), out / "vae_decoder" / "model.onnx",
            ["latent_sample"], ["sample"])
    log("exporting vae_encoder")
    _export(VaeEncoder(vae), (torch.zeros(1, 3, height, width),), out / "vae_encoder" / "model.onnx",
            ["sample"], ["latent_parameters"])
    del vae

    with torch.device("meta"):   # the graph is traced without weights; a big UNet's are attached when saving
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(src / "unet")).eval()
    big = _too_big(unet)
    if not big:
        unet = UNet2DConditionModel.from_pretrained(src / "unet", torch_dtype=torch.float32,
                                                    use_safetensors=use_safetensors(src / "unet", allow_pickle)).eval()
        unet.set_default_attn_processor()   # see export_torch.export_parts
    else:
        _pretranspose_linears(unet)
    n_ids = (unet.config.projection_class_embeddings_input_dim - pooled) // unet.config.addition_time_embed_dim
    names = ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"]
    for i, batch in enumerate(unet_batches):
        name = "unet" if i == 0 else f"unet_batch{batch}"
        log(f"exporting {name} (batch {batch})")
        with torch.device("meta" if big else "cpu"):
            time_ids = torch.tensor([[height, width, 0, 0, height, width][:n_ids]] * batch, dtype=torch.float32)
            args = (torch.randn(batch, unet.config.in_channels, h, w), torch.tensor([999.0]),
                    torch.randn(batch, seq, context), torch.randn(batch, pooled), time_ids)
        if big:
            _export_without_weights(UNetXL(unet), args, out / name / "model.onnx", names, src / "unet", "unet.")
        else:
            _export(UNetXL(unet), args, out / name / "model.onnx", names, ["out_sample"])
    return out


def _export_without_weights(module, args, path: Path, input_names, weights_dir: Path, prefix: str) -> None:
    """Export a module built on the meta device (dynamo exporter, no optimizer: it would read the weights), then
    attach the weights memory-mapped from the folder's safetensors files while saving: SDXL's 10 GB UNet exports
    in the memory of its graph plus one tensor, where exporting it with its weights loaded takes over 14 GB."""
    import torch
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(module, args, None, dynamo=True, opset_version=18, input_names=input_names,
                                    output_names=["out_sample"], optimize=False)
    stored = _mapped_safetensors(weights_dir)
    state = {}
    for name in module.state_dict():
        key = name[len(prefix):]
        state[name] = stored[key[:-2]].t() if key.endswith(".weight_t") else stored[key]
    program.apply_weights(state)
    program.optimize()   # now that it has weights (it rewrites SplitToSequence chunks, folds small constants)
    program.save(str(path), external_data=True)


def _mapped_safetensors(folder: Path) -> dict:
    """name -> tensor viewing the folder's *.safetensors files through mmap (no copy; the page cache holds them)."""
    import json
    import mmap

    import torch
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder} has no .safetensors weights (a model this big is exported from safetensors only)")
    tensors = {}
    for file in files:
        with open(file, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if info["dtype"] not in dtypes:
                raise ValueError(f"{file}: tensor {name} has dtype {info['dtype']}, not a float type")
            start, end = info["data_offsets"]
            dtype = dtypes[info["dtype"]]
            count = (end - start) // torch.tensor([], dtype=dtype).element_size()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # read-only buffer: never written
                t = torch.frombuffer(data, dtype=dtype, count=count, offset=8 + n + start) if count else \
                    torch.zeros(0, dtype=dtype)
            tensors[name] = t.reshape(info["shape"]).float() if dtype != torch.float32 else t.reshape(info["shape"])
    return tensors
