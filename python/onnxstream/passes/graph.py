"""The convert-time graph every pass reads and returns, and the one analysis of it (producers, consumers with their
input index, single consumers) that passes share instead of each building its own maps."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..graph import Node


@dataclass
class ConvertGraph:
    nodes: list[Node]       # in execution order
    outputs: list[str]      # graph output names: never removed or renamed
    shapes: dict            # value name -> (dims, dtype name), from shape inference (graph inputs included)
    consts: dict            # value name -> np.ndarray: initializers and folded constants
    weights: str = "fp32"   # the weight format being converted to

    def with_nodes(self, nodes: list[Node]) -> "ConvertGraph":
        return replace(self, nodes=nodes)

    def shape(self, name: str):
        """Static dims of a value, or None when shape inference left any of them unknown."""
        dims = self.shapes.get(name, (None,))[0]
        return dims if dims is not None and all(isinstance(d, int) for d in dims) else None


class Uses:
    """Who produces and who reads each value of g (computed once per pass; a pass that edits the graph builds a
    new one for the next pattern when it needs it)."""

    def __init__(self, g: ConvertGraph):
        self.g = g
        self.producer: dict[str, Node] = {o: n for n in g.nodes for o in n.outputs if o}
        self.consumers: dict[str, list[tuple[Node, int]]] = {}
        for node in g.nodes:
            for i, name in enumerate(node.inputs):
                if name:
                    self.consumers.setdefault(name, []).append((node, i))

    def sole_consumer(self, name: str) -> Node | None:
        """The only node reading `name`, when exactly one does and it is not a graph output."""
        after = self.consumers.get(name, [])
        return after[0][0] if len(after) == 1 and name not in self.g.outputs else None

    def const(self, name: str) -> np.ndarray | None:
        return self.g.consts.get(name) if name else None

    def scalar(self, name: str) -> float | None:
        a = self.const(name)
        return float(a.reshape(-1)[0]) if a is not None and a.size == 1 else None


def near(v, want) -> bool:
    """v is a constant within float rounding of want (None when it is not a constant)."""
    return v is not None and abs(v - want) <= 1e-6 * max(1.0, abs(want))


def other_input(node: Node, name: str) -> str:
    """The other input of a two-input node, "" if it has none."""
    rest = [n for n in node.inputs if n != name]
    return rest[0] if len(node.inputs) == 2 and len(rest) == 1 else ""
