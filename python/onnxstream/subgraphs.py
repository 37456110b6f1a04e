"""Convert-time handling of control flow: the subgraphs of If, Loop and Scan become nested Graphs (graph.py), an If
whose condition is constant is replaced by the branch it takes, and nodes inside subgraphs that only read
constants are folded. Converter only.

Names: every value name stays unique across the model, so a subgraph's initializers join the one constant table
and an inlined branch can be spliced into its parent: a subgraph's own name that is already taken (ONNX lets a
subgraph shadow an outer name, and sibling branches often reuse names) gets a suffix, and references resolve to
the innermost definition as in ONNX.
"""
from __future__ import annotations

import numpy as np

from .graph import Graph, Node, ValueInfo, outer_names, reads, subgraphs


def model_names(graph_proto) -> set[str]:
    """The names the main graph defines (never renamed)."""
    names = {v.name for v in graph_proto.input} | {t.name for t in graph_proto.initializer}
    return names | {o for n in graph_proto.node for o in n.output}


def import_subgraph(onnx, g, consts: dict, scope: dict, taken: set, node_fn) -> Graph:
    """The ONNX GraphProto g as a Graph. scope maps ONNX names visible from the enclosing graphs to ours; taken holds
    every name in use; g's initializers go into consts. node_fn(onnx, node_proto, index, names, subgraph) converts
    one node (converter._node)."""
    local = dict(scope)

    def define(name: str) -> str:
        new, k = name, 1
        while new in taken:
            new, k = f"{name}__{k}", k + 1
        taken.add(new)
        local[name] = new
        return new

    inputs = [ValueInfo(define(v.name), *_value_type(onnx, v.type)) for v in g.input]
    for t in g.initializer:
        consts[define(t.name)] = onnx.numpy_helper.to_array(t)
    nodes = []
    for i, n in enumerate(g.node):
        node = node_fn(onnx, n, i, local, lambda sub: import_subgraph(onnx, sub, consts, local, taken, node_fn))
        node.outputs = [define(o) if o else "" for o in n.output]
        nodes.append(node)
    outputs = [ValueInfo(local.get(v.name, v.name), *_value_type(onnx, v.type)) for v in g.output]
    return Graph(inputs, outputs, nodes)


def _value_type(onnx, type_proto) -> tuple:
    """(shape, dtype) of a subgraph input or output: dims None where unknown, shape None for an unknown rank, dtype
    "" for an unknown type or a sequence."""
    if not type_proto.HasField("tensor_type"):
        return None, ""
    t = type_proto.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] if t.HasField("shape") else None
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name
    except Exception:
        dtype = ""
    return shape, dtype


def graph_proto(onnx, g: Graph, name: str):
    """A nested Graph back as an ONNX GraphProto (for shape inference)."""
    def info(v):
        if not v.dtype:
            return onnx.helper.make_empty_tensor_value_info(v.name)
        elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype))
        return onnx.helper.make_tensor_value_info(v.name, elem, v.shape)
    return onnx.helper.make_graph([node_proto(onnx, n) for n in g.nodes], name, [info(v) for v in g.inputs],
                                  [info(v) for v in g.outputs])


def node_proto(onnx, n: Node):
    """A Node back as an ONNX NodeProto (attributes starting with "__" and empty lists left out)."""
    domain, op = n.op.rsplit(".", 1) if "." in n.op else ("", n.op)
    attrs = {}
    for k, v in n.attrs.items():
        if k.startswith("__") or (isinstance(v, list) and not v):
            continue
        if isinstance(v, np.ndarray):
            v = onnx.numpy_helper.from_array(np.asarray(v))
        elif isinstance(v, Graph):
            v = graph_proto(onnx, v, f"{n.name}_{k}")
        attrs[k] = v
    return onnx.helper.make_node(op, n.inputs, n.outputs, name=n.name, domain=domain, **attrs)


# ---------------------------------------------------------------- passes over control flow

def fold_control_flow(nodes: list[Node], consts: dict, fold) -> tuple[list[Node], bool]:
    """Inline each If whose condition is constant, and fold each subgraph node whose inputs are all constants
    (fold(node) -> {name: array} or None, the converter's folding of one node). Returns (nodes, changed)."""
    out, changed = [], False
    for node in nodes:
        branch = _taken_branch(node, consts)
        if branch is not None:
            inlined, _ = fold_control_flow(branch.nodes, consts, fold)
            out += inlined
            # The If's outputs become names for the branch's (which may be outer values or constants).
            out += [Node("Identity", f"{node.name}/{o.name}", [o.name], [name])
                    for o, name in zip(branch.outputs, node.outputs) if name]
            changed = True
            continue
        for g in subgraphs(node):
            kept = []
            for inner in g.nodes:
                folded = None if subgraphs(inner) else fold(inner)
                if folded is None:
                    kept.append(inner)
                else:
                    consts.update(folded)
            g.nodes, inner_changed = fold_control_flow(kept, consts, fold)
            changed |= inner_changed or len(kept) != len(g.nodes)
        out.append(node)
    return out, changed


def _taken_branch(node: Node, consts: dict) -> Graph | None:
    if node.op != "If" or node.inputs[0] not in consts or consts[node.inputs[0]].size != 1:
        return None
    return node.attrs["then_branch" if bool(consts[node.inputs[0]].reshape(-1)[0]) else "else_branch"]


def prune_subgraphs(nodes: list[Node]) -> None:
    """Drop, in every subgraph, the nodes none of its outputs depends on."""
    for node in nodes:
        for g in subgraphs(node):
            needed = {o.name for o in g.outputs}
            kept = []
            for inner in reversed(g.nodes):
                if any(o in needed for o in inner.outputs if o):
                    kept.append(inner)
                    needed.update(reads(inner))
            g.nodes = kept[::-1]
            prune_subgraphs(g.nodes)


def read_by_subgraphs(nodes: list[Node]) -> list[str]:
    """Values of this graph that subgraphs read: rewrites of the graph must keep them as they are."""
    return sorted({name for node in nodes for g in subgraphs(node) for name in outer_names(g)})
