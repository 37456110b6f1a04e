"""Model zoo for onnxstream tests: builds small (and full-size) models with
random, deterministic weights and exports them to ONNX with either torch
exporter (dynamo: ``torch.onnx.export(dynamo=True, optimize=True)``, i.e. the
onnxscript optimizer runs: constant folding, initializer deduplication;
legacy: TorchScript exporter with ``do_constant_folding=True``), caching the
result on disk.  Input shapes are static (no dynamic axes).

No weights are downloaded: every model is built from a config with
``torch.manual_seed(0)`` and then has its normalisation parameters and
BatchNorm statistics perturbed, and any other constant-valued parameter (e.g.
zero-initialised transformers biases) gets small noise (so a runtime that
ignores gamma/beta, a bias or the running statistics is caught).

Public API (plain functions)::

    MODEL_NAMES, TINY_MODELS, FULL_MODELS, EXPORTERS, OPSETS, VERSION
    export(name, exporter="dynamo", cache_dir=None, *, force=False) -> Path
    inputs(name) -> dict[str, np.ndarray]
    input_names(name) / output_names(name) -> list[str]
    build(name) -> torch.nn.Module            # seeded, eval mode, wrapper
    torch_outputs(name, module=None) -> dict[str, np.ndarray]
    split_opset17_dynamo(cache_dir=None, *, force=False) -> Path
    cache_path(name, exporter, cache_dir=None, opset=None) -> Path
    default_cache_dir() -> Path

``export`` is cached: the file name contains the model name, the exporter,
the opset, ``VERSION`` (bump it when a builder changes) and a short hash of
the torch / onnx / onnxscript / diffusers / transformers versions.  The file
is written in a private temporary directory and renamed into place (an
exclusive lock file serialises concurrent exports of the same key).  Models
whose weights exceed ~1.9 GB are saved with all weights in ONE external data
file ``<file>.onnx.data`` beside the ``.onnx`` file; smaller ones are a single
self-contained ``.onnx`` file.

Importing this module does not import torch, diffusers or transformers; they
are imported on a cache miss (``export``) or by ``build``/``torch_outputs``.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

# Bump when any builder, wrapper, input generator or the export procedure
# changes: it is part of the cache key.
VERSION = "2"

EXPORTERS = ("dynamo", "legacy")
# Default opset per exporter: dynamo (torch.onnx.export default) -> 18,
# legacy (dynamo=False) -> 17.
OPSETS = {"dynamo": 18, "legacy": 17}

TINY_MODELS = (
    "tiny_unet",
    "tiny_vae_decoder",
    "tiny_vae_encoder",
    "tiny_text_encoder",
    "small_cnn",
    "bert_encoder",
    "split_chunk",
)
FULL_MODELS = ("sd15_unet", "sd15_vae_decoder", "sd15_text_encoder")
MODEL_NAMES = TINY_MODELS + FULL_MODELS

# Above this many bytes of initializers the model is saved with external data
# (protobuf cannot serialise messages >= 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_900_000_000
# Tensors smaller than this stay inline even in external-data models (so
# shape constants etc. are still readable without the data file).
EXTERNAL_DATA_SIZE_THRESHOLD = 1024


# --------------------------------------------------------------------------
# model specs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    build: Callable[[], "object"]  # () -> torch.nn.Module (unseeded)
    input_names: tuple
    output_names: tuple
    make_inputs: Callable[[np.random.Generator], Dict[str, np.ndarray]]
    seed: int


def _unet_config(full: bool) -> dict:
    if full:  # runwayml/stable-diffusion-v1-5 unet/config.json
        return dict(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            center_input_sample=False,
            flip_sin_to_cos=True,
            freq_shift=0,
            down_block_types=(
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ),
            up_block_types=(
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ),
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            downsample_padding=1,
            mid_block_scale_factor=1,
            act_fn="silu",
            norm_num_groups=32,
            norm_eps=1e-5,
            cross_attention_dim=768,
            attention_head_dim=8,
        )
    return dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        center_input_sample=False,
        flip_sin_to_cos=True,
        freq_shift=0,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        downsample_padding=1,
        mid_block_scale_factor=1,
        act_fn="silu",
        norm_num_groups=8,
        norm_eps=1e-5,
        cross_attention_dim=32,
        attention_head_dim=8,
    )


def _vae_config(full: bool) -> dict:
    if full:  # runwayml/stable-diffusion-v1-5 vae/config.json
        return dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            act_fn="silu",
            latent_channels=4,
            norm_num_groups=32,
            sample_size=512,
        )
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64),
        layers_per_block=1,
        act_fn="silu",
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )


def _clip_config(full: bool) -> dict:
    if full:  # openai/clip-vit-large-patch14 text part (SD1.5 text_encoder)
        return dict(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
            projection_dim=768,
            pad_token_id=1,
            bos_token_id=49406,
            eos_token_id=49407,
        )
    return dict(
        vocab_size=1000,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=32,
        pad_token_id=1,
        bos_token_id=998,
        eos_token_id=999,
    )


def _perturb_params(module, seed: int) -> None:
    """Give every norm layer non-trivial affine parameters (and BatchNorm
    non-trivial running statistics) and every other constant-valued
    parameter some noise, deterministically."""
    import torch

    g = torch.Generator().manual_seed(seed + 12345)
    norm_types = (
        torch.nn.GroupNorm,
        torch.nn.LayerNorm,
        torch.nn.modules.batchnorm._BatchNorm,
    )
    with torch.no_grad():
        for m in module.modules():
            if not isinstance(m, norm_types):
                continue
            w = getattr(m, "weight", None)
            b = getattr(m, "bias", None)
            if w is not None:
                w.copy_(1.0 + 0.1 * torch.randn(w.shape, generator=g))
            if b is not None:
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(
                    0.5 + torch.rand(m.running_var.shape, generator=g)
                )
        # Parameters that are still constant (e.g. zero-initialised Linear
        # biases of transformers models) get small noise: otherwise a runtime
        # that drops a bias passes, and the dynamo exporter deduplicates the
        # identical initializers into one shared tensor.
        for p in module.parameters():
            if p.numel() > 1 and bool((p == p.reshape(-1)[0]).all()):
                p.add_(0.02 * torch.randn(p.shape, generator=g))


# ---- wrappers (defined lazily because torch is imported lazily) ----------


def _wrappers():
    import torch

    class UNetWrapper(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.unet(
                sample, timestep, encoder_hidden_states, return_dict=False
            )[0]

    class VaeDecoderWrapper(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, latent_sample):
            return self.vae.decode(latent_sample, return_dict=False)[0]

    class VaeEncoderWrapper(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, sample):
            return self.vae.encode(sample).latent_dist.mean

    class HFWrapper(torch.nn.Module):
        """Returns last_hidden_state of a transformers model."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask=None):
            if attention_mask is None:
                out = self.model(input_ids=input_ids, return_dict=False)
            else:
                out = self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    return_dict=False,
                )
            return out[0]

    class BasicBlock(torch.nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(cout)
            self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = torch.nn.BatchNorm2d(cout)
            self.relu = torch.nn.ReLU()
            if stride != 1 or cin != cout:
                self.shortcut = torch.nn.Sequential(
                    torch.nn.Conv2d(cin, cout, 1, stride, 0, bias=False),
                    torch.nn.BatchNorm2d(cout),
                )
            else:
                self.shortcut = torch.nn.Identity()

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return self.relu(y + self.shortcut(x))

    class SmallCNN(torch.nn.Module):
        """Mini ResNet: conv7x7/2 + bn + relu + maxpool, two basic blocks
        (one strided with a 1x1 projection), a depthwise 3x3 conv, global
        average pool, flatten, linear."""

        def __init__(self, num_classes=10):
            super().__init__()
            self.stem = torch.nn.Sequential(
                torch.nn.Conv2d(3, 16, 7, 2, 3, bias=False),
                torch.nn.BatchNorm2d(16),
                torch.nn.ReLU(),
                torch.nn.MaxPool2d(3, 2, 1),
            )
            self.layer1 = BasicBlock(16, 16, 1)
            self.layer2 = BasicBlock(16, 32, 2)
            self.dw = torch.nn.Conv2d(32, 32, 3, 1, 1, groups=32, bias=True)
            self.pool = torch.nn.AdaptiveAvgPool2d(1)
            self.fc = torch.nn.Linear(32, num_classes)

        def forward(self, x):
            x = self.layer2(self.layer1(self.stem(x)))
            x = torch.relu(self.dw(x))
            x = torch.flatten(self.pool(x), 1)
            return self.fc(x)

    class SplitChunk(torch.nn.Module):
        """GLU-like: torch.chunk -> Split with equal parts (num_outputs in
        opset 18, which is the known-broken case of dynamo at opset 17)."""

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(8, 16)

        def forward(self, x):
            a, b = torch.chunk(self.proj(x), 2, dim=-1)
            return a * torch.sigmoid(b)

    return dict(
        UNetWrapper=UNetWrapper,
        VaeDecoderWrapper=VaeDecoderWrapper,
        VaeEncoderWrapper=VaeEncoderWrapper,
        HFWrapper=HFWrapper,
        SmallCNN=SmallCNN,
        SplitChunk=SplitChunk,
    )


def _build_unet(full: bool):
    from diffusers import UNet2DConditionModel

    return _wrappers()["UNetWrapper"](UNet2DConditionModel(**_unet_config(full)))


def _build_vae_decoder(full: bool):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**_vae_config(full))
    # Only decode() is exported; drop the encoder half to save memory
    # (weights of the decoder are identical to the *_vae_encoder model's VAE
    # because both are built from the same seed and config).
    vae.encoder = None
    vae.quant_conv = None
    return _wrappers()["VaeDecoderWrapper"](vae)


def _build_vae_encoder(full: bool):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**_vae_config(full))
    vae.decoder = None
    vae.post_quant_conv = None
    return _wrappers()["VaeEncoderWrapper"](vae)


def _build_clip(full: bool):
    from transformers import CLIPTextConfig, CLIPTextModel

    return _wrappers()["HFWrapper"](CLIPTextModel(CLIPTextConfig(**_clip_config(full))))


def _build_bert():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    return _wrappers()["HFWrapper"](BertModel(cfg, add_pooling_layer=False))


def _randn(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def _clip_ids(rng, batch, vocab, bos, eos, length=77):
    """Tokenizer-like ids: BOS, some tokens, EOS, padded with EOS (as the
    SD1.5 CLIP tokenizer does)."""
    ids = np.full((batch, length), eos, dtype=np.int64)
    for b in range(batch):
        n = int(rng.integers(5, length - 2))
        ids[b, 0] = bos
        ids[b, 1 : n + 1] = rng.integers(2, min(vocab, bos), size=n)
        ids[b, n + 1] = eos
    return ids


def _unet_inputs(full):
    hw = 64 if full else 16
    ctx = 768 if full else 32

    def make(rng):
        return {
            "sample": _randn(rng, 2, 4, hw, hw),
            "timestep": np.array([501.0], dtype=np.float32),
            "encoder_hidden_states": _randn(rng, 2, 77, ctx),
        }

    return make


def _vae_dec_inputs(full):
    hw = 64 if full else 16
    return lambda rng: {"latent_sample": _randn(rng, 1, 4, hw, hw)}


def _vae_enc_inputs(full):
    hw = 512 if full else 32
    return lambda rng: {
        "sample": np.clip(_randn(rng, 1, 3, hw, hw) * 0.5, -1.0, 1.0)
    }


def _clip_inputs(full):
    c = _clip_config(full)
    return lambda rng: {
        "input_ids": _clip_ids(
            rng, 2, c["vocab_size"], c["bos_token_id"], c["eos_token_id"]
        )
    }


def _bert_inputs(rng):
    ids = rng.integers(1, 1000, size=(2, 16)).astype(np.int64)
    mask = np.ones((2, 16), dtype=np.int64)
    mask[1, 11:] = 0  # padded second sequence
    ids[1, 11:] = 0
    return {"input_ids": ids, "attention_mask": mask}


_SPECS: Dict[str, _Spec] = {
    "tiny_unet": _Spec(
        lambda: _build_unet(False),
        ("sample", "timestep", "encoder_hidden_states"),
        ("out_sample",),
        _unet_inputs(False),
        1,
    ),
    "tiny_vae_decoder": _Spec(
        lambda: _build_vae_decoder(False),
        ("latent_sample",),
        ("sample",),
        _vae_dec_inputs(False),
        2,
    ),
    "tiny_vae_encoder": _Spec(
        lambda: _build_vae_encoder(False),
        ("sample",),
        ("latent_mean",),
        _vae_enc_inputs(False),
        3,
    ),
    "tiny_text_encoder": _Spec(
        lambda: _build_clip(False),
        ("input_ids",),
        ("last_hidden_state",),
        _clip_inputs(False),
        4,
    ),
    "small_cnn": _Spec(
        lambda: _wrappers()["SmallCNN"](),
        ("input",),
        ("logits",),
        lambda rng: {"input": _randn(rng, 2, 3, 32, 32)},
        5,
    ),
    "bert_encoder": _Spec(
        _build_bert,
        ("input_ids", "attention_mask"),
        ("last_hidden_state",),
        _bert_inputs,
        6,
    ),
    "split_chunk": _Spec(
        lambda: _wrappers()["SplitChunk"](),
        ("x",),
        ("y",),
        lambda rng: {"x": _randn(rng, 2, 3, 8)},
        7,
    ),
    "sd15_unet": _Spec(
        lambda: _build_unet(True),
        ("sample", "timestep", "encoder_hidden_states"),
        ("out_sample",),
        _unet_inputs(True),
        11,
    ),
    "sd15_vae_decoder": _Spec(
        lambda: _build_vae_decoder(True),
        ("latent_sample",),
        ("sample",),
        _vae_dec_inputs(True),
        12,
    ),
    "sd15_text_encoder": _Spec(
        lambda: _build_clip(True),
        ("input_ids",),
        ("last_hidden_state",),
        _clip_inputs(True),
        14,
    ),
}


def _spec(name: str) -> _Spec:
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}"
        ) from None


def input_names(name: str) -> List[str]:
    return list(_spec(name).input_names)


def output_names(name: str) -> List[str]:
    return list(_spec(name).output_names)


def inputs(name: str) -> Dict[str, np.ndarray]:
    """Deterministic sample inputs, keyed by the ONNX input names (identical
    for both exporters)."""
    spec = _spec(name)
    rng = np.random.default_rng(1000 + spec.seed)
    out = spec.make_inputs(rng)
    assert list(out) == list(spec.input_names), (list(out), spec.input_names)
    return out


def build(name: str):
    """The torch module that gets exported: seeded (torch.manual_seed(0)),
    norm/constant parameters perturbed, eval mode, requires_grad off.  Its forward
    takes the inputs positionally in ``input_names(name)`` order."""
    import torch

    spec = _spec(name)
    torch.manual_seed(0)
    with torch.no_grad():
        model = spec.build()
        _perturb_params(model, spec.seed)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _torch_args(name: str):
    import torch

    return tuple(torch.from_numpy(v) for v in inputs(name).values())


def torch_outputs(name: str, module=None) -> Dict[str, np.ndarray]:
    """Reference outputs of the torch module on ``inputs(name)``."""
    import torch

    if module is None:
        module = build(name)
    with torch.no_grad():
        out = module(*_torch_args(name))
    if not isinstance(out, (tuple, list)):
        out = (out,)
    return {
        k: v.detach().cpu().numpy() for k, v in zip(output_names(name), out)
    }


# --------------------------------------------------------------------------
# cache + export
# --------------------------------------------------------------------------


def default_cache_dir() -> Path:
    env = os.environ.get("ONNXSTREAM_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "onnxstream" / "models"


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _env_hash() -> str:
    parts = [
        f"{d}={_dist_version(d)}"
        for d in ("torch", "onnx", "onnxscript", "onnx-ir", "diffusers", "transformers")
    ]
    return hashlib.sha1(";".join(parts).encode()).hexdigest()[:8]


def cache_path(
    name: str, exporter: str, cache_dir=None, opset: Optional[int] = None
) -> Path:
    _spec(name)
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, not {exporter!r}")
    if opset is None:
        opset = OPSETS[exporter]
    d = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return d / f"{name}-{exporter}-opset{opset}-v{VERSION}-{_env_hash()}.onnx"


@contextlib.contextmanager
def _file_lock(path: Path):
    import fcntl

    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _torch_export(module, args, path: Path, exporter: str, opset: int, spec: _Spec):
    import torch

    kw = dict(
        input_names=list(spec.input_names),
        output_names=list(spec.output_names),
        opset_version=opset,
    )
    with torch.no_grad():
        if exporter == "dynamo":
            prog = torch.onnx.export(module, args, None, dynamo=True, **kw)
            # Always external here; _finalize decides the final layout.
            prog.save(str(path), external_data=True)
            del prog
        else:
            torch.onnx.export(
                module, args, str(path), dynamo=False, do_constant_folding=True, **kw
            )


def _finalize(src: Path, dst_dir: Path, final_name: str, check: bool) -> dict:
    """Load the exporter's output (whatever its external-data layout) and
    re-save it in ``dst_dir/final_name`` (+ ``final_name.data`` if big)."""
    import onnx

    model = onnx.load(str(src), load_external_data=True)
    total = sum(
        len(t.raw_data) if t.HasField("raw_data") else onnx.numpy_helper.to_array(t).nbytes
        for t in model.graph.initializer
    )
    dst = dst_dir / final_name
    external = total > EXTERNAL_DATA_THRESHOLD
    if external:
        onnx.save_model(
            model,
            str(dst),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=final_name + ".data",
            size_threshold=EXTERNAL_DATA_SIZE_THRESHOLD,
            convert_attribute=False,
        )
        os.chmod(dst_dir / (final_name + ".data"), 0o644)  # onnx writes 0600
    else:
        onnx.save_model(model, str(dst))
    if check:
        # full_check runs strict shape inference too; path-based for >2 GB.
        onnx.checker.check_model(str(dst), full_check=True)
    return {"initializer_bytes": total, "external_data": external}


def _export_to_cache(
    name: str, exporter: str, opset: int, cache_dir, force: bool, check: bool
) -> Path:
    spec = _spec(name)
    final = cache_path(name, exporter, cache_dir, opset)
    if final.exists() and not force:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    lock_dir = final.parent / ".locks"
    lock_dir.mkdir(exist_ok=True)
    with _file_lock(lock_dir / (final.name + ".lock")):
        if final.exists() and not force:
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.stem}-", dir=final.parent))
        try:
            t0 = time.perf_counter()
            module = build(name)
            args = _torch_args(name)
            t1 = time.perf_counter()
            raw_dir = tmp / "raw"
            raw_dir.mkdir()
            _torch_export(module, args, raw_dir / "model.onnx", exporter, opset, spec)
            t2 = time.perf_counter()
            del module, args
            gc.collect()
            info = _finalize(raw_dir / "model.onnx", tmp, final.name, check)
            t3 = time.perf_counter()
            shutil.rmtree(raw_dir)
            meta = dict(
                name=name,
                exporter=exporter,
                opset=opset,
                version=VERSION,
                torch=_dist_version("torch"),
                build_seconds=round(t1 - t0, 3),
                export_seconds=round(t2 - t1, 3),
                finalize_seconds=round(t3 - t2, 3),
                input_names=list(spec.input_names),
                output_names=list(spec.output_names),
                **info,
            )
            (tmp / (final.name + ".json")).write_text(json.dumps(meta, indent=1))
            # data first, the .onnx last: its presence means "complete".
            data = tmp / (final.name + ".data")
            if data.exists():
                os.replace(data, final.with_name(final.name + ".data"))
            os.replace(tmp / (final.name + ".json"), final.with_name(final.name + ".json"))
            os.replace(tmp / final.name, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def export(name: str, exporter: str = "dynamo", cache_dir=None, *, force: bool = False) -> Path:
    """Export model ``name`` with ``exporter`` ("dynamo": torch.onnx.export
    default, opset 18; "legacy": dynamo=False, opset 17) and return the path
    of the cached ``.onnx`` file (built on first use).  The model is checked
    with ``onnx.checker`` (full_check) before it is cached.  A JSON file with
    export metadata (timings, sizes) is written beside it."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, not {exporter!r}")
    return _export_to_cache(name, exporter, OPSETS[exporter], cache_dir, force, True)


def split_opset17_dynamo(cache_dir=None, *, force: bool = False) -> Path:
    """The known-broken export: the dynamo exporter asked for opset 17 on a
    module using ``torch.chunk`` (model ``split_chunk``).  With torch 2.13 the
    file declares opset 17 (ai.onnx) but contains a ``Split`` node with the
    opset-18 attribute ``num_outputs=2`` and no ``split`` input, so
    ``onnx.checker`` and onnxruntime reject it ("Unrecognized attribute:
    num_outputs for operator Split").  Not checked before caching.  Use
    ``inputs("split_chunk")`` / ``torch_outputs("split_chunk")`` with it."""
    return _export_to_cache("split_chunk", "dynamo", 17, cache_dir, force, False)
