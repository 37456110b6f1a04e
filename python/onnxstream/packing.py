"""Convert-time packing of constant GEMM weights into the 16-column panels every ISA's kernels read
(layout defined once, in C++: _core.pack_gemm_b), so a run never repacks.

A packed weight keeps its ONNX shape in the weight table plus layout "gemm_b_panels16" with the logical K, N of
its [K, N] operand (per group for Conv); the runtime hands it to ops as a `Panels`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _core

LAYOUT = "gemm_b_panels16"


@dataclass
class Panels:
    """A constant weight packed for the GEMM kernels: groups x ceil(n/16) panels [k][16], float32 or float16."""
    data: np.ndarray     # 1-D
    shape: tuple         # the ONNX weight's shape
    k: int
    n: int

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return len(self.shape)


def pack_gemm_b(b: np.ndarray) -> np.ndarray:
    """[K, N] (any strides) -> 1-D panels."""
    out = np.empty(_core.packed_gemm_b_elements(*b.shape), b.dtype)
    _core.pack_gemm_b(b, out)
    return out


def pack_conv(w: np.ndarray, group: int) -> np.ndarray:
    """Conv weight [M, C/group, *kernel] -> per group the panels of its [K, M/group] operand, element (k, m) = w[m, k]."""
    M = w.shape[0]
    per_group = w.reshape(group, M // group, -1)   # [group, Mg, K]
    return np.concatenate([pack_gemm_b(g.T) for g in per_group])


def packable(nodes) -> dict[str, tuple]:
    """Weight name -> use, for weights read only as the B of MatMul (also inside FusedRowTiled), the B of Gemm
    (use ("gemm", transB)) or the W of Conv (use ("conv", group)), always with the same meaning; a weight read any
    other way keeps its layout."""
    uses: dict[str, set] = {}
    for node in nodes:
        for i, name in enumerate(node.inputs):
            use = None
            if node.op == "Conv" and i == 1:
                use = ("conv", int(node.attrs.get("group", 1)))
            elif node.op == "MatMul" and i == 1:
                use = ("gemm", 0)
            elif node.op == "Gemm" and i == 1:
                use = ("gemm", int(node.attrs.get("transB", 0)))
            elif node.op == "FusedRowTiled" and i > 0:
                # Packed once here, instead of by every row tile's MatMul.
                inner = [(n["op"], j) for n in node.attrs["nodes"] for j, x in enumerate(n["inputs"]) if x == name]
                if all(op == "MatMul" and j == 1 for op, j in inner):
                    use = ("gemm", 0)
            if name:
                uses.setdefault(name, set()).add(use)
    return {name: next(iter(u)) for name, u in uses.items() if len(u) == 1 and None not in u}


def mark(w, use: tuple) -> None:
    """Give the weight-table entry w (graph.Weight, ONNX shape and stored dtype set) the packed layout when it fits."""
    kind, arg = use
    if w.dtype not in ("float32", "float16"):
        return
    if kind == "conv" and len(w.shape) >= 3 and w.shape[0] % arg == 0:
        w.k, w.n = int(np.prod(w.shape[1:])), w.shape[0] // arg
    elif kind == "gemm" and len(w.shape) == 2:
        w.transposed = bool(arg)
        w.k, w.n = (w.shape[1], w.shape[0]) if arg else tuple(w.shape)
    else:
        return
    w.layout = LAYOUT


def pack(a: np.ndarray, w) -> np.ndarray:
    """The bytes to store for the weight a of table entry w (marked by mark())."""
    if w.layout != LAYOUT:
        raise ValueError(f"weight {w.name}: unknown layout {w.layout!r}")
    if len(w.shape) >= 3:
        return pack_conv(a, group=w.shape[0] // w.n)
    return pack_gemm_b(a.T if w.transposed else a)
