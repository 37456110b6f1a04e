"""Dither a full-colour picture to a panel's few colours: Floyd-Steinberg in the C++ core (cpp/ops/dither.cc).

Working spaces (`onnxstream frame --dither`):
  oklab   (default) error diffusion and nearest colour both in OKLab, a perceptual space: a dark blue is not
          "near" black just because their RGB values are close, and colours keep their hue.
  linear  both in linear light: a dithered area then averages, seen from a distance, to the light of the colour
          it replaces (the most faithful tones), but pictures look greyer.
  rgb     both on sRGB values: the textbook algorithm, what Pillow's quantize (and so inky's set_image) does.
For oklab and linear the picture's black and white are first mapped onto the panel's black and white, so a
panel whose white is a light grey (Spectra 6 measured) shows the picture's highlights as its white instead of
clipping them and smearing the excess over the neighbours. One working space throughout, so the nearest
colour is also the one that leaves the least error: diffusion stays stable (no blotches).
"""
from __future__ import annotations

import numpy as np

from .. import _core

SPACES = ("oklab", "linear", "rgb")
BLACK, WHITE = 0, 1  # palette indices of every panel (panels.py)


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 1] -> linear light (IEC 61966-2-1), float64."""
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def oklab(linear: np.ndarray) -> np.ndarray:
    """Linear RGB [..., 3] -> OKLab float32, computed by the kernel's own conversion."""
    linear = np.ascontiguousarray(linear, np.float32)
    out = np.empty_like(linear)
    _core.linear_rgb_to_oklab(linear, out)
    return out


def kernel_inputs(palette: np.ndarray, space: str = "oklab"):
    """-> (lut [3, 256] float32, oklab flag, palette [K, 3] float32 in the working space)."""
    palette = np.asarray(palette, np.uint8)
    if space not in SPACES:
        raise ValueError(f"unknown dithering space {space!r}; use one of {', '.join(SPACES)}")
    if space == "rgb":
        return np.tile(np.arange(256, dtype=np.float32), (3, 1)), False, palette.astype(np.float32)
    linear = srgb_to_linear(palette / 255.0)                                        # [K, 3]
    black, white = linear[BLACK], linear[WHITE]
    ramp = srgb_to_linear(np.arange(256) / 255.0)                                   # [256]
    lut = np.ascontiguousarray(black[:, None] + ramp[None, :] * (white - black)[:, None], np.float32)  # [3, 256]
    if space == "linear":
        return lut, False, linear.astype(np.float32)
    return lut, True, oklab(linear)


def dither(pixels: np.ndarray, palette: np.ndarray, space: str = "oklab") -> np.ndarray:
    """uint8 [H, W, 3] picture, uint8 [K, 3] palette (K <= 16) -> uint8 [H, W] palette indices."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"dither needs an H x W x 3 picture, got shape {pixels.shape}")
    lut, is_oklab, values = kernel_inputs(palette, space)
    out = np.empty(pixels.shape[:2], np.uint8)
    _core.dither_floyd_steinberg(pixels, lut, is_oklab, values, out)
    return out


def render(indices: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Palette indices -> uint8 [H, W, 3] picture in those colours (e.g. the measured ones: a preview)."""
    return np.asarray(palette, np.uint8)[indices]
