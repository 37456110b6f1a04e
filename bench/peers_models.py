"""The same random SD1.5 weights in the form each peer loads (for bench/peers.py; all cached, written atomically).

Source: bench/sd15_pipeline.py's random-weight diffusers pipeline (torch.manual_seed(0), the real SD1.5 configs,
CLIP's real BPE vocabulary), so every engine runs the same tensors.

- stable-diffusion.cpp: a single-file SD1.5 checkpoint in the original (LDM) layout, float16 safetensors, written
  from the diffusers weights with the key renames of diffusers' conversion script (its diffusers-folder loader
  cannot tell the model version of a diffusers SD1.5 folder: "get sd version from file failed").
- OnnxStream: its own conversion steps (its README, "How to Convert and Run a Custom Stable Diffusion 1.5 Model"):
  torch.onnx.export of each part with fixed shapes and opset 14 (UNet at batch 1, as its app runs it), the ONNX
  simplifier, then its onnx2txt notebook (run as a script from the fetched snapshot: the notebook's code cells
  after its parameters cell, as papermill would), into the folder layout its `sd` app reads: tokenizer/
  (vocab.txt, merges.txt), text_encoder_fp32/, unet_fp16/, vae_decoder_fp16/, vae_decoder_qu8/ (+ range_data.txt,
  calibrated by its own --decoder-calibrate). Graph input names follow the ones its app pushes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from peers_build import log, onnxstream_sources
from cache_dir import atomic_dir  # noqa: E402

ONNX_OPSET = 14  # OnnxStream's guide; opset 17 would emit LayerNormalization, which OnnxStream lacks




# ---------------------------------------------------------------- stable-diffusion.cpp: one LDM-layout checkpoint

# sd.cpp 0.4.7's diffusers-directory loader cannot tell the SD version of a diffusers SD1.5 folder ("get sd version
# from file failed"), so it gets what it is usually fed: the original single-file layout (the CompVis/LDM names),
# float16. The renames below are the ones diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py
# applies (read from its repository); written here as prefix tables.

def _unet_renames() -> list[tuple[str, str]]:
    """(diffusers prefix, LDM prefix), applied in order after the resnet-internal renames."""
    out = []
    for i in range(4):
        for j in range(2):
            out.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{3 * i + j + 1}.0."))
            if i < 3:
                out.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{3 * i + j + 1}.1."))
        for j in range(3):
            out.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{3 * i + j}.0."))
            if i > 0:
                out.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{3 * i + j}.1."))
        if i < 3:
            out.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{3 * (i + 1)}.0.op."))
            out.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}."))
    out.append(("mid_block.attentions.0.", "middle_block.1."))
    out += [(f"mid_block.resnets.{j}.", f"middle_block.{2 * j}.") for j in range(2)]
    return out


UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
            "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
UNET_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
               ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def _unet_key(k: str, layers) -> str:
    head, _, tail = k.rpartition(".")
    if head in UNET_TOP:
        return f"{UNET_TOP[head]}.{tail}"
    if "resnets" in k:
        for hf, sd in UNET_RESNET:
            k = k.replace(hf, sd)
    for hf, sd in layers:
        k = k.replace(hf, sd)
    return k


def _vae_renames() -> list[tuple[str, str]]:
    out = [("conv_shortcut", "nin_shortcut"), ("conv_norm_out", "norm_out"), ("mid_block.attentions.0.", "mid.attn_1.")]
    for i in range(4):
        out += [(f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.") for j in range(2)]
        if i < 3:
            out.append((f"down_blocks.{i}.downsamplers.0.", f"down.{i}.downsample."))
            out.append((f"up_blocks.{i}.upsamplers.0.", f"up.{3 - i}.upsample."))
        out += [(f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{3 - i}.block.{j}.") for j in range(3)]
    out += [(f"mid_block.resnets.{i}.", f"mid.block_{i + 1}.") for i in range(2)]
    return out


VAE_ATTN = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]


def ldm_state_dict(unet: dict, vae: dict, text_encoder: dict) -> dict:
    """diffusers state dicts -> one SD1.x checkpoint state dict (model.diffusion_model., first_stage_model.,
    cond_stage_model.transformer. prefixes)."""
    layers, vae_layers = _unet_renames(), _vae_renames()
    out = {"model.diffusion_model." + _unet_key(k, layers): v for k, v in unet.items()}
    for k, v in vae.items():
        for hf, sd in vae_layers:
            k = k.replace(hf, sd)
        if "mid.attn_1." in k:
            for hf, sd in VAE_ATTN:
                k = k.replace(hf, sd)
            if k.endswith(".weight") and v.ndim == 2:  # linear -> 1x1 conv, as the original VAE stores them
                v = v.reshape(*v.shape, 1, 1)
        out["first_stage_model." + k] = v
    # CLIPTextModel's keys: "text_model.embeddings..." in the original layout; recent transformers save them
    # without the "text_model." level, which sd.cpp needs to find the token embedding (and so the SD version).
    out.update({"cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k): v
                for k, v in text_encoder.items()})
    return out


def sdcpp_model(diffusers_dir: Path) -> Path:
    dest = diffusers_dir.parent / "sd15-ldm-f16.safetensors"
    if dest.is_file():
        return dest
    import torch
    from safetensors.torch import load_file, save_file
    log("writing the float16 single-file (LDM layout) checkpoint for stable-diffusion.cpp")
    parts = [load_file(str(diffusers_dir / p)) for p in ("unet/diffusion_pytorch_model.safetensors",
                                                        "vae/diffusion_pytorch_model.safetensors",
                                                        "text_encoder/model.safetensors")]
    state = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in ldm_state_dict(*parts).items()}
    tmp = dest.with_suffix(".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, dest)
    return dest


# ---------------------------------------------------------------- OnnxStream: export, simplify, onnx2txt

def _export(diffusers_dir: Path, part: str, onnx_path: Path):
    """torch.onnx.export (TorchScript, opset 14, fixed shapes) as OnnxStream's guide does, input names as its app
    pushes them: text encoder 'onnx::Reshape_0' [1, 77] int64; UNet sample [1, 4, 64, 64], timestep [1],
    encoder_hidden_states [1, 77, 768]; VAE decoder 'input.1' [1, 4, 64, 64] (latents / 0.18215)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from onnxstream.pipelines.export_torch import _wrappers  # the pipeline export's forward() wrappers
    TextEncoder, UNet, VaeDecoder, _ = _wrappers()

    if part == "text_encoder":
        model = TextEncoder(CLIPTextModel.from_pretrained(diffusers_dir / "text_encoder").eval())
        args, names, outs = (torch.zeros(1, 77, dtype=torch.int64),), ["onnx::Reshape_0"], ["last_hidden_state"]
    elif part == "unet":
        model = UNet(UNet2DConditionModel.from_pretrained(diffusers_dir / "unet").eval())
        args = (torch.randn(1, 4, 64, 64), torch.tensor([999.0]), torch.randn(1, 77, 768))
        names, outs = ["sample", "timestep", "encoder_hidden_states"], ["out_sample"]
    else:
        model = VaeDecoder(AutoencoderKL.from_pretrained(diffusers_dir / "vae").eval())
        args, names, outs = (torch.randn(1, 4, 64, 64),), ["input.1"], ["sample"]
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():  # over 2 GB (the UNet) the TorchScript exporter writes external data beside the file
        torch.onnx.export(model, args, str(onnx_path), dynamo=False, opset_version=ONNX_OPSET,
                          do_constant_folding=True, input_names=names, output_names=outs)


def _simplify(src: Path, dst: Path):
    """The ONNX simplifier (onnxsim), as OnnxStream's guide; external data for the big UNet. Without onnxsim's
    MatMul + Add -> Gemm fusions (the 2-D one, and the batched one that reshapes rank-3 activations to 2-D): they
    make 2-D Gemms with a [N] bias (the attention projections, the text encoder's MLPs), which OnnxStream's Gemm
    refuses ("XnnPack::matrix_multiply_fp32: invalid shape of bias": it takes a bias of the output's shape). Its
    other optimizations stay: without them the UNet keeps the Cast of a shape into the attention scale, which
    OnnxStream's Cast cannot run."""
    import onnx
    import onnxsim
    model = onnx.load(str(src))
    big = sum(t.ByteSize() for t in model.graph.initializer) > 1_800_000_000
    # Over protobuf's 2 GB, onnxsim reads the file itself and writes dst with external data (it refuses a
    # ModelProto with output_path).
    simplified, ok = onnxsim.simplify(str(src) if big else model, output_path=str(dst) if big else None,
                                      skipped_optimizers=["fuse_matmul_add_bias_into_gemm",
                                                          "fuse_matmul_add_bias_into_gemm_batched"])
    if not ok:
        raise RuntimeError(f"onnxsim could not validate the simplified {src}")
    if not big:
        onnx.save(simplified, str(dst))
    elif not dst.is_file():
        onnx.save(simplified, str(dst), save_as_external_data=True, location=dst.name + ".data")


def _onnx2txt(onnx_path: Path, dest: Path, fp16=False, uint8=False):
    """Runs OnnxStream's onnx2txt.ipynb (from the snapshot) with its parameters set, like papermill would."""
    nb = json.loads((onnxstream_sources() / "onnx2txt" / "onnx2txt.ipynb").read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    params = (f"ONNX_FILENAME = {str(onnx_path)!r}\nDEST_FOLDER = {str(dest)!r}\nCONVERT_TO_FP16 = {fp16}\n"
              f"QUANTIZE_UINT8 = {uint8}\n")
    script = dest.parent / f".onnx2txt-{dest.name}.py"
    script.write_text(cells[0] + "\n" + params + "\n" + "\n".join(cells[1:]))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=dest.parent)
    script.unlink()
    if r.returncode != 0:
        raise RuntimeError(f"onnx2txt failed on {onnx_path}:\n{r.stderr[-3000:]}")
    if "Shape ->" in r.stdout:  # its guide: a Shape op left means the simplifier did not finish the job
        log(f"warning: onnx2txt left Shape ops in {dest.name}")


def onnxstream_model(diffusers_dir: Path, tokenizer_dir: Path) -> Path:
    """The folder OnnxStream's `sd` app reads for SD1.5 (--models-path)."""
    def build(tmp: Path):
        work = tmp / ".onnx"
        (tmp / "tokenizer").mkdir()
        vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
        (tmp / "tokenizer" / "vocab.txt").write_text(
            "\n".join(t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])) + "\n", encoding="utf-8")
        shutil.copy2(tokenizer_dir / "merges.txt", tmp / "tokenizer" / "merges.txt")
        for part, outs in [("text_encoder", [("text_encoder_fp32", {})]),
                           ("vae_decoder", [("vae_decoder_fp16", {"fp16": True}), ("vae_decoder_qu8", {"uint8": True})]),
                           ("unet", [("unet_fp16", {"fp16": True})])]:
            log(f"OnnxStream conversion: exporting {part} (opset {ONNX_OPSET}, batch 1)")
            _export(diffusers_dir, part, work / part / "model.onnx")
            log(f"OnnxStream conversion: onnxsim {part}")
            _simplify(work / part / "model.onnx", work / part / "sim.onnx")
            for name, flags in outs:
                log(f"OnnxStream conversion: onnx2txt -> {name}")
                _onnx2txt(work / part / "sim.onnx", tmp / name, **flags)
            shutil.rmtree(work / part)
        # Filled by its --decoder-calibrate. Its app reads the file in every mode and refuses an empty one
        # ("read_file: invalid size of file"); an empty line parses as no ranges.
        (tmp / "vae_decoder_qu8" / "range_data.txt").write_bytes(b"\r\n")
        shutil.rmtree(work)
    return atomic_dir(diffusers_dir.parent / "onnxstream-app", build)
