"""static_reshapes: Squeeze, Unsqueeze, Flatten and Reshape whose output shape shape inference fixed become one
Reshape to that constant shape, and a chain of them becomes one: each costs a node dispatch and its axes
arithmetic every run, and exporters emit them by the dozen around recurrent cells and shape checks."""
from __future__ import annotations

import numpy as np

from ..graph import Node
from .graph import ConvertGraph, Uses

VIEW_OPS = {"Squeeze", "Unsqueeze", "Flatten", "Reshape"}


def static_reshapes(g: ConvertGraph) -> ConvertGraph:
    uses = Uses(g)
    source = {}      # a rewritten node's output -> the tensor it views (the head of its chain)
    nodes, dropped = [], set()
    for node in g.nodes:
        dims = g.shape(node.outputs[0]) if node.op in VIEW_OPS and len(node.outputs) == 1 else None
        if dims is None or node.inputs[0] in g.consts:
            nodes.append(node)
            continue
        x = node.inputs[0]
        head = source.get(x)
        if head is not None and uses.sole_consumer(x) is node:
            dropped.add(x)   # the view feeding this one is read by nothing else: skip it
            x = head
        shape_name = f"{node.outputs[0]}/static_shape"
        g.consts[shape_name] = np.array(dims, np.int64)
        source[node.outputs[0]] = x
        nodes.append(Node("Reshape", node.name, [x, shape_name], list(node.outputs), {"allowzero": 1}))
    return g.with_nodes([n for n in nodes if n.outputs[0] not in dropped])
