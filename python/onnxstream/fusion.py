"""Convert-time graph rewrites that save memory round trips. Each pass finds one pattern exporters emit and
replaces it by a fused op of runtime/ops/fused.py; the fused op computes exactly what the pattern computed."""
from __future__ import annotations

from .graph import Node


def _consumers(nodes: list[Node]) -> dict[str, list[Node]]:
    uses: dict[str, list[Node]] = {}
    for node in nodes:
        for name in node.inputs:
            if name:
                uses.setdefault(name, []).append(node)
    return uses


def fuse_attention(nodes: list[Node], outputs: list[str], shapes: dict) -> list[Node]:
    """MatMul(q, kt) [-> Add(mask)] -> Softmax(last axis) -> MatMul(., v)  =>  FusedAttention(q, kt, v, mask).

    Never materializes the [M, N] scores, which dominate memory at high resolution."""
    producer = {o: n for n in nodes for o in n.outputs if o}
    uses = _consumers(nodes)
    only_use = lambda name, node: name not in outputs and uses.get(name) == [node]  # noqa: E731
    removed, replaced = set(), {}
    for soft in nodes:
        if soft.op != "Softmax":
            continue
        rank = len(shapes.get(soft.inputs[0], ([],))[0] or [])
        axis = soft.attrs.get("axis", -1)
        if not (axis == -1 or (rank and axis == rank - 1)):
            continue
        pre = producer.get(soft.inputs[0])
        mask, add = "", None
        if pre is not None and pre.op == "Add" and only_use(pre.outputs[0], soft):
            for i in (0, 1):
                cand = producer.get(pre.inputs[i])
                if cand is not None and cand.op == "MatMul" and only_use(cand.outputs[0], pre):
                    add, mask, pre = pre, pre.inputs[1 - i], cand
                    break
        if pre is None or pre.op != "MatMul" or (add is None and not only_use(pre.outputs[0], soft)):
            continue
        after = uses.get(soft.outputs[0], [])
        if len(after) != 1 or after[0].op != "MatMul" or after[0].inputs[0] != soft.outputs[0] \
                or soft.outputs[0] in outputs:
            continue
        pv = after[0]
        shape_q = shapes.get(pre.inputs[0], ([None],))[0]
        if shape_q is not None and len(shape_q) < 2:
            continue
        fused = Node("FusedAttention", pv.name + "/fused_attention",
                     [pre.inputs[0], pre.inputs[1], pv.inputs[1], mask], list(pv.outputs))
        removed.update(id(n) for n in (pre, add, soft) if n is not None)
        replaced[id(pv)] = fused
    return [replaced.get(id(n), n) for n in nodes if id(n) not in removed]
