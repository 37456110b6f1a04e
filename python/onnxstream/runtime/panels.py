"""Packed weights as the runtime hands them to ops: whole (Panels) or read column block by column block
(PanelBlocks). The layout itself is defined once, in C++ (_core.pack_gemm_b); graph.py names it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Panels:
    """A constant weight packed for the GEMM kernels: groups x ceil(n/16) panels [k][16], float32 or float16;
    or int8: groups x a qc8w blob (panels, then scales)."""
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

    def blocks(self):
        """(n0, n1, panels of columns [n0, n1)): here one block."""
        yield 0, self.n, self.data


@dataclass
class PanelBlocks:
    """A constant weight packed as column blocks, read from disk one block at a time by fetch(i) -> 1-D panels."""
    shape: tuple
    k: int
    n: int
    dtype: np.dtype
    cols_per_block: int
    fetch: Callable[[int], np.ndarray]

    @property
    def ndim(self):
        return len(self.shape)

    def blocks(self):
        """(n0, n1, panels of columns [n0, n1)) for each block in order; the caller drops each before the next."""
        for i, n0 in enumerate(range(0, self.n, self.cols_per_block)):
            yield n0, min(self.n, n0 + self.cols_per_block), self.fetch(i)


PACKED = (Panels, PanelBlocks)
