"""fuse_layer_norm: the layer norm that exporters before opset 17 (and Keras/TF, Paddle) spell out in nine nodes,
    d = x - ReduceMean(x);  y = d / Sqrt(ReduceMean(d^2) + eps)  [* scale]  [+ bias]
over trailing axes => one LayerNormalization (one pass over each row instead of nine, and nine fewer node
dispatches, which is most of a small model's time). d^2 may be Pow(d, 2) or Mul(d, d)."""
from __future__ import annotations

import numpy as np

from ..graph import Node
from .graph import ConvertGraph, Uses, near, other_input


def _trailing_axes(mean: Node, uses: Uses, rank: int) -> int | None:
    """The first axis of a keepdims ReduceMean over the trailing axes [a, ..., rank-1], else None."""
    if mean.op != "ReduceMean" or not mean.attrs.get("keepdims", 1):
        return None
    if len(mean.inputs) > 1 and mean.inputs[1]:   # opset 18: axes as an input
        axes = uses.const(mean.inputs[1])
        if axes is None:
            return None
        axes = axes.reshape(-1).tolist()
    else:
        axes = mean.attrs.get("axes")
    if not axes:
        return None
    axes = sorted(a + rank if a < 0 else a for a in axes)
    return axes[0] if axes == list(range(axes[0], rank)) else None


def _const_along(uses: Uses, name: str, norm_shape: tuple):
    """A constant that broadcasts onto the normalized axes alone (a scale or bias), as float32 of norm_shape."""
    c = uses.const(name)
    if c is None or c.dtype != np.float32 or c.ndim > len(norm_shape):
        return None
    try:
        return np.ascontiguousarray(np.broadcast_to(c, norm_shape))
    except ValueError:
        return None


def _absorb(uses: Uses, chain: list, op: str, norm_shape: tuple):
    """The constant of an `op` (Mul: the scale, Add: the bias) that alone reads the chain's last output and
    broadcasts along the normalized axes, appending the node to the chain; else None."""
    last = chain[-1]
    node = uses.sole_consumer(last.outputs[0])
    if node is None or node.op != op:
        return None
    c = _const_along(uses, other_input(node, last.outputs[0]), norm_shape)
    if c is not None:
        chain.append(node)
    return c


def fuse_layer_norm(g: ConvertGraph) -> ConvertGraph:
    uses = Uses(g)
    replaced, removed = {}, set()
    for sub in g.nodes:
        if sub.op != "Sub" or len(sub.inputs) != 2:
            continue
        x, mean_name = sub.inputs
        mean = uses.producer.get(mean_name)
        x_info = g.shapes.get(x, (None, None))
        dims = x_info[0]
        if mean is None or mean.inputs[0] != x or x_info[1] != "float32" or not dims:
            continue
        axis = _trailing_axes(mean, uses, len(dims))
        if axis is None or mean_name in g.outputs or len(uses.consumers.get(mean_name, [])) != 1:
            continue
        norm_shape = tuple(dims[axis:])
        if not all(isinstance(d, int) for d in norm_shape):
            continue
        d = sub.outputs[0]
        after = list({id(n): n for n, _ in uses.consumers.get(d, [])}.values())  # (Mul(d, d) reads d twice)
        if d in g.outputs or len(after) != 2:
            continue
        square = next((n for n in after if (n.op == "Pow" and n.inputs[0] == d and
                                              near(uses.scalar(n.inputs[1]), 2.0)) or
                       (n.op == "Mul" and n.inputs == [d, d])), None)
        div = next((n for n in after if n.op == "Div" and n.inputs[0] == d), None)
        if square is None or div is None:
            continue
        var = uses.sole_consumer(square.outputs[0])
        if var is None or _trailing_axes(var, uses, len(dims)) != axis or var.inputs[0] != square.outputs[0]:
            continue
        add = uses.sole_consumer(var.outputs[0])
        eps = uses.scalar(other_input(add, var.outputs[0])) if add is not None and add.op == "Add" else None
        sqrt = uses.sole_consumer(add.outputs[0]) if eps is not None else None
        if sqrt is None or sqrt.op != "Sqrt" or div.inputs[1] != sqrt.outputs[0] or \
                uses.sole_consumer(sqrt.outputs[0]) is not div:
            continue
        chain = [mean, sub, square, var, add, sqrt, div]
        scale, bias = (_absorb(uses, chain, op, norm_shape) for op in ("Mul", "Add"))
        last = chain[-1]
        scale_name, bias_name = f"{div.name}/ln_scale", f"{div.name}/ln_bias"
        g.consts[scale_name] = scale if scale is not None else np.ones(norm_shape, np.float32)
        inputs = [x, scale_name]
        if bias is not None:
            g.consts[bias_name] = bias
            inputs.append(bias_name)
        removed.update(id(n) for n in chain if n is not last)
        replaced[id(last)] = Node("LayerNormalization", div.name + "/layer_norm", inputs, [last.outputs[0]],
                                  {"axis": axis, "epsilon": float(eps)})
    return g.with_nodes([replaced.get(id(n), n) for n in g.nodes if id(n) not in removed])
