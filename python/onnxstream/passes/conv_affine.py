"""Per-channel affine maps folded into the conv before them.

fold_batchnorm: Conv or ConvTranspose by constant weights, read only by an inference BatchNormalization with
constant statistics => one conv with scaled weights and a shifted bias (what onnxruntime does at load):
    s = scale / sqrt(var + eps);  W' = W * s (per output channel);  B' = (B - mean) * s + bias
computed in float64 and stored as new constants (the originals may be shared).

fold_conv_add_mul: Conv by constant weights read only by an Add or a Mul of a constant that is one value per
output channel (shape [M, 1, 1], [1, M, 1, 1], scalar...) => the bias (Add) or weights and bias (Mul) changed.
Exporters write a bias-free conv + Add when the framework's conv had no bias of its own (Keras, TF)."""
from __future__ import annotations

import numpy as np

from ..graph import Node
from .graph import ConvertGraph, Uses


def fold_batchnorm(g: ConvertGraph) -> ConvertGraph:
    uses = Uses(g)
    replaced, removed = {}, set()
    for bn in g.nodes:
        if bn.op != "BatchNormalization" or bn.attrs.get("training_mode", 0) or any(bn.outputs[1:]):
            continue
        conv = uses.producer.get(bn.inputs[0])
        if conv is None or conv.op not in ("Conv", "ConvTranspose") or id(conv) in removed or \
                uses.sole_consumer(conv.outputs[0]) is not bn or conv.attrs.get("activation"):
            continue
        stats = [uses.const(n) for n in bn.inputs[1:5]]
        w = uses.const(conv.inputs[1])
        b = uses.const(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
        if w is None or w.dtype != np.float32 or any(a is None for a in stats) or (len(conv.inputs) > 2 and
                                                                                     conv.inputs[2] and b is None):
            continue
        group = int(conv.attrs.get("group", 1))
        m = w.shape[0] if conv.op == "Conv" else w.shape[1] * group
        scale, bias, mean, var = (a.astype(np.float64).reshape(-1) for a in stats)
        if any(a.size != m for a in (scale, bias, mean, var)):
            continue
        s = scale / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        if conv.op == "Conv":
            w2 = w.astype(np.float64) * s.reshape((m,) + (1,) * (w.ndim - 1))
        else:  # [C_in, M/group, k...]: output channel gi * M/group + j sits at w[gi * C_in/group + c, j]
            mg, cg = w.shape[1], w.shape[0] // group
            w2 = w.astype(np.float64).reshape((group, cg, mg) + w.shape[2:]) * \
                s.reshape((group, 1, mg) + (1,) * (w.ndim - 2))
            w2 = w2.reshape(w.shape)
        b2 = ((b.astype(np.float64).reshape(-1) if b is not None else 0.0) - mean) * s + bias
        w_name, b_name = f"{conv.inputs[1]}/bn_folded/{bn.name}", f"{conv.inputs[1]}/bn_folded_bias/{bn.name}"
        g.consts[w_name], g.consts[b_name] = w2.astype(np.float32), b2.astype(np.float32)
        replaced[id(bn)] = Node(conv.op, conv.name, [conv.inputs[0], w_name, b_name], [bn.outputs[0]], dict(conv.attrs))
        removed.add(id(conv))
    return g.with_nodes([replaced.get(id(n), n) for n in g.nodes if id(n) not in removed])


def _per_channel(c: np.ndarray, m: int, rank: int):
    """c as one value per channel of a [N, m, ...] tensor of this rank, or None when it broadcasts otherwise."""
    if c is None or c.ndim > rank or not np.issubdtype(c.dtype, np.floating):
        return None
    padded = (1,) * (rank - c.ndim) + c.shape
    if any(d != 1 for i, d in enumerate(padded) if i != 1) or padded[1] not in (1, m):
        return None
    return np.broadcast_to(c.astype(np.float64).reshape(-1), (m,))


def fold_conv_add_mul(g: ConvertGraph) -> ConvertGraph:
    """Repeated until nothing folds: a conv may be followed by a Mul and then an Add."""
    while True:
        folded = _fold_conv_add_mul_once(g)
        if len(folded.nodes) == len(g.nodes):
            return folded
        g = folded


def _fold_conv_add_mul_once(g: ConvertGraph) -> ConvertGraph:
    uses = Uses(g)
    replaced, removed = {}, set()
    for conv in g.nodes:
        if conv.op != "Conv" or id(conv) in removed or conv.attrs.get("activation") or len(conv.inputs) < 2:
            continue
        w = uses.const(conv.inputs[1])
        b_name = conv.inputs[2] if len(conv.inputs) > 2 else ""
        b = uses.const(b_name)
        after = uses.sole_consumer(conv.outputs[0])
        y = g.shape(conv.outputs[0])
        if w is None or w.dtype != np.float32 or (b_name and b is None) or after is None or y is None or \
                after.op not in ("Add", "Mul") or len(after.inputs) != 2 or g.shape(after.outputs[0]) != y:
            continue
        other = after.inputs[1] if after.inputs[0] == conv.outputs[0] else after.inputs[0]
        c = _per_channel(uses.const(other), w.shape[0], len(y))
        if c is None:
            continue
        bias = b.astype(np.float64).reshape(-1) if b is not None else np.zeros(w.shape[0])
        w_name = conv.inputs[1]
        if after.op == "Add":
            bias = bias + c
        else:
            w_name = f"{conv.inputs[1]}/scaled/{after.name}"
            g.consts[w_name] = (w.astype(np.float64) * c.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
            bias = bias * c
        new_b = f"{conv.inputs[1]}/bias/{after.name}"
        g.consts[new_b] = bias.astype(np.float32)
        replaced[id(after)] = Node("Conv", conv.name, [conv.inputs[0], w_name, new_b], list(after.outputs),
                                   dict(conv.attrs))
        removed.add(id(conv))
    return g.with_nodes([replaced.get(id(n), n) for n in g.nodes if id(n) not in removed])
