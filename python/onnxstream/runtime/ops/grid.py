"""Spatial-transformer ops: AffineGrid makes a sampling grid from affine matrices, GridSample reads an image at a
grid's points (the C++ kernel, cpp/ops/grid_sample.cc)."""
from __future__ import annotations

import numpy as np

from ... import _core
from .common import as_ints, contiguous

_MODES = {"bilinear": "linear", "bicubic": "cubic"}  # opset 16 names -> opset 20 names


def GridSample(X, grid, align_corners=0, mode="linear", padding_mode="zeros"):
    if X.dtype != np.float32 or grid.dtype != np.float32:
        raise NotImplementedError(f"GridSample: dtypes {X.dtype}, {grid.dtype} are not supported (float32 only)")
    y = np.empty(X.shape[:2] + grid.shape[1:-1], np.float32)
    if y.size:
        _core.grid_sample(contiguous(X), contiguous(grid), _MODES.get(mode, mode), padding_mode, bool(align_corners),
                          y)
    return y


def AffineGrid(theta, size, align_corners=0):
    """theta [N, 2, 3] (2-D) or [N, 3, 4] (3-D) applied to the normalized coordinates of every output point:
    [N, H, W, 2] or [N, D, H, W, 3], coordinates innermost axis first (x, y, z) as GridSample reads them."""
    dims = as_ints(size)[2:]  # spatial sizes, outermost first

    def axis(n):  # normalized coordinates of n points along one axis
        if align_corners:
            return np.linspace(-1, 1, n) if n > 1 else np.zeros(n)
        return (np.arange(n) * 2 + 1) / n - 1

    coords = np.meshgrid(*[axis(n) for n in dims], indexing="ij")  # outermost first
    base = np.stack(list(coords)[::-1] + [np.ones(dims)], axis=-1)    # [*dims, k + 1]: x, y(, z), 1
    grid = base.reshape(-1, len(dims) + 1) @ np.swapaxes(theta.astype(np.float64), 1, 2)  # [N, points, k]
    return grid.reshape((theta.shape[0], *dims, len(dims))).astype(theta.dtype)
