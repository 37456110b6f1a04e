"""Convert-time rewrites of 2-D convolutions into FusedConv (runtime/ops/fused_conv.py), so the big activations of
decoders (SD's VAE at 512x512: 128-256 channels of 512^2) are never materialized more than once:

1. nearest Resize by an integer s + Conv  =>  sub-pixel FusedConv on the small input (s*s phase convs in one,
   2.25x fewer FLOPs for s=2, 3x3; the upsampled tensor never exists);
2. FusedGroupNorm(x) read only by convs  =>  FusedGroupNormScale(x) (per-channel scale/shift) + each conv
   normalizing (and SiLU-ing) the rows it reads;
3. Add(conv, r)  =>  the conv adds r in its epilogue;
4. large conv outputs read only by fused ops are stored as float16;
5. a large conv output computed from a smaller input and read only by fused ops is recomputed by each reader
   (a 1x1 conv reader instead gets the product weights and reads the smaller input directly);
6. a conv writes over its residual or its own input when that is the value's last read.
Each step computes what the pattern computed (up to float rounding and the float16 storage of step 4). Before
them, arithmetic by a neutral constant (x / 1 after a residual add) is dropped.
"""
from __future__ import annotations

import numpy as np

from .graph import Node

FP16_MIN_BYTES = 16 << 20       # float32 size from which conv outputs are stored as float16
RECOMPUTE_MIN_BYTES = 96 << 20  # stored size from which a conv output of a smaller input is recomputed, not kept
# float32 output size from which Add(conv, r) goes into the conv's epilogue: below it the band machinery's Python
# costs more than the separate Add (an OCR classifier's 18 KB conv: 72 us fused, 27 us as Conv + Add), and the
# third buffer the fusion saves is small. SD's smallest residual (the UNet's 8x8 level) is 655 KB.
RESIDUAL_MIN_BYTES = 256 << 10
_FUSED_READERS = {"FusedConv", "FusedGroupNormScale"}  # ops that read float16 and never return a view


def _uses(nodes):
    uses = {}
    for node in nodes:
        for i, name in enumerate(node.inputs):
            if name:
                uses.setdefault(name, []).append((node, i))
    return uses


def _shape(shapes, name):
    s = shapes.get(name, (None,))[0]
    return s if s and all(isinstance(d, int) for d in s) else None


def _as_fused(conv: Node, shapes, consts):
    """A Conv node as a FusedConv with explicit attributes, or None when it is not a plain 2-D conv by a constant."""
    if conv.op == "FusedConv":  # a copy, so the caller may place it elsewhere and drop the original
        return Node(conv.op, conv.name, list(conv.inputs), list(conv.outputs), dict(conv.attrs))
    if conv.op != "Conv" or len(conv.inputs) < 2 or conv.inputs[1] not in consts:
        return None
    w = consts[conv.inputs[1]]
    x_shape = _shape(shapes, conv.inputs[0])
    b = conv.inputs[2] if len(conv.inputs) > 2 else ""
    if w.ndim != 4 or w.dtype != np.float32 or not x_shape or len(x_shape) != 4 or (b and b not in consts):
        return None
    if conv.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "") or _shape(shapes, conv.outputs[0]) is None:
        return None
    if conv.attrs.get("activation") or (w.shape[1] == 1 and int(conv.attrs.get("group", 1)) == w.shape[0] > 1):
        return None  # an activation epilogue (passes/activations.py) or depthwise (ops/dwconv.h): plain Conv only
    attrs = {"kernel_shape": list(w.shape[2:]), "pads": [int(p) for p in conv.attrs.get("pads", [0, 0, 0, 0])],
             "strides": [int(s) for s in conv.attrs.get("strides", [1, 1])],
             "dilations": [int(d) for d in conv.attrs.get("dilations", [1, 1])],
             "group": int(conv.attrs.get("group", 1))}
    return Node("FusedConv", conv.name, [conv.inputs[0], conv.inputs[1], b, "", ""], list(conv.outputs), attrs)


def _replace(nodes, old: Node, new: Node):
    nodes[next(i for i, n in enumerate(nodes) if n is old)] = new


# ---------------------------------------------------------------- 1. sub-pixel upsampling convs

def _nearest_factor(resize: Node, shapes, consts):
    """s when Resize maps output index o to input floor(o / s) on the two spatial axes (checked by running the
    runtime's Resize on an index ramp), else None."""
    from .runtime.ops import OPS, op_kwargs
    x_shape, y_shape = _shape(shapes, resize.inputs[0]), _shape(shapes, resize.outputs[0])
    if resize.attrs.get("mode", "nearest") != "nearest" or not x_shape or not y_shape or len(x_shape) != 4:
        return None
    if x_shape[:2] != y_shape[:2] or y_shape[2] % x_shape[2] or y_shape[3] % x_shape[3]:
        return None
    s = y_shape[2] // x_shape[2]
    if s < 2 or y_shape[3] != s * x_shape[3]:
        return None
    args = [consts.get(n) if n else None for n in resize.inputs]
    if any(n and n not in consts for n in resize.inputs[1:]):
        return None
    H, W = x_shape[2:]
    ramp = np.arange(H * W, dtype=np.float32).reshape(1, 1, H, W)
    if len(args) > 3 and args[3] is not None:
        args[3] = np.array([1, 1, s * H, s * W], np.int64)
    try:
        out = OPS["Resize"](ramp, *args[1:], **op_kwargs("Resize", resize.attrs, 1, 18))
    except Exception:
        return None
    want = ramp[:, :, np.arange(s * H) // s][:, :, :, np.arange(s * W) // s]
    return s if out.shape == want.shape and np.array_equal(out, want) else None


def _phases(s: int, k: int, pad: int):
    """Per output phase i, the input offsets floor((i - pad + t) / s) of taps t < k: (D, P, pad_end, offsets,
    tap -> kernel index per phase) or None when the phases' kernels differ in size."""
    lo = [(i - pad) // s for i in range(s)]
    hi = [(i - pad + k - 1) // s for i in range(s)]
    sizes = {h - l + 1 for l, h in zip(lo, hi)}
    if len(sizes) != 1:
        return None
    D, P = sizes.pop(), -min(lo)
    offsets = [l - min(lo) for l in lo]
    taps = [[(i - pad + t) // s - lo[i] for t in range(k)] for i in range(s)]
    return D, P, max(lo) + D - 1, offsets, taps


SUFFIX = "/subpixel"   # names of the weights made here
# Sub-pixel weights hold 16/9 the taps of the 3x3 kernel they replace, read every run. They
# pay where each weight serves many pixels (SD's VAE: 4096+ input pixels), not at the UNet's 8x8-32x32 levels
# (on a Pi's SD card the extra reads cost more than the MACs saved).
SUBPIXEL_MIN_PIXELS = 4096


def fuse_subpixel(nodes, outputs, shapes, consts, weights="fp32"):
    """The phase weights are sums of up to 4 original taps: under --weights fp16 they are summed from the
    float16-rounded taps (what the float16 model holds), then rounded once more when stored."""
    uses = _uses(nodes)
    for resize in [n for n in nodes if n.op == "Resize"]:
        after = uses.get(resize.outputs[0], [])
        if resize.outputs[0] in outputs or len(after) != 1 or after[0][1] != 0:
            continue
        conv = _as_fused(after[0][0], shapes, consts)
        if conv is None or after[0][0].op != "Conv" or conv.attrs["group"] != 1 or \
                conv.attrs["strides"] != [1, 1] or conv.attrs["dilations"] != [1, 1]:
            continue
        x_shape = _shape(shapes, resize.inputs[0])
        if not x_shape or int(np.prod(x_shape[:1] + x_shape[2:])) < SUBPIXEL_MIN_PIXELS:
            continue
        s = _nearest_factor(resize, shapes, consts)
        if s is None or _shape(shapes, conv.outputs[0])[2:] != _shape(shapes, resize.outputs[0])[2:]:
            continue
        w = consts[conv.inputs[1]]
        w = w.astype(np.float16).astype(np.float32) if weights == "fp16" else w
        M, C, kh, kw = w.shape
        ph, pw = conv.attrs["pads"][0], conv.attrs["pads"][1]
        rows, cols = _phases(s, kh, ph), _phases(s, kw, pw)
        if rows is None or cols is None or min(rows[1], rows[2], cols[1], cols[2]) < 0:
            continue
        Dh, Ph, Eh, off_h, taps_h = rows
        Dw, Pw, Ew, off_w, taps_w = cols
        ws = np.zeros((M, s * s, C, Dh, Dw), np.float64)   # z channel m*s*s + phase: blocks hold whole channels
        for i in range(s):
            for j in range(s):
                for th in range(kh):
                    for tw in range(kw):
                        ws[:, i * s + j, :, taps_h[i][th], taps_w[j][tw]] += w[:, :, th, tw]
        ws = ws.reshape(s * s * M, C, Dh, Dw)
        w_name, b_name = f"{conv.inputs[1]}{SUFFIX}{s}", f"{conv.inputs[2] or conv.inputs[1]}{SUFFIX}{s}b"
        consts[w_name] = ws.astype(np.float32)
        b = consts[conv.inputs[2]].reshape(-1) if conv.inputs[2] else np.zeros(M, np.float32)
        consts[b_name] = np.repeat(b.astype(np.float32), s * s)
        conv.inputs[:3] = [resize.inputs[0], w_name, b_name]
        conv.attrs.update(kernel_shape=[Dh, Dw], pads=[Ph, Pw, Eh, Ew], subpixel=s, offsets_h=off_h, offsets_w=off_w)
        _replace(nodes, after[0][0], conv)
        nodes.remove(resize)
    return nodes


# ---------------------------------------------------------------- 2. GroupNorm (+ SiLU) into the convs reading it

def fuse_norm_into_conv(nodes, outputs, shapes, consts):
    uses = _uses(nodes)
    for gn in [n for n in nodes if n.op == "FusedGroupNorm"]:
        y = gn.outputs[0]
        after = uses.get(y, [])
        x_shape = _shape(shapes, gn.inputs[0])
        if y in outputs or not after or not x_shape or len(x_shape) != 4:
            continue
        convs = [_as_fused(n, shapes, consts) if i == 0 else None for n, i in after]
        if any(c is None or c.inputs[3] for c in convs):
            continue
        scale = Node("FusedGroupNormScale", gn.name + "/scale", list(gn.inputs), [y + "/scale_shift"],
                     {"num_groups": gn.attrs["num_groups"], "epsilon": gn.attrs.get("epsilon", 1e-5)})
        _replace(nodes, gn, scale)
        for (old, _), conv in zip(after, convs):
            conv.inputs[0], conv.inputs[3] = gn.inputs[0], scale.outputs[0]
            conv.attrs["activation"] = gn.attrs.get("activation", "")
            _replace(nodes, old, conv)
    return nodes


# ---------------------------------------------------------------- 3. residual Adds into conv epilogues

def fuse_residual_add(nodes, outputs, shapes, consts):
    position = {id(n): i for i, n in enumerate(nodes)}
    producer = {o: n for n in nodes for o in n.outputs if o}
    uses = _uses(nodes)
    removed = set()
    for add in [n for n in nodes if n.op == "Add"]:
        out_shape = _shape(shapes, add.outputs[0])
        if not out_shape or len(out_shape) != 4 or len(add.inputs) != 2 or add.inputs[0] == add.inputs[1]:
            continue
        if any(_shape(shapes, n) != out_shape for n in add.inputs) or 4 * np.prod(out_shape) < RESIDUAL_MIN_BYTES:
            continue
        best = None
        for k in (0, 1):
            p = producer.get(add.inputs[k])
            if p is None or id(p) in removed or add.inputs[k] in outputs or len(uses.get(add.inputs[k], [])) != 1:
                continue
            conv = _as_fused(p, shapes, consts)
            if conv is None or conv.inputs[4] or (best is not None and position[id(p)] < position[id(best[0])]):
                continue
            best = (p, conv, add.inputs[1 - k])
        if best is None:
            continue
        p, conv, residual = best
        conv.inputs[4] = residual
        conv.outputs = list(add.outputs)
        _replace(nodes, add, conv)   # at the Add's place: the residual is computed by then
        removed.add(id(p))
        producer[add.outputs[0]] = conv
    return [n for n in nodes if id(n) not in removed]


# ---------------------------------------------------------------- 4-6. storage: float16, recompute, in place

def _fused_readers_only(name, uses, outputs):
    return name not in outputs and all(n.op in _FUSED_READERS for n, _ in uses.get(name, []))


def store_float16(nodes, outputs, shapes):
    uses = _uses(nodes)
    for conv in [n for n in nodes if n.op == "FusedConv"]:
        shape = _shape(shapes, conv.outputs[0])
        if shape and 4 * int(np.prod(shape)) >= FP16_MIN_BYTES and _fused_readers_only(conv.outputs[0], uses, outputs):
            conv.attrs["out_dtype"] = "float16"
    return nodes


def _stored_bytes(node, shapes):
    shape = _shape(shapes, node.outputs[0])
    return int(np.prod(shape)) * (2 if node.attrs.get("out_dtype") == "float16" else 4) if shape else 0


_SRC_ATTRS = ("kernel_shape", "pads", "strides", "dilations", "group", "activation", "subpixel", "offsets_h",
              "offsets_w")


def _is_plain_1x1(n):
    a = n.attrs
    return (n.op == "FusedConv" and a["kernel_shape"] == [1, 1] and a["strides"] == [1, 1] and a["group"] == 1 and
            a["dilations"] == [1, 1] and not any(a["pads"]) and not n.inputs[3] and not a.get("activation"))


def _compose_1x1(reader: Node, conv: Node, consts, weights):
    """reader = 1x1 conv of conv's output => one conv of conv's input with the product weights (cheaper than
    recomputing conv's output for it: SD's VAE shortcut 256->128 after the upsample conv costs half)."""
    rnd = (lambda a: a.astype(np.float16).astype(np.float64)) if weights == "fp16" else (lambda a: a.astype(np.float64))
    w_in = consts[conv.inputs[1]]
    w_in = w_in.astype(np.float64) if SUFFIX in conv.inputs[1] else rnd(w_in)
    b_in = consts[conv.inputs[2]].reshape(-1).astype(np.float64) if conv.inputs[2] else np.zeros(w_in.shape[0])
    w_1 = rnd(consts[reader.inputs[1]])[:, :, 0, 0]
    b_1 = consts[reader.inputs[2]].reshape(-1).astype(np.float64) if reader.inputs[2] else np.zeros(w_1.shape[0])
    phases, m = w_in.shape[0] // w_1.shape[1], w_1.shape[1]   # z channel = channel * phases + sub-pixel phase
    w = np.stack([(w_1 @ w_in[p::phases].reshape(m, -1)).reshape((-1,) + w_in.shape[1:]) for p in range(phases)], 1)
    w = w.reshape((-1,) + w_in.shape[1:])
    b = np.stack([w_1 @ b_in[p::phases] + b_1 for p in range(phases)], 1).reshape(-1)
    w_name, b_name = f"{reader.inputs[1]}{SUFFIX}_composed", f"{reader.inputs[1]}{SUFFIX}_composed_b"
    consts[w_name], consts[b_name] = w.astype(np.float32), b.astype(np.float32)
    reader.inputs[:4] = [conv.inputs[0], w_name, b_name, conv.inputs[3]]
    reader.attrs.update({k: conv.attrs[k] for k in _SRC_ATTRS if k in conv.attrs})


def recompute_large(nodes, outputs, shapes, consts=None, weights="fp32"):
    uses = _uses(nodes)
    for conv in [n for n in nodes if n.op == "FusedConv"]:
        x = conv.outputs[0]
        after = uses.get(x, [])
        size, in_shape = _stored_bytes(conv, shapes), _shape(shapes, conv.inputs[0])
        if size < RECOMPUTE_MIN_BYTES or not in_shape or 4 * int(np.prod(in_shape)) > size or conv.inputs[4] \
                or conv.attrs.get("src") or not after or not _fused_readers_only(x, uses, outputs):
            continue  # (recompute only from an input smaller even at float32 than the output stored)
        if any(i != 0 or n.attrs.get("src") for n, i in after):
            continue
        src = {k: conv.attrs[k] for k in _SRC_ATTRS if k in conv.attrs}
        for n, _ in after:
            if consts is not None and _is_plain_1x1(n) and conv.attrs["group"] == 1:
                _compose_1x1(n, conv, consts, weights)
                continue
            while len(n.inputs) < (5 if n.op == "FusedConv" else 3):
                n.inputs.append("")
            n.inputs[0] = conv.inputs[0]
            n.inputs.extend([conv.inputs[1], conv.inputs[2], conv.inputs[3]])
            n.attrs["src"] = src
        _keep_head(x, [n for n in nodes if any(n is r for r, _ in after) and n.attrs.get("src")], shapes)
        nodes.remove(conv)
    return nodes


def _keep_head(x, readers, shapes):
    """When a GroupNorm's statistics are the first read of a recomputed x and a conv the next, the statistics pass
    keeps x's first rows (float16, up to the size of that conv's output) and the conv reads them instead of
    recomputing them, freeing them as it goes: memory then never exceeds what the conv's end holds anyway."""
    if len(readers) < 2 or readers[0].op != "FusedGroupNormScale" or readers[1].op != "FusedConv":
        return
    stats, conv = readers[0], readers[1]
    stats.outputs.append(x + "/head")
    stats.attrs["keep_bytes"] = _stored_bytes(conv, shapes)
    conv.inputs.append(x + "/head")


def write_in_place(nodes, outputs, shapes):
    producer = {o: n for n in nodes for o in n.outputs if o}
    uses = _uses(nodes)
    last = {}
    for i, node in enumerate(nodes):
        for name in node.inputs:
            if name:
                last[name] = i
    dtype = lambda name: producer[name].attrs.get("out_dtype", "float32")  # noqa: E731

    def reusable(name, i, conv):
        p = producer.get(name)
        return (p is not None and p.op == "FusedConv" and last.get(name) == i and
                _fused_readers_only(name, uses, outputs) and dtype(name) == conv.attrs.get("out_dtype", "float32")
                and _shape(shapes, name) == _shape(shapes, conv.outputs[0]))

    for i, conv in enumerate(nodes):
        if conv.op != "FusedConv":
            continue
        x, r = conv.inputs[0], conv.inputs[4]
        if r and r != x and reusable(r, i, conv):
            conv.attrs["inplace"] = "residual"
        elif not conv.attrs.get("src") and conv.attrs.get("subpixel", 1) == 1 and \
                conv.attrs["strides"] == [1, 1] and conv.attrs["pads"][2] >= 0 and reusable(x, i, conv):
            conv.attrs["inplace"] = "input"
    return nodes


def drop_identity_arithmetic(nodes, outputs, shapes, consts):
    """x / 1, x * 1, x + 0, x - 0 with constant ones/zeros that do not broadcast x => x. The TorchScript exporter
    keeps diffusers' `(x + h) / output_scale_factor` (1.0) after every ResNet block, which would stand between a
    residual conv and the ops reading its output."""
    neutral = {"Mul": (1.0, (0, 1)), "Div": (1.0, (1,)), "Add": (0.0, (0, 1)), "Sub": (0.0, (1,))}
    renamed = {}
    kept = []
    for node in nodes:
        node.inputs = [renamed.get(n, n) for n in node.inputs]
        if node.op in neutral and len(node.inputs) == 2 and node.outputs[0] not in outputs:
            value, sides = neutral[node.op]
            for k in sides:
                c, x = consts.get(node.inputs[k]), node.inputs[1 - k]
                if c is not None and c.size and np.all(c == value) and x not in consts and \
                        _shape(shapes, x) is not None and _shape(shapes, x) == _shape(shapes, node.outputs[0]) and \
                        shapes[x][1] == shapes[node.outputs[0]][1]:
                    renamed[node.outputs[0]] = x
                    break
            if node.outputs[0] in renamed:
                continue
        kept.append(node)
    return kept


def fuse_convs(nodes, outputs, shapes, consts, weights="fp32"):
    nodes = drop_identity_arithmetic(list(nodes), outputs, shapes, consts)
    nodes = fuse_subpixel(nodes, outputs, shapes, consts, weights)
    nodes = fuse_norm_into_conv(nodes, outputs, shapes, consts)
    nodes = fuse_residual_add(nodes, outputs, shapes, consts)
    nodes = store_float16(nodes, outputs, shapes)
    nodes = recompute_large(nodes, outputs, shapes, consts, weights)
    return write_in_place(nodes, outputs, shapes)
