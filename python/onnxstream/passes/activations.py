"""Activation passes:
- fuse_hard_swish: x * Clip(x + 3, 0, 6) / 6 (Paddle's export of hardswish; the division may be a multiplication
  by 1/6) => HardSwish(x);
- fuse_activation: Conv (plain, by constant weights) read only by Relu, Clip (constant bounds), LeakyRelu,
  HardSigmoid, HardSwish, Sigmoid, FusedSiLU or a per-channel PRelu => the Conv with that activation in its
  epilogue (runtime/ops/conv.py: `activation` attributes, the PRelu slope as a 4th input)."""
from __future__ import annotations

import numpy as np

from ..graph import Node
from .graph import ConvertGraph, Uses, near, other_input


def _clip_bounds(node: Node, uses: Uses):
    """(min, max) of a Clip whose bounds are constants (inputs from opset 11, attributes before), else None."""
    if len(node.inputs) > 1 or "min" not in node.attrs and "max" not in node.attrs:
        lo = uses.scalar(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else -np.inf
        hi = uses.scalar(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else np.inf
        missing = (len(node.inputs) > 1 and node.inputs[1] and lo is None) or \
                  (len(node.inputs) > 2 and node.inputs[2] and hi is None)
        return None if missing else (lo, hi)
    return float(node.attrs.get("min", -np.inf)), float(node.attrs.get("max", np.inf))


def fuse_hard_swish(g: ConvertGraph) -> ConvertGraph:
    uses = Uses(g)
    replaced, removed = {}, set()
    for add in g.nodes:
        if add.op != "Add" or len(add.inputs) != 2:
            continue
        x = next((n for n in add.inputs if near(uses.scalar(other_input(add, n)), 3.0)), None)
        clip = uses.sole_consumer(add.outputs[0])
        if x is None or x in g.consts or clip is None or clip.op != "Clip" or clip.inputs[0] != add.outputs[0]:
            continue
        bounds = _clip_bounds(clip, uses)
        mul = uses.sole_consumer(clip.outputs[0])
        if bounds is None or not (near(bounds[0], 0.0) and near(bounds[1], 6.0)) or mul is None or \
                mul.op != "Mul" or other_input(mul, clip.outputs[0]) != x:
            continue
        div = uses.sole_consumer(mul.outputs[0])
        if div is None or not ((div.op == "Div" and div.inputs[0] == mul.outputs[0] and
                                near(uses.scalar(div.inputs[1]), 6.0)) or
                               (div.op == "Mul" and near(uses.scalar(other_input(div, mul.outputs[0])), 1 / 6))):
            continue
        if g.shapes.get(x, (None, None))[1] != "float32":
            continue
        removed.update((id(add), id(clip), id(mul)))
        replaced[id(div)] = Node("HardSwish", div.name + "/hard_swish", [x], list(div.outputs))
    return g.with_nodes([replaced.get(id(n), n) for n in g.nodes if id(n) not in removed])


def _epilogue(act: Node, conv: Node, uses: Uses):
    """The activation attributes (and PRelu slope name) that compute `act` in conv's epilogue, or None."""
    if act.op == "Relu":
        return {"activation": "relu"}, ""
    if act.op == "Clip":
        bounds = _clip_bounds(act, uses)
        return (None if bounds is None else
                ({"activation": "clip", "activation_alpha": float(bounds[0]), "activation_beta": float(bounds[1])}, ""))
    if act.op == "LeakyRelu":
        return {"activation": "leaky_relu", "activation_alpha": float(act.attrs.get("alpha", 0.01))}, ""
    if act.op == "HardSigmoid":
        return {"activation": "hard_sigmoid", "activation_alpha": float(act.attrs.get("alpha", 0.2)),
                "activation_beta": float(act.attrs.get("beta", 0.5))}, ""
    if act.op in ("HardSwish", "Sigmoid", "FusedSiLU"):
        return {"activation": {"HardSwish": "hard_swish", "Sigmoid": "sigmoid", "FusedSiLU": "silu"}[act.op]}, ""
    if act.op == "PRelu" and act.inputs[0] == conv.outputs[0]:
        slope, y = uses.const(act.inputs[1]), uses.g.shape(conv.outputs[0])
        if slope is None or y is None or slope.ndim > len(y) or len(y) < 2:
            return None
        # PRelu broadcasts its slope against [N, C, ...]: per channel when only axis 1 may exceed 1.
        padded = (1,) * (len(y) - slope.ndim) + slope.shape
        if any(d != 1 for i, d in enumerate(padded) if i != 1) or padded[1] not in (1, y[1]):
            return None
        name = f"{act.inputs[1]}/per_channel"
        uses.g.consts[name] = np.ascontiguousarray(np.broadcast_to(slope.reshape(-1), (y[1],)).astype(np.float32))
        return {"activation": "prelu"}, name
    return None


def fuse_activation(g: ConvertGraph) -> ConvertGraph:
    uses = Uses(g)
    replaced, removed = {}, set()
    for conv in g.nodes:
        if conv.op != "Conv" or conv.attrs.get("activation") or len(conv.inputs) < 2 or \
                conv.inputs[1] not in g.consts:
            continue
        act = uses.sole_consumer(conv.outputs[0])
        if act is None or act.inputs[0] != conv.outputs[0] or g.shapes.get(conv.outputs[0], (0, ""))[1] != "float32":
            continue
        found = _epilogue(act, conv, uses)
        if found is None:
            continue
        attrs, slope = found
        inputs = (conv.inputs + ["", ""])[:3] + ([slope] if slope else [])
        replaced[id(act)] = Node("Conv", conv.name, inputs, list(act.outputs), {**conv.attrs, **attrs})
        removed.add(id(conv))
    return g.with_nodes([replaced.get(id(n), n) for n in g.nodes if id(n) not in removed])
