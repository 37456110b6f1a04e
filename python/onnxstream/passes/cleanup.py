"""Cleanup passes:
- drop_identity: Identity nodes (Paddle exports put one after nearly every op) are removed and their readers read
  the input instead, unless the output is a graph output; they would cost a dispatch each and hide patterns;
- drop_unused_outputs: optional outputs nothing reads (MaxPool's indices, LayerNormalization's statistics,
  Dropout's mask) become "" and trailing ones are removed, so the op never computes them (ops see the count)."""
from __future__ import annotations

from ..graph import Node
from .graph import ConvertGraph, Uses

# Ops whose outputs after the first are optional and cost work when requested.
OPTIONAL_OUTPUTS = {"MaxPool", "LayerNormalization", "Dropout", "BatchNormalization"}


def drop_unused_outputs(g: ConvertGraph) -> ConvertGraph:
    uses = Uses(g)
    nodes = []
    for node in g.nodes:
        if node.op in OPTIONAL_OUTPUTS and len(node.outputs) > 1:
            outs = [o if i == 0 or o in uses.consumers or o in g.outputs else "" for i, o in enumerate(node.outputs)]
            while len(outs) > 1 and not outs[-1]:
                outs.pop()
            node = Node(node.op, node.name, node.inputs, outs, node.attrs)
        nodes.append(node)
    return g.with_nodes(nodes)


def drop_identity(g: ConvertGraph) -> ConvertGraph:
    renamed, nodes = {}, []
    for node in g.nodes:
        inputs = [renamed.get(n, n) for n in node.inputs]
        if node.op == "Identity" and node.outputs[0] not in g.outputs and inputs[0] not in g.consts:
            renamed[node.outputs[0]] = inputs[0]
            continue
        nodes.append(Node(node.op, node.name, inputs, node.outputs, node.attrs) if inputs != node.inputs else node)
    return g.with_nodes(nodes)
