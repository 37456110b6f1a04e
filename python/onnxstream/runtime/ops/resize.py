"""Resize: separable, one axis at a time. numpy computes each axis's small (index, weight) tap table from the
coordinate mapping (following the ONNX reference), the C++ core applies it with `_core.resample_axis`."""
from __future__ import annotations

import math

import numpy as np

from ... import _core
from .common import as_ints, axis_index, contiguous

_NEAREST = {
    # ratio in (0, 1] is x's distance above the floor; "integer" positions arrive as ratio 1 (take the right tap).
    "round_prefer_floor": lambda r: r > 0.5,
    "round_prefer_ceil": lambda r: r >= 0.5,
    "floor": lambda r: r >= 1.0,
    "ceil": lambda r: r > 0.0,
}


def _source_coords(mode, out_len, in_len, scale, roi):
    """Input coordinate of every output index, and (tf_crop_and_resize only) which ones fall outside the input."""
    y = np.arange(out_len, dtype=np.float64)
    out_width = scale * in_len
    outside = None
    if mode == "align_corners":
        x = np.zeros(out_len) if out_width == 1 else y * (in_len - 1) / (out_width - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "tf_crop_and_resize":
        if out_width == 1:
            x = np.full(out_len, (roi[1] - roi[0]) * (in_len - 1) / 2)
        else:
            x = y * (roi[1] - roi[0]) * (in_len - 1) / (out_width - 1)
        x = x + roi[0] * (in_len - 1)
        outside = (x < 0) | (x > in_len - 1)
    elif mode == "pytorch_half_pixel":
        x = np.full(out_len, -0.5) if out_width == 1 else (y + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "tf_half_pixel_for_nn":  # opsets 11-12
        x = (y + 0.5) / scale
    elif mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / out_width)
        x = offset + (y + 0.5) / scale - 0.5
    else:
        raise ValueError(f"Resize: unknown coordinate_transformation_mode '{mode}'")
    return x, outside


def _kernel(mode, ratios, scale, nearest_mode, cubic_a, antialias):
    """Weights [out, taps] for each output's ratio (its distance above the left neighbour, in (0, 1])."""
    r = ratios[:, None]
    if mode == "nearest":
        if nearest_mode not in _NEAREST:
            raise ValueError(f"Resize: unknown nearest_mode '{nearest_mode}'")
        right = _NEAREST[nearest_mode](ratios).astype(np.float64)
        return np.stack([1 - right, right], axis=1)
    if mode == "linear":
        if antialias and scale < 1:
            start = int(np.floor(-1 / scale) + 1)
            args = (np.arange(start, 2 - start) - r) * scale
            w = np.clip(1 - np.abs(args), 0, 1)
            return w / w.sum(axis=1, keepdims=True)
        return np.concatenate([1 - r, r], axis=1)
    if mode == "cubic":
        a = cubic_a
        if antialias and scale < 1:
            start = int(np.floor(-2 / scale) + 1)
            t = np.abs(scale * (np.arange(start, 2 - start) - r))
            w = np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                         np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))
            return w / w.sum(axis=1, keepdims=True)
        s = 1 - r
        return np.concatenate([((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                               ((a + 2) * r - (a + 3)) * r * r + 1,
                               ((a + 2) * s - (a + 3)) * s * s + 1,
                               ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a], axis=1)
    raise ValueError(f"Resize: unknown mode '{mode}'")


def _taps(in_len, out_len, scale, roi, mode, coord_mode, nearest_mode, cubic_a, antialias, exclude_outside):
    """(index [out, taps] int64, weights [out, taps] float32, outside mask or None) for one axis."""
    x, outside = _source_coords(coord_mode, out_len, in_len, scale, roi)
    floor = np.floor(x)
    ratios = np.where(x == floor, 1.0, x - floor)
    w = _kernel(mode, ratios, scale, nearest_mode, cubic_a, antialias)
    n = w.shape[1]
    # The n input indices nearest x (ties to the smaller index), as the reference's edge-padded neighbour search.
    pad = (n + 1) // 2
    xp = x + pad
    p = np.floor(xp).astype(np.int64)
    frac = xp - p
    if n % 2 == 0:
        start = p + np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        start = p + np.where(frac <= 0.5, -((n - 1) // 2), -((n - 1) // 2) + 1)
    index = start[:, None] + np.arange(n)[None, :] - pad
    if exclude_outside:
        w = np.where((index < 0) | (index >= in_len), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    index = np.clip(index, 0, in_len - 1)
    if mode == "nearest":  # keep only the chosen tap: a plain gather
        pick = np.argmax(w, axis=1)
        index = index[np.arange(out_len), pick][:, None]
        w = np.ones((out_len, 1))
    return contiguous(index, np.int64), contiguous(w, np.float32), outside


def Resize(X, roi=None, scales=None, sizes=None, antialias=0, axes=None, coordinate_transformation_mode="half_pixel",
           cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0, keep_aspect_ratio_policy="stretch",
           mode="nearest", nearest_mode="round_prefer_floor", _opset=13):
    if _opset < 11:  # Resize-10: (X, scales), Upsample's coordinates
        return Upsample(X, roi, mode)
    if X.dtype != np.float32:
        raise NotImplementedError(f"Resize: dtype {X.dtype} is not supported (float32 only)")
    rank = X.ndim
    axes = [axis_index(a, rank) for a in as_ints(axes)] or list(range(rank))
    scales = None if scales is None or np.asarray(scales).size == 0 else [float(s) for s in np.asarray(scales).ravel()]
    sizes = as_ints(sizes) or None
    if (scales is None) == (sizes is None):
        raise ValueError("Resize: exactly one of scales and sizes must be given")
    given = scales if scales is not None else sizes
    if len(given) != len(axes):
        raise ValueError(f"Resize: {len(given)} scales/sizes for {len(axes)} axes")
    in_shape = [X.shape[a] for a in axes]
    if sizes is not None:
        scale = [o / i for o, i in zip(sizes, in_shape)]
        out = list(sizes)
        if keep_aspect_ratio_policy != "stretch":
            if keep_aspect_ratio_policy not in ("not_larger", "not_smaller"):
                raise ValueError(f"Resize: unknown keep_aspect_ratio_policy '{keep_aspect_ratio_policy}'")
            s = min(scale) if keep_aspect_ratio_policy == "not_larger" else max(scale)
            scale = [s] * len(axes)
            out = [int(s * i + 0.5) for i in in_shape]
    else:
        scale = scales
        out = [int(s * i) for s, i in zip(scales, in_shape)]
    roi = [float(v) for v in np.asarray(roi).ravel()] if roi is not None and np.asarray(roi).size else None
    if roi is not None and len(roi) != 2 * len(axes):
        raise ValueError(f"Resize: roi has {len(roi)} values, expected {2 * len(axes)}")
    if coordinate_transformation_mode == "tf_crop_and_resize" and roi is None:
        raise ValueError("Resize: tf_crop_and_resize needs a roi input")
    y = contiguous(X)
    for k, axis in enumerate(axes):
        axis_roi = None if roi is None else (roi[k], roi[len(axes) + k])
        identity_roi = axis_roi is None or (math.isclose(axis_roi[0], 0.0) and math.isclose(axis_roi[1], 1.0))
        if math.isclose(scale[k], 1.0) and out[k] == y.shape[axis] and identity_roi:
            continue
        index, weights, outside = _taps(y.shape[axis], out[k], scale[k], axis_roi, mode,
                                        coordinate_transformation_mode, nearest_mode, cubic_coeff_a, antialias,
                                        exclude_outside)
        shape = list(y.shape)
        shape[axis] = out[k]
        resized = np.empty(shape, np.float32)
        if resized.size:
            _core.resample_axis(y, axis, index, weights, resized)
        if outside is not None and outside.any():
            # TF CropAndResize: positions outside the input take extrapolation_value (an assignment, no arithmetic).
            where = [slice(None)] * resized.ndim
            where[axis] = np.nonzero(outside)[0]
            resized[tuple(where)] = extrapolation_value
        y = resized
    return y


def Upsample(X, scales, mode="nearest"):
    """Opsets 7-9 (and Resize-10): output = floor(input * scale), source = output / scale; nearest rounds down
    where the axis grows and up where it shrinks, as onnxruntime does. scales is an attribute in opsets 7-8."""
    mode = {"bilinear": "linear"}.get(mode, mode)
    scales = [float(s) for s in np.asarray(scales).ravel()]
    y = X
    for shrinking in (False, True):  # separable: the growing axes, then the shrinking ones
        part = [s if (s < 1) == shrinking else 1.0 for s in scales]
        if any(s != 1.0 for s in part):
            y = Resize(y, scales=np.array(part, np.float32), mode=mode, coordinate_transformation_mode="asymmetric",
                       nearest_mode="ceil" if shrinking else "floor")
    return y
