"""Object-detection ops: NonMaxSuppression (greedy, one vectorized IoU row per kept box) and RoiAlign (bilinear
samples per region of interest, vectorized over the region's samples and the channels)."""
from __future__ import annotations

import numpy as np


def _corners(boxes: np.ndarray, center_point_box: int) -> np.ndarray:
    """[n, 4] boxes -> [n, 4] (y_min, x_min, y_max, x_max)."""
    b = boxes.astype(np.float64)
    if center_point_box:  # (x_centre, y_centre, width, height)
        x, y, w, h = b.T
        return np.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=1)
    y1, x1, y2, x2 = b.T  # corners in either order
    return np.stack([np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)], axis=1)


def _suppressed(box: np.ndarray, others: np.ndarray, threshold: float) -> np.ndarray:
    """Which of `others` overlap `box` by an IoU above the threshold (degenerate boxes never do)."""
    ih = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    iw = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = np.where((ih > 0) & (iw > 0), ih * iw, 0.0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    valid = (inter > 0) & (area > 0) & (areas > 0) & (union > 0)
    return valid & (inter > threshold * np.where(valid, union, 1.0))


def NonMaxSuppression(boxes, scores, max_output_boxes_per_class=None, iou_threshold=None, score_threshold=None,
                      center_point_box=0):
    """[selected, 3] int64 rows (batch, class, box): per batch and class, boxes by falling score (ties: lower
    index first), each kept unless it overlaps a kept one by more than iou_threshold."""
    limit = 0 if max_output_boxes_per_class is None or np.asarray(max_output_boxes_per_class).size == 0 \
        else max(int(np.asarray(max_output_boxes_per_class).reshape(-1)[0]), 0)
    iou = 0.0 if iou_threshold is None or np.asarray(iou_threshold).size == 0 \
        else float(np.asarray(iou_threshold).reshape(-1)[0])
    has_floor = score_threshold is not None and np.asarray(score_threshold).size > 0
    floor = float(np.asarray(score_threshold).reshape(-1)[0]) if has_floor else 0.0
    selected = []
    for b in range(boxes.shape[0]):
        corners = _corners(boxes[b], center_point_box)
        for c in range(scores.shape[1]):
            s = scores[b, c]
            candidates = np.nonzero(s > floor)[0] if has_floor else np.arange(s.shape[0])
            order = candidates[np.lexsort((candidates, -s[candidates].astype(np.float64)))]
            alive = np.ones(order.size, bool)
            kept = 0
            for i in range(order.size):
                if kept >= limit:
                    break
                if not alive[i]:
                    continue
                selected.append((b, c, order[i]))
                kept += 1
                rest = slice(i + 1, None)
                alive[rest] &= ~_suppressed(corners[order[i]], corners[order[rest]], iou)
    return np.array(selected, np.int64).reshape(-1, 3)


def RoiAlign(X, rois, batch_indices, coordinate_transformation_mode="half_pixel", mode="avg", output_height=1,
             output_width=1, sampling_ratio=0, spatial_scale=1.0):
    """[R, C, output_height, output_width]: each output bin averages (or maxes) a grid of bilinear samples of its
    region of X (regions in input coordinates times spatial_scale)."""
    if mode not in ("avg", "max"):
        raise ValueError(f"RoiAlign: unknown mode '{mode}'")
    n, c, height, width = X.shape
    ph_n, pw_n = int(output_height), int(output_width)
    half_pixel = coordinate_transformation_mode == "half_pixel"
    out = np.zeros((rois.shape[0], c, ph_n, pw_n), X.dtype)
    planes = X.reshape(n, c, height * width).astype(np.float64)
    for r, (roi, b) in enumerate(zip(rois.astype(np.float64), np.asarray(batch_indices, np.int64))):
        x0, y0, x1, y1 = roi * spatial_scale - (0.5 if half_pixel else 0.0)
        roi_w, roi_h = x1 - x0, y1 - y0
        if not half_pixel:  # malformed regions become 1 x 1
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / ph_n, roi_w / pw_n
        gh = int(sampling_ratio) if sampling_ratio > 0 else int(np.ceil(roi_h / ph_n))
        gw = int(sampling_ratio) if sampling_ratio > 0 else int(np.ceil(roi_w / pw_n))
        # Sample coordinates [ph, iy] and [pw, ix], then every (y, x) pair of a bin.
        ys = y0 + np.arange(ph_n)[:, None] * bin_h + (np.arange(gh)[None, :] + 0.5) * bin_h / gh
        xs = x0 + np.arange(pw_n)[:, None] * bin_w + (np.arange(gw)[None, :] + 0.5) * bin_w / gw
        y = np.broadcast_to(ys[:, None, :, None], (ph_n, pw_n, gh, gw))
        x = np.broadcast_to(xs[None, :, None, :], (ph_n, pw_n, gh, gw))
        outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
        y, x = np.maximum(y, 0), np.maximum(x, 0)
        y_lo, x_lo = y.astype(np.int64), x.astype(np.int64)
        y_edge, x_edge = y_lo >= height - 1, x_lo >= width - 1
        y_lo, x_lo = np.where(y_edge, height - 1, y_lo), np.where(x_edge, width - 1, x_lo)
        y, x = np.where(y_edge, y_lo, y), np.where(x_edge, x_lo, x)
        y_hi, x_hi = np.where(y_edge, y_lo, y_lo + 1), np.where(x_edge, x_lo, x_lo + 1)
        ly, lx = y - y_lo, x - x_lo
        pos = np.stack([y_lo * width + x_lo, y_lo * width + x_hi, y_hi * width + x_lo, y_hi * width + x_hi])
        w = np.stack([(1 - ly) * (1 - lx), (1 - ly) * lx, ly * (1 - lx), ly * lx])  # [4, ph, pw, gh, gw]
        w = np.where(outside, 0.0, w)
        pos = np.where(outside, 0, pos)
        taps = planes[b][:, pos] * w  # [C, 4, ph, pw, gh, gw]
        if mode == "avg":
            value = taps.sum(axis=(1, 4, 5)) / max(gh * gw, 1)
        else:  # ONNX's max: the largest weighted tap over the bin's samples
            value = taps.max(axis=1).max(axis=(3, 4)) if gh * gw else np.zeros((c, ph_n, pw_n))
        out[r] = value
    return out
