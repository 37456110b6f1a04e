"""ONNX model -> onnxstream model directory (graph.json + weights.bin). The only module that imports onnx.

Steps, top to bottom: load (with external data) -> check the opset -> fix input shapes -> fold constant
subgraphs with the runtime's own ops and ONNX shape inference -> drop dead nodes -> the rewrites of passes.PASSES,
in order -> list unsupported ops ->
write weights in first-read order (aligned, checksummed) and the graph, into a temp dir renamed at the end.
"""
from __future__ import annotations

import errno
import inspect
import os
import shutil
from pathlib import Path

import numpy as np

from .runtime.ops.common import contiguous

from . import _core, packing
from .passes import ConvertGraph, run_passes
from .graph import (ALIGN, WEIGHTS_FILE, Graph, ModelFormatError, Node, ValueInfo, Weight, all_nodes, load_graph,
                    reads, save_graph, subgraphs,
                    weights_header)
from .runtime.ops import OPS, op_kwargs
from .subgraphs import (fold_control_flow, import_subgraph, model_names, node_proto, prune_subgraphs,
                        read_by_subgraphs)

UPGRADE_TO = 13  # models of older opsets are upgraded to this one (onnx.version_converter) or run as they are
# Ops whose version_converter adapter (from below the given opset) changes the result, as onnxruntime computes it:
# Upsample and Resize-10 become a Resize with half-pixel instead of asymmetric coordinates; Hardmax-12 keeps its
# axis without the 2-D coercion. Models with these keep their opset (the ops implement the old definitions).
LOSSY_ADAPTERS = {"Upsample": 10, "Resize": 11, "Hardmax": 13, "Scan": 9}
# fp16: matrices, kernels and tables stored as float16 (stored_as_fp16). int8: GEMM/Conv weights packed at convert
# time become int8 with per-output-channel scales (packing.LAYOUT_QC8W); the other weights follow the fp16 rule.
WEIGHT_FORMATS = ("fp32", "fp16", "int8")
INLINE_BYTES = 256            # constants up to this size live in graph.json; larger ones are streamed weights
FOLD_GROWTH_LIMIT = 1 << 20   # don't fold a node whose output is over 1 MB and larger than its inputs (Expand etc.)
ROW_TABLE_BYTES = 1 << 20     # Gather tables above this are read row by row (token embeddings: 150 MB, 77 rows used)
ROW_BLOCK_BYTES = 1 << 16     # rows are checksummed in blocks of about this size
# Ops that take `axes` as an input only from opset 18 on (an opset-17 model using that form is invalid).
AXES_INPUT_FROM_18 = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
                      "ReduceLogSumExp", "ReduceSumSquare"}


class ConversionError(ValueError):
    """The model cannot be converted; the message says why and what to do."""


def _log(progress, msg):
    if progress:
        progress(msg)


# ---------------------------------------------------------------- public entry point

def convert(path: str | os.PathLike, out_dir: str | os.PathLike, weights: str = "fp32",
            input_shapes: dict[str, tuple] | None = None, overwrite: bool = False, progress=None,
            outputs: list[str] | None = None, calibration: list[dict] | None = None) -> Path:
    """Convert the ONNX model at `path` into the model directory `out_dir`; returns out_dir. `outputs`: keep only
    these of the model's outputs (and what computes them). `calibration`: inputs to measure the activations stored
    as float16 on (fp16_range.py); those beyond float16's range are stored scaled."""
    if weights not in WEIGHT_FORMATS:
        raise ConversionError(f"weights must be 'fp32', 'fp16' or 'int8', not '{weights}'")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ConversionError(f"{out_dir} already exists (pass overwrite=True / --force to replace it)")
    onnx = _import_onnx()
    if not Path(path).is_file():
        raise ConversionError(f"{path} does not exist")
    _log(progress, f"loading {path}")
    model = _load(onnx, Path(path))
    opset = _check_opset(onnx, model)
    if outputs is not None:
        _keep_outputs(model.graph, outputs)
    consts = _initializers(onnx, model.graph, Path(path).parent)
    if opset < UPGRADE_TO:
        model, opset = _upgrade(onnx, model, opset, consts, progress)
    graph_proto = model.graph
    inputs = _graph_inputs(onnx, graph_proto, consts, input_shapes or {})
    taken = model_names(graph_proto)
    subgraph = lambda g: import_subgraph(onnx, g, consts, {}, taken, _node)  # noqa: E731
    nodes = [_node(onnx, n, i, subgraph=subgraph) for i, n in enumerate(graph_proto.node)]
    _explicit_softmax_axis(all_nodes(nodes), opset)
    outputs = [o.name for o in graph_proto.output]
    _log(progress, f"folding constants ({len(nodes)} nodes)")
    nodes, shapes = _fold(onnx, model, opset, inputs, nodes, consts, outputs)
    nodes = _prune(nodes, outputs)
    shapes = {**{v.name: (v.shape, v.dtype) for v in inputs}, **shapes}
    kept = outputs + read_by_subgraphs(nodes)  # the rewrites keep what subgraphs read, like graph outputs
    nodes = run_passes(ConvertGraph(nodes, kept, shapes, consts, weights)).nodes
    _check_supported(nodes)
    graph = _build_graph(onnx, model, opset, inputs, nodes, consts, outputs, shapes, weights)
    if calibration:
        from .fp16_range import calibrate
        calibrate(graph, consts, calibration, lambda g, d: _write(g, consts, d, True, weights), progress)
    _log(progress, f"writing {out_dir} ({len(graph.nodes)} nodes, {len(graph.weights)} weight tensors)")
    _write(graph, consts, out_dir, overwrite, weights)
    return out_dir


def _keep_outputs(graph_proto, names) -> None:
    have = [o.name for o in graph_proto.output]
    if set(names) - set(have):
        raise ConversionError(f"outputs {sorted(set(names) - set(have))} are not outputs of the model; it has {have}")
    kept = [o for o in graph_proto.output if o.name in names]
    del graph_proto.output[:]
    graph_proto.output.extend(kept)


def _import_onnx():
    try:
        import onnx
        import onnx.numpy_helper
        import onnx.shape_inference
    except ImportError:
        raise ConversionError("converting needs the onnx package: pip install 'onnxstream[convert]'") from None
    return onnx


def _load(onnx, path: Path):
    """The graph without its external data: _initializers maps those weights from their file instead."""
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf decode errors have no common base class
        raise ConversionError(f"{path} is not a readable ONNX model: {e}") from None


def _check_opset(onnx, model) -> int:
    versions = {o.domain or "": o.version for o in model.opset_import}
    opset = versions.get("", versions.get("ai.onnx"))
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        raise ConversionError("the model imports no default ONNX opset")
    if opset > newest:
        raise ConversionError(f"the model uses opset {opset}, newer than the installed onnx package knows "
                              f"({newest}); upgrade onnx")
    if opset < 18:
        bad = [n for n in model.graph.node
               if (n.op_type == "Split" and any(a.name == "num_outputs" for a in n.attribute))
               or (n.op_type in AXES_INPUT_FROM_18 and len(n.input) > 1)]
        if bad:
            raise ConversionError(
                f"the model declares opset {opset} but node '{bad[0].name}' ({bad[0].op_type}) uses the opset-18 "
                f"form ({len(bad)} such nodes): the file is invalid. The torch.onnx dynamo exporter writes such "
                f"models when asked for opset < 18; export with opset_version=18 (its default) or with dynamo=False")
    return opset


def _upgrade(onnx, model, opset: int, consts: dict, progress):
    """The model upgraded to opset UPGRADE_TO by onnx.version_converter, or, where it cannot be, the model as it
    is: the ops then follow their older definitions (the runtime's ops read the opset where those differ).
    The converter sees the initializers as typed inputs: it needs no weights, and a model over 2 GB could not be
    serialized for it. Initializers its adapters add (attributes that became inputs) join consts."""
    import onnx.version_converter
    lossy = sorted({n.op_type for n in model.graph.node if opset < LOSSY_ADAPTERS.get(n.op_type, 0)})
    if lossy:
        _log(progress, f"onnx.version_converter would change what {', '.join(lossy)} compute; converting opset "
                       f"{opset} as it is")
        return model, opset
    light = onnx.ModelProto()
    light.CopyFrom(model)
    del light.graph.initializer[:]
    declared = {i.name for i in light.graph.input}
    light.graph.input.extend(onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(a.dtype),
                                                                a.shape) for name, a in consts.items()
                             if name not in declared)
    try:
        upgraded = onnx.version_converter.convert_version(light, UPGRADE_TO)
    except Exception as e:  # the converter raises RuntimeError or its own C++ assertion types
        _log(progress, f"onnx.version_converter cannot upgrade opset {opset} to {UPGRADE_TO} "
                       f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); converting opset {opset} as it is")
        return model, opset
    _log(progress, f"upgraded opset {opset} to {UPGRADE_TO} with onnx.version_converter")
    consts.update(_initializers(onnx, upgraded.graph, None))
    return upgraded, UPGRADE_TO


# ---------------------------------------------------------------- ONNX protos -> plain Python values

def _initializers(onnx, graph_proto, base_dir: Path | None) -> dict[str, np.ndarray]:
    consts = {}
    for t in graph_proto.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            consts[t.name] = _map_external(onnx, t, base_dir)
        else:
            consts[t.name] = onnx.numpy_helper.to_array(t)
            t.ClearField("raw_data")  # the numpy copy is the one we keep
    return consts


def _map_external(onnx, t, base_dir: Path) -> np.ndarray:
    """A weight stored as external data, memory-mapped read-only: converting a 10 GB export (SDXL's UNet in
    float32) holds in memory only what it is writing, not the whole model."""
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    file = (base_dir / location).resolve()
    if not location or Path(location).is_absolute() or base_dir.resolve() not in file.parents:
        raise ConversionError(f"weight '{t.name}' refers to external data outside the model's folder: {location!r}")
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
    shape, offset = tuple(int(d) for d in t.dims), int(info.get("offset", 0))
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if not file.is_file() or file.stat().st_size < offset + nbytes or int(info.get("length", nbytes)) < nbytes:
        raise ConversionError(f"the model refers to external weight data that is missing: {nbytes} bytes of "
                              f"'{t.name}' at offset {offset} in {file}")
    if nbytes == 0:
        return np.zeros(shape, dtype)
    return np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=shape)


def _dims(onnx, type_proto) -> list:
    """Fixed sizes as ints; None for a dynamic axis: a symbolic name, no value, or a negative one (Paddle's -1)."""
    return [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
            for d in type_proto.tensor_type.shape.dim]


def _elem_dtype(onnx, type_proto) -> str:
    elem = type_proto.tensor_type.elem_type
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).name
    except Exception:
        raise ConversionError(f"unsupported tensor element type {elem}") from None


def _graph_inputs(onnx, graph_proto, consts, overrides) -> list[ValueInfo]:
    inputs = []
    names = [i.name for i in graph_proto.input if i.name not in consts]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ConversionError(f"--input names {unknown} are not inputs of the model; its inputs are {names}")
    for i in graph_proto.input:
        if i.name in consts:
            continue
        if not i.type.HasField("tensor_type"):
            raise ConversionError(f"input '{i.name}' is not a tensor; only tensor inputs are supported")
        dims = _dims(onnx, i.type)
        if i.name in overrides:
            want = list(overrides[i.name])
            if len(want) != len(dims) or any(d is not None and d != w for d, w in zip(dims, want)):
                raise ConversionError(f"--input {i.name}={'x'.join(map(str, want))} does not fit the model's "
                                      f"shape {['?' if d is None else d for d in dims]}")
            dims = want
        if any(d is None for d in dims):
            shown = "x".join("?" if d is None else str(d) for d in dims)
            raise ConversionError(f"input '{i.name}' has dynamic dimensions ({shown}); fix them with "
                                  f"--input {i.name}=" + "x".join("N" if d is None else str(d) for d in dims))
        inputs.append(ValueInfo(i.name, dims, _elem_dtype(onnx, i.type)))
    return inputs


def _attr_value(onnx, attr, subgraph=None):
    if attr.type == onnx.AttributeProto.GRAPH and subgraph is not None:
        return subgraph(attr.g)  # If/Loop/Scan bodies: nested Graphs (subgraphs.py)
    v = onnx.helper.get_attribute_value(attr)
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, onnx.TensorProto):
        return onnx.numpy_helper.to_array(v)
    if isinstance(v, list):
        if v and isinstance(v[0], bytes):
            return [s.decode("utf-8") for s in v]
        if v and not isinstance(v[0], (int, float)):
            raise _UnsupportedAttr(attr.name)
        return list(v)
    if not isinstance(v, (int, float)):
        raise _UnsupportedAttr(attr.name)  # lists of graphs, sparse tensors, type protos
    return v


class _UnsupportedAttr(Exception):
    pass


def _node(onnx, n, index: int, names: dict | None = None, subgraph=None) -> Node:
    """One ONNX node; names maps the ONNX names of inputs to ours (in subgraphs), subgraph(GraphProto) -> Graph."""
    attrs = {}
    unsupported = None
    for a in n.attribute:
        try:
            attrs[a.name] = _attr_value(onnx, a, subgraph)
        except _UnsupportedAttr:
            unsupported = a.name
    op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
    inputs = [names.get(i, i) for i in n.input] if names else list(n.input)
    node = Node(op, n.name or f"{n.op_type}_{index}", inputs, list(n.output), attrs)
    if unsupported:
        node.attrs["__unsupported_attr__"] = unsupported
    return node


def _explicit_softmax_axis(nodes: list[Node], opset: int) -> None:
    """Softmax, LogSoftmax and Hardmax default to axis 1 before opset 13 and to -1 since: the passes, which do
    not know the opset, see the axis written out."""
    for node in nodes:
        if node.op in ("Softmax", "LogSoftmax", "Hardmax") and "axis" not in node.attrs:
            node.attrs["axis"] = -1 if opset >= 13 else 1


# ---------------------------------------------------------------- constant folding with shape inference

def _infer_shapes(onnx, model, opset, inputs, nodes, consts, outputs) -> dict[str, tuple[list, str]]:
    """ONNX shape inference on the current graph, with large constants passed as typed inputs (no data)."""
    helper = onnx.helper
    graph_inputs = [helper.make_tensor_value_info(v.name, onnx.helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype)),
                                                  v.shape) for v in inputs]
    inits = []
    for name, a in consts.items():
        if a.nbytes <= 1 << 14 or (a.dtype == np.int64 and a.nbytes <= 1 << 20):  # data shape inference may read
            inits.append(onnx.numpy_helper.from_array(a, name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape))
    protos = [node_proto(onnx, n) for n in nodes]
    for p in protos:
        _subgraph_constants(onnx, p, consts)
    g = helper.make_graph(protos, "g", graph_inputs, [helper.make_empty_tensor_value_info(o) for o in outputs], inits)
    m = helper.make_model(g, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    try:
        m = onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    except Exception:
        return {}  # inference is an aid to folding; the runtime computes shapes itself
    shapes = {v.name: (v.shape, v.dtype) for v in inputs}   # (Shape of an input folds when its dims are fixed)
    for vi in _value_infos(m.graph):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            try:
                shapes[vi.name] = (_dims(onnx, vi.type), _elem_dtype(onnx, vi.type))
            except ConversionError:
                pass
    return shapes


def _subgraph_constants(onnx, node_proto, consts) -> None:
    """Give each subgraph the small constants its nodes read as initializers of its own: ONNX's inference does not
    read the data of an enclosing graph's initializers, so a subgraph's Pad or Reshape by a folded constant would
    lose every shape after it."""
    for a in node_proto.attribute:
        for sub in [a.g] if a.HasField("g") else a.graphs:
            have = {t.name for t in sub.initializer}
            read = {i for n in sub.node for i in n.input if i in consts and i not in have}
            sub.initializer.extend(onnx.numpy_helper.from_array(consts[i], i) for i in sorted(read)
                                   if consts[i].nbytes <= 1 << 14)
            for n in sub.node:
                _subgraph_constants(onnx, n, consts)


def _value_infos(g):
    """The inferred value infos of g and of the If branches in it (names are unique across the model). Not of
    Loop/Scan bodies: a body's declared input shapes hold for its first iteration only when the model is loose
    about a carried value that grows, and a shape folded from them would be silently wrong later."""
    yield from g.value_info
    yield from g.output
    for n in g.node:
        if n.op_type == "If":
            for a in n.attribute:
                if a.HasField("g"):
                    yield from _value_infos(a.g)


def _evaluate(node: Node, args: list, opset: int):
    result = OPS[node.op](*args, **op_kwargs(node.op, node.attrs, len(node.outputs), opset))
    return tuple(np.asarray(r) for r in result) if isinstance(result, tuple) else (np.asarray(result),)


def _fold(onnx, model, opset, inputs, nodes, consts, outputs):
    """Replace every node computable at convert time by its result. Iterates with shape inference, since
    folding Shape nodes makes Reshape targets constant, which makes more shapes static."""
    shapes = {}
    for _ in range(8):
        nodes = _prune(nodes, outputs)  # a dead node's fold can neither help nor fail the model
        shapes = _infer_shapes(onnx, model, opset, inputs, nodes, consts, outputs)
        kept = []
        for node in nodes:
            folded = None if subgraphs(node) else _try_fold(node, consts, shapes, opset)
            if folded is None:
                kept.append(node)
            else:
                consts.update(folded)
        # An If with a constant condition becomes its branch; subgraph nodes reading only constants fold.
        kept, inlined = fold_control_flow(kept, consts, lambda n: _try_fold(n, consts, shapes, opset))
        changed = len(kept) != len(nodes) or inlined
        nodes = kept
        if not changed:
            break
    return nodes, shapes


# Ops whose every run differs: never folded.
RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


def _try_fold(node: Node, consts, shapes, opset):
    """The node's outputs if it can be computed now, else None. Nodes left to the runtime: ops or attributes
    onnxstream lacks (_check_supported lists them), random ops, inputs not known yet, outputs too large to store.
    A node with constant inputs that fails here would fail the same way on every run, so that is reported now,
    with its name; so is a result whose dtype differs from ONNX's (a bug in the op, not in the model)."""
    if node.op not in OPS or not node.outputs or node.op in RANDOM_OPS or _unsupported_attrs(node):
        return None
    if node.op in ("Shape", "Size") and node.inputs[0] not in consts:
        dims, _ = shapes.get(node.inputs[0], (None, None))
        if dims is None or any(d is None for d in dims):
            return None
        # Only the shape is read: a zero-stride array of that shape costs no memory.
        args = [np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), dims, [0] * len(dims))]
    elif all(not n or n in consts for n in node.inputs):
        args = [consts[n] if n else None for n in node.inputs]
    else:
        return None
    try:
        with np.errstate(all="ignore"):  # IEEE results (inf, nan) are values here, not warnings
            results = _evaluate(node, args, opset)
    except Exception as e:
        described = ", ".join("none" if a is None else f"{a.dtype}{list(a.shape)}" for a in args)
        raise ConversionError(f"{node.op} node '{node.name}' fails on its constant inputs ({described}): "
                              f"{type(e).__name__}: {e}") from None
    for name, r in zip(node.outputs, results):
        want = shapes.get(name, (None, None))[1]
        if name and want is not None and r.dtype.name != want:
            raise ConversionError(f"internal error: {node.op} node '{node.name}' computed {r.dtype.name} for "
                                  f"'{name}', which ONNX types {want}; please report this onnxstream bug")
    in_bytes = sum(a.nbytes for a in args if isinstance(a, np.ndarray) and node.op not in ("Shape", "Size"))
    out_bytes = sum(np.asarray(r).nbytes for r in results)
    if out_bytes > FOLD_GROWTH_LIMIT and out_bytes > in_bytes:
        return None
    return {name: contiguous(r) for name, r in zip(node.outputs, results) if name}


def _prune(nodes: list[Node], outputs: list[str]) -> list[Node]:
    needed = set(outputs)
    kept = []
    for node in reversed(nodes):
        if any(o in needed for o in node.outputs if o):
            kept.append(node)
            needed.update(reads(node))
    prune_subgraphs(kept)
    return kept[::-1]


def _unsupported_attrs(node: Node) -> list[str]:
    """Attributes of the node that OPS[node.op] does not take (or that could not be read)."""
    bad = node.attrs.get("__unsupported_attr__")
    params = inspect.signature(OPS[node.op]).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return [bad] if bad else []
    return ([bad] if bad else []) + [a for a in node.attrs if a not in params and not a.startswith("__")]


def _check_supported(nodes: list[Node], problems: dict | None = None, path: str = "") -> None:
    """Every op, also inside subgraphs (named by path: "If_1/then_branch/LSTM_0"), and its attributes."""
    top = problems is None
    problems = {} if top else problems
    for node in nodes:
        for attr, value in node.attrs.items():
            if isinstance(value, Graph):
                _check_supported(value.nodes, problems, f"{path}{node.name}/{attr}/")
        if node.op not in OPS:
            problems.setdefault(node.op, []).append(path + node.name)
            continue
        bad = _unsupported_attrs(node)
        if bad:
            problems.setdefault(f"{node.op} (attribute {bad[0]})", []).append(path + node.name)
    if top and problems:
        lines = [f"  {op}: {', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''}"
                 for op, names in sorted(problems.items())]
        raise ConversionError("the model uses ops onnxstream does not support:\n" + "\n".join(lines))


# ---------------------------------------------------------------- writing the model directory

def _build_graph(onnx, model, opset, inputs, nodes, consts, outputs, shapes, weights_format) -> Graph:
    top, nodes = nodes, all_nodes(nodes)  # how weights are read: in subgraphs too
    used = []
    seen = set()
    for node in nodes:
        for name in node.inputs + [o.name for g in subgraphs(node) for o in g.outputs]:
            if name in consts and name not in seen:
                seen.add(name)
                used.append(name)
    for name in outputs:
        if name in consts and name not in seen:
            seen.add(name)
            used.append(name)
    gather_only = _gather_tables(nodes)
    gemm_operands = packing.packable(nodes)
    row_tiled = {n for node in nodes if node.op == "FusedRowTiled" for n in node.inputs[1:]}  # read whole per tile
    row_tiled |= {node.inputs[5] for node in nodes if node.op == "FusedConv" and len(node.inputs) > 5}  # per band
    # A fused conv prepares its input rows once per column block: fewer, bigger blocks where the input outweighs
    # the weight (SD's VAE at 128^2), the usual ones where the weight dominates (the UNet's 8x8 level).
    fused_conv_w = {node.inputs[1] for node in nodes if node.op == "FusedConv" and
                    _elements(shapes, node.inputs[0]) >= consts[node.inputs[1]].size}
    constants, weights = {}, []
    for name in used:
        a = consts[name]
        if a.nbytes <= INLINE_BYTES or name in outputs:
            constants[name] = a
        else:
            store = np.float16 if weights_format in ("fp16", "int8") and stored_as_fp16(a) else a.dtype
            w = Weight(name, np.dtype(store).name, list(a.shape))
            if name in gather_only and a.nbytes > ROW_TABLE_BYTES and a.ndim >= 1 and a.shape[0] > 1:
                row_bytes = a.nbytes // a.shape[0] * np.dtype(store).itemsize // a.dtype.itemsize
                w.rows_per_block = max(1, ROW_BLOCK_BYTES // max(row_bytes, 1))
            if name in gemm_operands:
                int8 = weights_format == "int8" and \
                    packing.int8_column_error(a, gemm_operands[name]) <= packing.INT8_MAX_COLUMN_ERROR
                packing.mark(w, gemm_operands[name], int8=int8)
                if name not in row_tiled:
                    packing.split_columns(w, 4 * packing.COLUMN_BLOCK_BYTES if name in fused_conv_w else 0)
            weights.append(w)
    out_infos = []
    for o in model.graph.output:
        if o.type.WhichOneof("value") not in (None, "tensor_type"):
            raise ConversionError(f"output '{o.name}' is not a tensor ({o.type.WhichOneof('value')}); "
                                  f"only tensor outputs are supported")
        dims, dtype = shapes.get(o.name, (None, None))
        if o.name in consts:
            dims, dtype = list(consts[o.name].shape), consts[o.name].dtype.name
        if dtype is None:
            dims, dtype = _dims(onnx, o.type), _elem_dtype(onnx, o.type)
        out_infos.append(ValueInfo(o.name, dims, dtype))
    meta = {"producer": f"{model.producer_name} {model.producer_version}".strip(), "weights": weights_format}
    return Graph(inputs, out_infos, top, constants, weights, opset, meta)


def _elements(shapes, name) -> int:
    dims = shapes.get(name, (None,))[0]
    return int(np.prod(dims)) if dims and all(isinstance(d, int) for d in dims) else 0


def stored_as_fp16(a: np.ndarray) -> bool:
    """With --weights fp16: which float32 tensors are stored as float16. Matrices, convolution kernels and
    embedding tables are; biases and per-channel scales ([C], [C, 1, 1]) stay float32: they are small and
    normalization is sensitive to them. So do tensors float16 cannot hold (CLIP's causal mask of float32 minimums
    would become -inf)."""
    return a.dtype == np.float32 and a.nbytes > INLINE_BYTES and sum(d > 1 for d in a.shape) >= 2 and \
        bool(np.all(np.abs(a) <= np.finfo(np.float16).max))


def _gather_tables(nodes: list[Node]) -> set[str]:
    """Names only ever read as the table (input 0, axis 0) of Gather nodes: those can be read row by row."""
    tables, other = set(), set()
    for node in nodes:
        for i, name in enumerate(node.inputs):
            if node.op == "Gather" and i == 0 and node.attrs.get("axis", 0) == 0:
                tables.add(name)
            else:
                other.add(name)
    return tables - other


def remove_stale_temp_dirs(out_dir: Path) -> None:
    """Temp dirs of conversions into out_dir whose process is gone (killed: nothing could clean up)."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):
        pid = stale.name.rsplit(".tmp-", 1)[1].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(stale, ignore_errors=True)
            except PermissionError:  # alive, someone else's
                pass


def _write(graph: Graph, consts, out_dir: Path, overwrite: bool, weights_format: str) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        with open(tmp / WEIGHTS_FILE, "wb") as f:
            f.write(weights_header(len(graph.weights)))
            for w in graph.weights:
                if w.layout:  # packing casts (fp16) or quantizes (int8) the ONNX tensor itself
                    data = consts[w.name]
                else:
                    data = contiguous(consts[w.name].astype(np.dtype(w.dtype), copy=False))
                pos = f.tell()
                pad = (-pos) % ALIGN
                f.write(b"\0" * pad)
                w.offset = pos + pad
                if w.layout:
                    blocks = packing.pack(data, w)
                    w.nbytes = sum(b.nbytes for b in blocks)
                    hashes = [int(_core.xxh64(b.view(np.uint8))) for b in blocks]
                    w.hash, w.block_hashes = (0, hashes) if w.cols_per_block else (hashes[0], [])
                    for b in blocks:
                        f.write(memoryview(b.view(np.uint8)))
                    continue
                w.nbytes = data.nbytes
                w.hash = int(_core.xxh64(data.reshape(-1).view(np.uint8)))
                if w.rows_per_block:
                    blocks = data.reshape(data.shape[0], -1)
                    w.block_hashes = [int(_core.xxh64(contiguous(blocks[r:r + w.rows_per_block]).view(np.uint8)))
                                      for r in range(0, data.shape[0], w.rows_per_block)]
                f.write(memoryview(data.reshape(-1).view(np.uint8)))
            f.flush()
            os.fsync(f.fileno())
        save_graph(graph, tmp)
        try:  # the runtime's format check: a malformed ONNX graph (a cycle, negative pads) fails here, not later
            load_graph(tmp)
        except ModelFormatError as e:
            raise ConversionError(f"the model is malformed: {e}") from None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old)
        else:
            tmp.rename(out_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise ConversionError(f"no space left on the device of {out_dir.parent} for the converted model "
                                  f"({sum(w.nbytes for w in graph.weights) / 1e6:.1f} MB of weights); nothing was "
                                  f"written") from None
        raise


def parse_input_shape(text: str) -> tuple[str, tuple]:
    """'name=1x4x64x64' -> ('name', (1, 4, 64, 64)); 'name=' or 'name=scalar' for a scalar."""
    name, sep, dims = text.partition("=")
    if not sep or not name:
        raise ConversionError(f"--input expects NAME=DIMS such as sample=2x4x64x64, got '{text}'")
    if dims in ("", "scalar"):
        return name, ()
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        raise ConversionError(f"--input {text}: dimensions must be integers joined by 'x'") from None
    if any(d < 0 for d in shape):
        raise ConversionError(f"--input {text}: dimensions must not be negative; give the size a dynamic axis "
                              f"(shown as ? or -1 in the model) should have, such as {name}=1x3x224x224")
    return name, shape

