"""Convert time: keep float16-stored activations inside float16's range (|x| <= 65504) by exact power-of-two scales.

fusion_conv.py stores big conv outputs as float16. Some decoders' activations do not fit (SDXL's VAE reaches
~1e5; diffusers runs it in float32 for that reason, and sdxl-vae-fp16-fix retrained it). Here the model, converted
with float32 storage, is run on calibration inputs; every FusedConv output's max |x| is recorded, and a tensor
whose max exceeds float16's range divided by HEADROOM is stored as x * 2^-k instead, with k chosen so it fits with
that headroom. The scale is folded into the weights, so the kernels never see it and the result is exact up to
float16 rounding (a power of two changes no mantissa):
  - the conv producing x gets W * 2^-k and B * 2^-k; a conv adding x as its residual must produce the same scale,
    so tensors tied by residual adds share one scale (the residual stream of a decoder stage);
  - a conv reading x straight (no GroupNorm) gets W * 2^k; a GroupNorm reading x is invariant to the scale but
    for its epsilon, which becomes eps * 4^-k;
  - a recomputed input (fusion_conv.recompute_large) is float32 rows and keeps scale 1; its conv reads the scaled
    tensor like any reader.
A tensor that cannot be scaled (tied to a value no conv produces) is stored as float32. A GroupNorm statistics
pass that keeps float16 rows of a recomputed tensor beyond the range stops keeping them. At run time FusedConv
checks what it stores as float16 and raises if a value still overflowed (inputs far outside the calibration).
"""
from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

FP16_MAX = 65504.0
HEADROOM = 64.0   # calibrated max * HEADROOM must fit: inputs beyond the calibration have 6 binades to spare


def _needed_exponent(peak: float) -> int:
    return max(0, math.ceil(math.log2(peak * HEADROOM / FP16_MAX))) if peak > 0 else 0


class _Groups:
    """Union-find over value names: tensors that must share one scale."""

    def __init__(self):
        self.parent = {}

    def find(self, a):
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def tie(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def calibrate(graph, consts, feeds_list, write, progress=None) -> dict:
    """Scale the float16-stored FusedConv outputs of `graph` that would overflow (see the module docstring).
    write(graph, directory) writes the model (converter._write); feeds_list: calibration inputs.
    Returns {value name: exponent k} for the tensors scaled by 2^-k, and {name: "float32"} for those not scalable."""
    convs = [n for n in graph.nodes if n.op == "FusedConv"]
    stored16 = {n.outputs[0] for n in convs if n.attrs.get("out_dtype") == "float16"}
    heads = [n for n in graph.nodes if n.op == "FusedGroupNormScale" and n.attrs.get("keep_bytes")]
    if not stored16 and not heads:
        return {}
    peaks, head_peaks = _run(graph, convs, heads, feeds_list, write)
    if progress:
        progress("float16 storage: calibrated max |x| " + ", ".join(f"{peaks[v]:.3g}" for v in sorted(stored16)))
    for stats in heads:
        if head_peaks.get(stats.name, 0.0) * HEADROOM > FP16_MAX:   # keep no float16 rows of that tensor
            _drop_head(graph, stats)

    producers = {n.outputs[0]: n for n in convs}
    groups = _Groups()
    for n in convs:
        groups.find(n.outputs[0])
        if len(n.inputs) > 4 and n.inputs[4]:
            groups.tie(n.outputs[0], n.inputs[4])
    need, fixed = {}, set()   # group -> exponent; groups holding a value no conv produces (scale 1)
    for v in list(groups.parent):
        g = groups.find(v)
        if v not in producers:
            fixed.add(g)
        if v in stored16:
            need[g] = max(need.get(g, 0), _needed_exponent(peaks.get(v, 0.0)))
    result, exponent = {}, {}
    for v in groups.parent:
        g = groups.find(v)
        if need.get(g, 0) == 0:
            continue
        if g in fixed:   # cannot scale: store as float32 what would overflow float16
            if v in stored16:
                producers[v].attrs["out_dtype"] = "float32"
                result[v] = "float32"
            continue
        exponent[v] = need[g]
        if v in stored16:
            result[v] = need[g]
    if exponent:
        _fold(graph, consts, convs, exponent)
    dtype = {n.outputs[0]: n.attrs.get("out_dtype", "float32") for n in convs}
    for n in convs:   # a conv writing over its own input needs the input's dtype
        if n.attrs.get("inplace") == "input" and dtype.get(n.inputs[0]) != dtype[n.outputs[0]]:
            n.attrs.pop("inplace")
    return result


def _run(graph, convs, heads, feeds_list, write):
    """Max |x| of every FusedConv output (stored as float32 for the run) and of every kept head's rows."""
    from .runtime.executor import Session
    from .runtime.ops import fused_conv
    saved = {id(n): n.attrs.get("out_dtype") for n in convs}
    for n in convs:
        n.attrs["out_dtype"] = "float32"
    by_output = {n.outputs[0]: n for n in convs}
    head_of = {n.outputs[1]: n for n in heads}
    peaks, head_peaks = {}, {}
    tmp = Path(tempfile.mkdtemp(prefix=".onnxstream-calibration-"))
    try:
        write(graph, tmp / "model")
        session = Session(tmp / "model")

        def observe(node, values):
            for name in node.outputs:
                v = values.get(name)
                if name in by_output and v is not None and v.size:
                    peak = float(max(v.max(), -v.min()))
                    peaks[name] = max(peaks.get(name, 0.0), peak if peak == peak else float("inf"))  # NaN: inf
                elif name in head_of and v is not None:
                    for chunk in v:
                        if chunk is not None and chunk[2].size:
                            x = chunk[2]
                            peak = float(max(x.max(), -x.min()))
                            head_peaks[head_of[name].name] = max(head_peaks.get(head_of[name].name, 0.0), peak)

        session.observer = observe
        fused_conv.CALIBRATING = True
        for feeds in feeds_list:
            session.run(feeds)
        del session
    finally:
        fused_conv.CALIBRATING = False
        shutil.rmtree(tmp, ignore_errors=True)
        for n in convs:
            if saved[id(n)] is None:
                n.attrs.pop("out_dtype", None)
            else:
                n.attrs["out_dtype"] = saved[id(n)]
    return peaks, head_peaks


def _drop_head(graph, stats):
    head = stats.outputs.pop()
    stats.attrs.pop("keep_bytes", None)
    for n in graph.nodes:
        n.inputs = ["" if name == head else name for name in n.inputs]


def _fold(graph, consts, convs, exponent):
    """Fold scale 2^-exponent[v] of each tensor v into the weights that produce and read it (module docstring)."""
    factors = {}   # weight name -> factor applied (a weight read by several nodes must get the same one)

    def scale(name, factor):
        if not name or factor == 1.0:
            return
        if name in factors:
            if factors[name] != factor:
                raise ValueError(f"float16 range: weight {name} would need two different scales")
            return
        factors[name] = factor
        consts[name] = (consts[name] * np.float32(factor)).astype(consts[name].dtype)
        if name in graph.constants:
            graph.constants[name] = consts[name]

    s = lambda v: 2.0 ** -exponent.get(v, 0)  # noqa: E731  stored = s * true
    for n in convs:
        src = n.attrs.get("src")
        x = n.inputs[0]
        if src:   # the inner conv reads x (normalized by src_norm, or straight) and yields scale-1 rows
            if not n.inputs[7]:
                scale(n.inputs[5], 1 / s(x))
            s_in = 1.0
        else:
            s_in = 1.0 if n.inputs[3] else s(x)
        out = s(n.outputs[0])
        scale(n.inputs[1], out / s_in)
        scale(n.inputs[2], out)
    for n in graph.nodes:
        if n.op == "FusedGroupNormScale" and not n.attrs.get("src") and exponent.get(n.inputs[0]):
            n.attrs["epsilon"] = float(n.attrs.get("epsilon", 1e-5)) * s(n.inputs[0]) ** 2
        elif n.op == "FusedGroupNormScale" and n.attrs.get("src") and exponent.get(n.inputs[0]) and not n.inputs[5]:
            scale(n.inputs[3], 1 / s(n.inputs[0]))
