"""Loss ops (what training graphs exported for evaluation end with): NegativeLogLikelihoodLoss and
SoftmaxCrossEntropyLoss over [N, C, d1, ...] scores and [N, d1, ...] class labels. Small: numpy."""
from __future__ import annotations

import numpy as np

from .reduce import LogSoftmax


def NegativeLogLikelihoodLoss(input, target, weight=None, ignore_index=None, reduction="mean"):
    if input.ndim < 2:
        raise ValueError(f"NegativeLogLikelihoodLoss: input must be [N, C, ...], got shape {input.shape}")
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"NegativeLogLikelihoodLoss: unknown reduction '{reduction}'")
    c = input.shape[1]
    target = np.asarray(target, np.int64)
    ignored = target == ignore_index if ignore_index is not None else np.zeros(target.shape, bool)
    label = np.where(ignored, 0, target)
    if label.size and (label.min() < 0 or label.max() >= c):
        raise IndexError(f"NegativeLogLikelihoodLoss: a target is outside [0, {c})")
    picked = np.take_along_axis(input, label[:, None], axis=1)[:, 0]  # input[n, target[n, d], d]
    w = np.ones(c, input.dtype) if weight is None else weight
    per = np.where(ignored, 0, w[label]).astype(input.dtype)  # each element's weight, 0 where ignored
    loss = -picked * per
    if reduction == "none":
        return loss.astype(input.dtype)
    total = loss.sum(dtype=np.float64)
    if reduction == "mean":
        total /= per.sum(dtype=np.float64)
    return np.array(total, input.dtype)


def SoftmaxCrossEntropyLoss(scores, labels, weights=None, ignore_index=None, reduction="mean", _num_results=1):
    """(loss, log_prob): NLL of LogSoftmax over the class axis."""
    log_prob = LogSoftmax(scores, axis=1)
    loss = NegativeLogLikelihoodLoss(log_prob, labels, weights, ignore_index, reduction)
    return (loss, log_prob) if _num_results > 1 else loss
