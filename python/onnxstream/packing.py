"""Convert-time packing of constant GEMM weights into the 16-column panels every ISA's kernels read (layout
defined once, in C++: _core.pack_gemm_b), so a run never repacks. Converter only: the runtime reads the layout
through graph.py (its names, column-block geometry) and runtime/panels.py.

A packed weight keeps its ONNX shape in the weight table plus layout "gemm_b_panels16" with the logical K, N of
its [K, N] operand (per group for Conv); the runtime hands it to ops as a `Panels`. A big one is stored as column
blocks (cols_per_block columns each, packed on their own, so each is a byte range holding whole panels): the
runtime hands it over as `PanelBlocks`, which reads one block at a time while the op computes those output columns.
With --weights int8 the layout is "gemm_b_panels16_qc8w" (dtype int8): per group (or column block) one blob of int8
panels followed by per-column float32 scales (cpp/ops/qc8w.h), quantized here by _core.pack_gemm_b_qc8w.
"""
from __future__ import annotations

import numpy as np

from . import _core
from .graph import LAYOUT, LAYOUT_QC8W, column_blocks

# Packed weights above this are stored as column blocks: the biggest SD1.5 UNet conv (59 MB in fp16) would
# otherwise be whole in memory while it runs. Each block re-gathers the op's input (a conv's im2col), so smaller
# blocks cost time: on the UNet, 4 MB blocks made the step ~9% slower than 16 MB ones, for the same peak (set by
# the 64x64 level's activations, where the weights are small).
COLUMN_BLOCK_BYTES = 16 << 20
RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}




def pack_gemm_b(b: np.ndarray) -> np.ndarray:
    """[K, N] (any strides) -> 1-D panels."""
    out = np.empty(_core.packed_gemm_b_elements(*b.shape), b.dtype)
    _core.pack_gemm_b(b, out)
    return out


def pack_gemm_b_qc8w(b: np.ndarray) -> np.ndarray:
    """[K, N] float32 (any strides) -> 1-D int8 qc8w blob: int8 panels, then per-column scales."""
    out = np.empty(_core.qc8w_blob_bytes(*b.shape), np.int8)
    _core.pack_gemm_b_qc8w(b, out)
    return out


def pack_conv(w: np.ndarray, group: int, pack=pack_gemm_b) -> np.ndarray:
    """Conv weight [M, C/group, *kernel] -> per group the panels of its [K, M/group] operand, element (k, m) = w[m, k]."""
    M = w.shape[0]
    per_group = w.reshape(group, M // group, -1)   # [group, Mg, K]
    return np.concatenate([pack(g.T) for g in per_group])


def packable(nodes) -> dict[str, tuple]:
    """Weight name -> use, for weights read only as the B of MatMul (also inside FusedRowTiled), the B of Gemm
    (use ("gemm", transB)), the W of Conv (use ("conv", group)) or the W and R of LSTM/GRU/RNN (use ("rnn", gates)),
    always with the same meaning; a weight read any other way keeps its layout."""
    uses: dict[str, set] = {}
    for node in nodes:
        for i, name in enumerate(node.inputs):
            use = None
            if node.op == "Conv" and i == 1:
                use = ("conv", int(node.attrs.get("group", 1)))
            elif node.op == "FusedConv" and i in (1, 5):
                use = ("conv", int((node.attrs if i == 1 else node.attrs.get("src") or {}).get("group", 1)))
            elif node.op == "MatMul" and i == 1:
                use = ("gemm", 0)
            elif node.op == "Gemm" and i == 1:
                use = ("gemm", int(node.attrs.get("transB", 0)))
            elif node.op in RNN_GATES and i in (1, 2):  # W, R: one [K, hidden] operand per direction and gate
                use = ("rnn", RNN_GATES[node.op])
            elif node.op == "FusedRowTiled" and i > 0:
                # Packed once here, instead of by every row tile's MatMul.
                inner = [(n["op"], j) for n in node.attrs["nodes"] for j, x in enumerate(n["inputs"]) if x == name]
                if all(op == "MatMul" and j == 1 for op, j in inner):
                    use = ("gemm", 0)
            if name:
                uses.setdefault(name, set()).add(use)
    return {name: next(iter(u)) for name, u in uses.items() if len(u) == 1 and None not in u}


# --weights int8 keeps a weight in float16 when per-column symmetric int8 would lose more than this in its worst
# output channel: the quantization error relative to the column's norm without its largest weight (a column with
# an outlier quantizes everything else to a few levels, or to zero: one 1x1 conv of an OCR recognizer lost 0.32
# relative L2 at the model's output). Gaussian-like columns lose about 0.01.
INT8_MAX_COLUMN_ERROR = 0.03


def int8_column_error(a: np.ndarray, use: tuple) -> float:
    """The worst output channel's int8 error (as pack_gemm_b_qc8w quantizes), relative to that column's norm
    without its largest weight."""
    kind, arg = use
    if kind == "conv":
        b = a.reshape(a.shape[0], -1).T.astype(np.float64)          # [K, M]: columns are output channels
    else:
        b = (a.T if arg else a).astype(np.float64)
    scale = np.abs(b).max(axis=0) / 127
    scale = np.where(scale > 0, scale, 1.0)
    err = np.sqrt(((b - np.clip(np.round(b / scale), -127, 127) * scale) ** 2).sum(axis=0))
    norm = np.sqrt(np.maximum((b ** 2).sum(axis=0) - (b ** 2).max(axis=0, initial=0.0), 0.0))  # without the largest
    return float(np.max(np.where(norm > 0, err / np.maximum(norm, 1e-300), 0.0), initial=0.0))


def mark(w, use: tuple, int8: bool = False) -> None:
    """Give the weight-table entry w (graph.Weight, ONNX shape and stored dtype set) the packed layout when it fits;
    with int8, the qc8w layout (dtype int8) instead."""
    kind, arg = use
    if w.dtype not in ("float32", "float16"):
        return
    if kind == "conv" and arg > 1 and arg == w.shape[0] and w.shape[1] == 1 and len(w.shape) <= 4:
        return  # depthwise: the f32-dwconv kernels read [C, taps] as the ONNX tensor has it
    if kind == "conv" and len(w.shape) >= 3 and w.shape[0] % arg == 0:
        w.k, w.n = int(np.prod(w.shape[1:])), w.shape[0] // arg
    elif kind == "gemm" and len(w.shape) == 2:
        w.transposed = bool(arg)
        w.k, w.n = (w.shape[1], w.shape[0]) if arg else tuple(w.shape)
    elif kind == "rnn" and len(w.shape) == 3 and w.shape[1] % arg == 0:
        w.k, w.n = w.shape[2], w.shape[1] // arg
        int8 = False  # the cell reads a direction's gates as one operand: qc8w blobs (scales after each) cannot be
    else:
        return
    w.layout = LAYOUT_QC8W if int8 else LAYOUT
    if int8:
        w.dtype = "int8"


def split_columns(w, block_bytes: int = 0) -> None:
    """Give a big packed single-group weight (marked by mark()) column blocks of about block_bytes
    (COLUMN_BLOCK_BYTES unless given)."""
    if w.layout not in (LAYOUT, LAYOUT_QC8W) or (len(w.shape) >= 3 and w.shape[0] != w.n):
        return
    column_bytes = w.k * np.dtype(w.dtype).itemsize
    cols = max(16, (block_bytes or COLUMN_BLOCK_BYTES) // column_bytes // 16 * 16)
    if cols < w.n:
        w.cols_per_block = int(cols)


def pack(a: np.ndarray, w) -> list[np.ndarray]:
    """The arrays to store, one per column block, for the weight a (the ONNX tensor, float) of table entry w
    (marked by mark())."""
    if w.layout == LAYOUT:
        a, packer = a.astype(np.dtype(w.dtype), copy=False), pack_gemm_b
    elif w.layout == LAYOUT_QC8W:  # per-column scales: a column block quantizes as it would in the whole
        a, packer = a.astype(np.float32, copy=False), pack_gemm_b_qc8w
    else:
        raise ValueError(f"weight {w.name}: unknown layout {w.layout!r}")
    if len(w.shape) >= 3:  # groups of [k, n] operands: a Conv's groups, or a recurrent op's directions x gates
        if not w.cols_per_block:
            groups = a.size // (w.k * w.n)
            return [pack_conv(a.reshape(groups * w.n, w.k), group=groups, pack=packer)]
        return [pack_conv(a[n0:n1], group=1, pack=packer) for n0, n1 in column_blocks(w)]
    b = a.T if w.transposed else a
    return [packer(b[:, n0:n1]) for n0, n1 in column_blocks(w)]
