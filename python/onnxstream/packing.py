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
    """Weight name -> (how, attrs) for weights read only as the constant B of MatMul/Gemm or the W of Conv, all
    with the same meaning; a weight read any other way keeps the plain layout."""
    uses: dict[str, set] = {}
    for node in nodes:
        for i, name in enumerate(node.inputs):
            if not name:
                continue
            if node.op == "Conv" and i == 1:
                use = ("conv", int(node.attrs.get("group", 1)))
            elif node.op == "MatMul" and i == 1:
                use = ("matmul", 0)
            elif node.op == "Gemm" and i == 1:
                use = ("matmul", int(node.attrs.get("transB", 0)))
            else:
                use = None
            uses.setdefault(name, set()).add(use)
    return {name: next(iter(u)) for name, u in uses.items() if len(u) == 1 and None not in u}


def pack(a: np.ndarray, how: tuple) -> tuple[np.ndarray, int, int] | None:
    """(panels, K, N) of a weight used as `how` (from packable), or None when it cannot be packed."""
    kind, arg = how
    if a.dtype not in (np.float32, np.float16):
        return None
    if kind == "conv":
        if a.ndim < 3 or a.shape[0] % arg:
            return None
        return pack_conv(a, arg), int(np.prod(a.shape[1:])), a.shape[0] // arg
    if a.ndim != 2:
        return None
    b = a.T if arg else a
    return pack_gemm_b(b), b.shape[0], b.shape[1]
