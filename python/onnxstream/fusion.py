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


def _nan_guard(soft: Node, uses: dict, consts: dict, outputs: list[str]):
    """The dynamo exporter's Where(IsNaN(p), 0, p) after a softmax: returns (where node, isnan node) or None."""
    after = uses.get(soft.outputs[0], [])
    isnan = [n for n in after if n.op == "IsNaN"]
    where = [n for n in after if n.op == "Where"]
    if len(after) != 2 or len(isnan) != 1 or len(where) != 1 or isnan[0].outputs[0] in outputs:
        return None
    w = where[0]
    zero = consts.get(w.inputs[1])
    if w.inputs[0] != isnan[0].outputs[0] or w.inputs[2] != soft.outputs[0] or zero is None or zero.size != 1 \
            or float(zero.reshape(-1)[0]) != 0.0 or uses.get(isnan[0].outputs[0]) != [w]:
        return None
    return w, isnan[0]


def fuse_attention(nodes: list[Node], outputs: list[str], shapes: dict, consts: dict) -> list[Node]:
    """MatMul(q, kt) [-> Add(mask)] -> Softmax(last axis) [-> Where(IsNaN(.), 0, .)] -> MatMul(., v)
    =>  FusedAttention(q, kt, v, mask).

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
        if soft.outputs[0] in outputs:
            continue
        guard = _nan_guard(soft, uses, consts, outputs)
        probs = guard[0].outputs[0] if guard else soft.outputs[0]
        after = uses.get(probs, [])
        if len(after) != 1 or after[0].op != "MatMul" or after[0].inputs[0] != probs or probs in outputs:
            continue
        pv = after[0]
        shape_q = shapes.get(pre.inputs[0], ([None],))[0]
        if shape_q is not None and len(shape_q) < 2:
            continue
        fused = Node("FusedAttention", pv.name + "/fused_attention",
                     [pre.inputs[0], pre.inputs[1], pv.inputs[1], mask], list(pv.outputs),
                     {"nan_to_zero": 1} if guard else {})
        removed.update(id(n) for n in (pre, add, soft, *(guard or ())) if n is not None)
        replaced[id(pv)] = fused
    return [replaced.get(id(n), n) for n in nodes if id(n) not in removed]


def _const(consts: dict, name: str):
    return consts.get(name) if name else None


def fuse_group_norm(nodes: list[Node], outputs: list[str], shapes: dict, consts: dict) -> list[Node]:
    """Reshape(x, [N, G, -1]) -> InstanceNormalization(ones, zeros) -> Reshape(back) -> Mul(w) -> Add(b)
    => FusedGroupNorm(x, w, b) — the GroupNorm every SD ResNet block and attention block starts with.
    A following Sigmoid/Mul pair (SiLU) is folded in as activation="silu"."""
    import numpy as np
    producer = {o: n for n in nodes for o in n.outputs if o}
    uses = _consumers(nodes)
    sole = lambda name: uses.get(name, [None])[0] if name not in outputs and len(uses.get(name, [])) == 1 else None  # noqa: E731
    removed, replaced = set(), {}
    for inorm in nodes:
        if inorm.op != "InstanceNormalization":
            continue
        r1 = producer.get(inorm.inputs[0])
        scale, bias = _const(consts, inorm.inputs[1]), _const(consts, inorm.inputs[2])
        if r1 is None or r1.op != "Reshape" or scale is None or bias is None:
            continue
        if not (np.all(scale == 1) and np.all(bias == 0)):
            continue
        x = r1.inputs[0]
        x_shape = shapes.get(x, (None,))[0]
        if not x_shape or any(d is None for d in x_shape) or len(x_shape) < 3:
            continue
        groups = len(scale)
        channels = x_shape[1]
        r2 = sole(inorm.outputs[0])
        mul = sole(r2.outputs[0]) if r2 is not None and r2.op == "Reshape" else None
        if mul is None or mul.op != "Mul" or shapes.get(r2.outputs[0], (None,))[0] != x_shape:
            continue
        w_name = mul.inputs[1] if mul.inputs[0] == r2.outputs[0] else mul.inputs[0]
        add = sole(mul.outputs[0])
        if add is None or add.op != "Add":
            continue
        b_name = add.inputs[1] if add.inputs[0] == mul.outputs[0] else add.inputs[0]
        w, b = _const(consts, w_name), _const(consts, b_name)
        if w is None or b is None or w.size != channels or b.size != channels or channels % groups:
            continue
        if w.shape[-1] != channels and (w.ndim < len(x_shape) - 1 or w.shape[-(len(x_shape) - 1)] != channels):
            continue  # the per-channel vector must run along axis 1
        w_flat, b_flat = f"{w_name}/per_channel", f"{b_name}/per_channel"
        consts[w_flat] = np.ascontiguousarray(w.reshape(channels).astype(np.float32))
        consts[b_flat] = np.ascontiguousarray(b.reshape(channels).astype(np.float32))
        last, activation = add, ""
        sig = [n for n in uses.get(add.outputs[0], []) if n.op == "Sigmoid"]
        if add.outputs[0] not in outputs and len(uses.get(add.outputs[0], [])) == 2 and len(sig) == 1:
            mul2 = sole(sig[0].outputs[0])
            if mul2 is not None and mul2.op == "Mul" and set(mul2.inputs) == {add.outputs[0], sig[0].outputs[0]}:
                removed.update((id(add), id(sig[0])))
                last, activation = mul2, "silu"
        fused = Node("FusedGroupNorm", inorm.name + "/fused_group_norm", [x, w_flat, b_flat], list(last.outputs),
                     {"num_groups": groups, "epsilon": float(inorm.attrs.get("epsilon", 1e-5)),
                      "activation": activation})
        removed.update(id(n) for n in (r1, inorm, r2, mul, add) if n is not last)
        replaced[id(last)] = fused
    return [replaced.get(id(n), n) for n in nodes if id(n) not in removed]


def fuse_silu(nodes: list[Node], outputs: list[str]) -> list[Node]:
    """Mul(x, Sigmoid(x)) => FusedSiLU(x): one pass instead of two, one tensor fewer alive."""
    uses = _consumers(nodes)
    removed, replaced = set(), {}
    for sig in nodes:
        if sig.op != "Sigmoid" or sig.outputs[0] in outputs:
            continue
        after = uses.get(sig.outputs[0], [])
        if len(after) != 1 or after[0].op != "Mul" or sorted(after[0].inputs) != sorted([sig.inputs[0], sig.outputs[0]]):
            continue
        removed.add(id(sig))
        replaced[id(after[0])] = Node("FusedSiLU", after[0].name + "/fused_silu", [sig.inputs[0]], list(after[0].outputs))
    return [replaced.get(id(n), n) for n in nodes if id(n) not in removed]


def _scalar(consts: dict, name: str):
    a = consts.get(name)
    return float(a.reshape(-1)[0]) if a is not None and a.size == 1 else None


def _other(node: Node, name: str) -> str:
    """The other input of a two-input node, "" if it has none."""
    rest = [n for n in node.inputs if n != name]
    return rest[0] if len(node.inputs) == 2 and len(rest) == 1 else ""


def fuse_gelu(nodes: list[Node], outputs: list[str], consts: dict) -> list[Node]:
    """x * 0.5 * (1 + Erf(x / sqrt(2))), as exporters spell it (Div by sqrt(2) or Mul by 1/sqrt(2); the 0.5 applied
    first or last) => Gelu(x): one pass over the tensor instead of five (the GEGLU feed-forward of every UNet
    transformer block runs it on [rows, 4 x channels])."""
    producer = {o: n for n in nodes for o in n.outputs if o}
    uses = _consumers(nodes)
    near = lambda v, want: v is not None and abs(v - want) < 1e-4 * abs(want)  # noqa: E731
    only = lambda node: node.outputs[0] not in outputs and len(uses.get(node.outputs[0], [])) == 1  # noqa: E731
    removed, replaced = set(), {}
    for erf in nodes:
        scale = producer.get(erf.inputs[0]) if erf.op == "Erf" else None
        if scale is None or not only(erf) or not only(scale) or scale.op not in ("Div", "Mul"):
            continue
        x, c = scale.inputs
        if not (near(_scalar(consts, c), 2 ** 0.5) if scale.op == "Div" else near(_scalar(consts, c), 2 ** -0.5)):
            continue
        add = uses[erf.outputs[0]][0]
        if add.op != "Add" or not only(add) or not near(_scalar(consts, _other(add, erf.outputs[0])), 1.0):
            continue
        mul = uses[add.outputs[0]][0]
        if mul.op != "Mul" or len(mul.inputs) != 2:
            continue
        other = mul.inputs[1] if mul.inputs[0] == add.outputs[0] else mul.inputs[0]
        half = producer.get(other)
        if other == x or near(_scalar(consts, other), 0.5):   # (x * (1 + erf)) * 0.5 or (0.5 * (1 + erf)) * x
            last = uses[mul.outputs[0]][0] if only(mul) else None
            if last is None or last.op != "Mul" or \
                    not (near(_scalar(consts, _other(last, mul.outputs[0])), 0.5) if other == x else
                         _other(last, mul.outputs[0]) == x):
                continue
            group = [scale, erf, add, mul]
        elif half is not None and half.op == "Mul" and x in half.inputs and only(half) and \
                near(_scalar(consts, _other(half, x)), 0.5):   # (x * 0.5) * (1 + erf)
            last, group = mul, [scale, erf, add, half]
        else:
            continue
        if any(id(n) in removed for n in group + [last]):
            continue
        removed.update(id(n) for n in group)
        replaced[id(last)] = Node("Gelu", last.name + "/fused_gelu", [x], list(last.outputs))
    return [replaced.get(id(n), n) for n in nodes if id(n) not in removed]


# Ops that act on each row (all leading axes) independently, given how fuse_row_tiles checks their operands.
_ROW_LOCAL_UNARY = {"Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Neg", "Abs", "Sqrt", "Gelu", "FusedSiLU", "Cast",
                    "Identity", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Softplus"}
_ROW_LOCAL_BINARY = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"}
ROW_TILE_MIN_BYTES = 8 << 20   # fuse only where the widest intermediate would exceed this
ROW_TILE_ROWS = 256
# Fewer rows: the chain runs whole, so its weights can be read in column blocks instead of being held whole by
# every tile (at SD1.5's 16x16 level the tiled GEGLU would hold 39 MB of fp16 weights at once).
ROW_TILE_MIN_ROWS = 4 * ROW_TILE_ROWS


def fuse_row_tiles(nodes: list[Node], outputs: list[str], shapes: dict, consts: dict) -> list[Node]:
    """A MatMul by a constant weight followed by row-local ops up to a second such MatMul (the GEGLU / MLP
    feed-forward of every transformer block) => FusedRowTiled running that chain on 256 rows at a time.

    At SD1.5's first UNet level the GEGLU projection is [2*4096, 2560] floats (84 MB) while its input and output
    are 10 MB each; tiling keeps only 2.6 MB of it alive."""
    import numpy as np
    producer = {o: n for n in nodes for o in n.outputs if o}
    uses = _consumers(nodes)
    is_weight = lambda name: name in consts and consts[name].ndim == 2  # noqa: E731
    removed, replaced = set(), {}
    for first in nodes:
        if first.op != "MatMul" or not is_weight(first.inputs[1]) or id(first) in removed:
            continue
        out_shape = shapes.get(first.outputs[0], (None,))[0]
        if not out_shape or any(d is None for d in out_shape) or len(out_shape) < 2:
            continue
        width = out_shape[-1]
        rows = int(np.prod(out_shape[:-1]))
        if rows * width * 4 < ROW_TILE_MIN_BYTES or rows < ROW_TILE_MIN_ROWS:
            continue
        # Grow the region forward to a fixpoint: add each user whose inputs are all made here (or constant),
        # stopping at the closing MatMul.
        region, made, last = [first], set(first.outputs), None
        changed = True
        while changed:
            changed = False
            for value in list(made):
                if last is not None and value in last.outputs:
                    continue
                for user in uses.get(value, []):
                    if user in region or not _row_local(user, made, consts, shapes):
                        continue
                    if not all(not n or n in made or n in consts for n in user.inputs):
                        continue
                    if user.op == "MatMul":
                        if last is not None:
                            continue
                        last = user
                    region.append(user)
                    made.update(o for o in user.outputs if o)
                    changed = True
        if last is None or any(o in outputs for n in region for o in n.outputs if n is not last):
            continue
        # An Add of a bias right after the closing MatMul belongs to the chain too.
        tail = last
        after = uses.get(last.outputs[0], [])
        if len(after) == 1 and after[0].op == "Add" and last.outputs[0] not in outputs:
            other = [n for n in after[0].inputs if n != last.outputs[0]]
            if other and other[0] in consts and consts[other[0]].ndim <= 1:
                region.append(after[0])
                tail = after[0]
        inner = set(made) - set(tail.outputs)
        if any(u not in region for v in inner for u in uses.get(v, [])):
            continue
        order = [n for n in nodes if n in region]
        weights = sorted({n for node in order for n in node.inputs if n in consts}, key=lambda n: n)
        fused = Node("FusedRowTiled", first.name + "/fused_row_tiled", [first.inputs[0], *weights], list(tail.outputs),
                     {"rows": ROW_TILE_ROWS, "input": first.inputs[0], "output": tail.outputs[0], "weights": weights,
                      "nodes": [{"op": n.op, "inputs": n.inputs, "outputs": n.outputs, "attrs": n.attrs} for n in order]})
        removed.update(id(n) for n in order if n is not tail)
        replaced[id(tail)] = fused
    return [replaced.get(id(n), n) for n in nodes if id(n) not in removed]


def _row_local(node: Node, made: set, consts: dict, shapes: dict) -> bool:
    if node.op in _ROW_LOCAL_UNARY:
        return True
    if node.op == "MatMul":
        return node.inputs[0] in made and node.inputs[1] in consts and consts[node.inputs[1]].ndim == 2
    if node.op in _ROW_LOCAL_BINARY:
        # Both operands from the chain (same rows), or a constant broadcast along the last axis only.
        return all(n in made or (n in consts and (consts[n].ndim <= 1 or all(d == 1 for d in consts[n].shape[:-1])))
                   for n in node.inputs)
    if node.op in ("Split", "Slice", "Softmax"):
        rank = len(shapes.get(node.inputs[0], ([],))[0] or [])
        if node.op == "Slice":
            axes = consts.get(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] else None
            return rank > 0 and axes is not None and all(int(a) in (-1, rank - 1) for a in axes.reshape(-1))
        return rank > 0 and node.attrs.get("axis", 0 if node.op == "Split" else -1) in (-1, rank - 1)
    return False
