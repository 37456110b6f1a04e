"""Control flow: If, Loop, Scan. Each subgraph attribute arrives as a function of the subgraph's inputs that returns
its outputs as a tuple (the executor runs the subgraph's nodes in a scope that sees the caller's values)."""
from __future__ import annotations

import numpy as np

from .common import axis_index, contiguous


def If(cond, then_branch, else_branch):
    if cond.size != 1:
        raise ValueError(f"If condition must hold one element, got shape {cond.shape}")
    return (then_branch if bool(cond.reshape(-1)[0]) else else_branch)()


def Loop(M, cond, *v_initial, body):
    """for i in range(M) while cond: (cond, *v, *scan) = body(i, cond, *v); returns (*v, *scan outputs stacked)."""
    trips = int(M.reshape(-1)[0]) if M is not None else None
    keep = bool(cond.reshape(-1)[0]) if cond is not None else True
    n_state = len(v_initial)
    n_scan = len(body.outputs) - 1 - n_state
    if n_scan < 0:
        raise ValueError(f"Loop body returns {len(body.outputs)} values for {n_state} loop-carried ones")
    state, scans = list(v_initial), [[] for _ in range(n_scan)]
    i = 0
    while keep and (trips is None or i < trips):
        out = body(np.array(i, np.int64), np.array(keep), *state)
        keep = bool(out[0].reshape(-1)[0])
        state = list(out[1:1 + n_state])
        for k, s in enumerate(out[1 + n_state:]):
            scans[k].append(s)
        del out
        i += 1
    return tuple(state) + tuple(_stack(s, info, 0) for s, info in zip(scans, body.outputs[1 + n_state:]))


def Scan(*inputs, body, num_scan_inputs, scan_input_axes=None, scan_input_directions=None, scan_output_axes=None,
         scan_output_directions=None, directions=None, _opset=None):
    """(*state, *scan) = body(*state, *slices of the scan inputs) along their axes; returns (*state, *stacked)."""
    if _opset is not None and _opset < 9:
        return _scan8(inputs, body, num_scan_inputs, directions)
    n_state = len(inputs) - num_scan_inputs
    xs = inputs[n_state:]
    in_axes = [axis_index(a, x.ndim) for a, x in zip(scan_input_axes or [0] * len(xs), xs)]
    in_reverse = scan_input_directions or [0] * len(xs)
    lengths = {x.shape[a] for x, a in zip(xs, in_axes)}
    if len(lengths) != 1:
        raise ValueError(f"Scan inputs have different lengths {sorted(lengths)} along their scan axes")
    steps = lengths.pop()
    n_scan = len(body.outputs) - n_state
    out_axes = scan_output_axes or [0] * n_scan
    out_reverse = scan_output_directions or [0] * n_scan
    state, scans = list(inputs[:n_state]), [[] for _ in range(n_scan)]
    for t in range(steps):
        slices = [_take(x, a, steps - 1 - t if r else t) for x, a, r in zip(xs, in_axes, in_reverse)]
        out = body(*state, *slices)
        state = list(out[:n_state])
        for k, s in enumerate(out[n_state:]):
            scans[k].append(s)
        del out, slices
    stacked = []
    for s, info, axis, reverse in zip(scans, body.outputs[n_state:], out_axes, out_reverse):
        stacked.append(_stack(s[::-1] if reverse else s, info, axis))
    return tuple(state) + tuple(stacked)


def _scan8(inputs, body, num_scan_inputs, directions):
    """Scan of opset 8: a leading batch axis on every input and output (scan inputs [batch, steps, ...]) and an
    optional first input of per-batch lengths; each batch entry is scanned on its own, outputs past its length 0."""
    lens, inputs = inputs[0], inputs[1:]
    n_state = len(inputs) - num_scan_inputs
    batch = inputs[0].shape[0]
    steps = inputs[n_state].shape[1] if num_scan_inputs else 0
    results = []
    for b in range(batch):
        n = steps if lens is None else int(lens.reshape(-1)[b])
        results.append(Scan(*[x[b] for x in inputs[:n_state]], *[x[b, :n] for x in inputs[n_state:]], body=body,
                            num_scan_inputs=num_scan_inputs, scan_input_directions=directions))
    outs = []
    for k in range(len(body.outputs)):
        parts = [r[k] for r in results]
        if k >= n_state:  # scan outputs: pad the shorter sequences to the batch's length
            parts = [np.concatenate([p, np.zeros((steps - p.shape[0],) + p.shape[1:], p.dtype)]) for p in parts]
        outs.append(np.stack(parts))
    return tuple(outs)


def _take(x: np.ndarray, axis: int, i: int) -> np.ndarray:
    return contiguous(x[(slice(None),) * axis + (i,)])


def _stack(values: list, info, axis: int) -> np.ndarray:
    """The per-iteration values stacked along a new axis; with no iteration, an empty tensor of the subgraph
    output's declared type (its unknown dimensions taken as 0)."""
    if values:
        return np.stack(values, axis=axis_index(axis, values[0].ndim + 1))
    shape = [d or 0 for d in (info.shape or [])]
    shape.insert(axis_index(axis, len(shape) + 1), 0)
    return np.zeros(shape, np.dtype(info.dtype or np.float32))
