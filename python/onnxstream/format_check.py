"""Validation of a model directory's graph.json document and weights.bin before any of it is used.

Model directories are shared and downloaded like any other file, so they are untrusted input to the C++ core:
every field graph.py reads is checked here, once, and a bad one raises ModelFormatError naming it
(e.g. `graph.json: weights[3] ('conv.weight').nbytes`). What is checked:
  - the document's structure: every object has exactly its known keys, of the right JSON types;
  - values: dtypes and layouts known, shapes non-negative integers (products cannot overflow: Python ints),
    names unique, integers within int64;
  - weights.bin: header (magic, version, alignment, tensor count), each tensor's bytes inside the file and apart
    from the others, nbytes == shape x dtype size (the packed size for the GEMM panel layouts, the sum of the column
    blocks when stored in blocks), column-block and row-block tables consistent with their checksums;
  - constants: base64 that decodes to exactly shape x dtype size bytes;
  - the graph: op names known, attributes ones the op takes (structured ones checked field by field), the window
    and size attributes in range, every input defined before the node that reads it (so no cycles), every value
    produced once, every graph output produced.
C++ checks again what it reads (cpp/stream/reader.cc, the ops' shape checks), so a mistake here is not a hole.
"""
from __future__ import annotations

import base64
import binascii
import inspect
import math
import os

from .graph import (ALIGN, FORMAT_VERSION, HEADER_BYTES, LAYOUT, LAYOUT_QC8W, WEIGHTS_MAGIC, ModelFormatError)

DTYPE_SIZES = {"float32": 4, "float16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2,
               "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1}
LAYOUTS = ("", LAYOUT, LAYOUT_QC8W)
INT64 = 1 << 63
MAX_RANK = 32          # numpy allows 64; no ONNX model comes near
PANEL = 16             # columns per packed panel (cpp/kernels/microkernels.h kPanelWidth)
# Smallest value of each element of these attributes (ONNX semantics; C++ checks them again). FusedConv's pads
# may be negative (its band arithmetic crops), so "pads" is checked for the ONNX ops only.
ATTR_MINIMUM = {"kernel_shape": 1, "strides": 1, "dilations": 1, "group": 1, "num_groups": 1, "subpixel": 1,
                "rows": 1, "output_padding": 0, "output_shape": 0, "offsets_h": 0, "offsets_w": 0, "keep_bytes": 0}
PADS_MINIMUM_OPS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"}
# Attributes that hold structure rather than ONNX values: checked by their own functions below.
SUBGRAPH_ATTRS = {("FusedRowTiled", "nodes")}
SRC_ATTRS = {("FusedConv", "src"), ("FusedGroupNormScale", "src")}


def fail(where: str, problem: str):
    raise ModelFormatError(f"{where}: {problem}")


# ---------------------------------------------------------------- JSON values

def _obj(v, where, keys, optional=()):
    if not isinstance(v, dict):
        fail(where, f"must be an object, got {type(v).__name__}")
    unknown = sorted(set(v) - set(keys) - set(optional))
    if unknown:
        fail(f"{where}.{unknown[0]}", "is not a field of this format version")
    missing = [k for k in keys if k not in v]
    if missing:
        fail(f"{where}.{missing[0]}", "is missing")
    return v


def _map(v, where):
    if not isinstance(v, dict):
        fail(where, f"must be an object, got {type(v).__name__}")
    return v


def _int(v, where, minimum=None):
    if not isinstance(v, int) or isinstance(v, bool):
        fail(where, f"must be an integer, got {v!r:.40}")
    if not -INT64 <= v < INT64:
        fail(where, f"{v} does not fit in 64 bits")
    if minimum is not None and v < minimum:
        fail(where, f"{v} must be >= {minimum}")
    return v


def _u64(v, where):
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
        fail(where, f"must be an unsigned 64-bit integer, got {v!r:.40}")
    return v


def _str(v, where, nonempty=False):
    if not isinstance(v, str):
        fail(where, f"must be a string, got {type(v).__name__}")
    if nonempty and not v:
        fail(where, "must not be empty")
    return v


def _list(v, where):
    if not isinstance(v, list):
        fail(where, f"must be a list, got {type(v).__name__}")
    return v


def _dtype(v, where):
    if v not in DTYPE_SIZES:
        fail(where, f"unknown dtype {v!r:.40} (known: {', '.join(DTYPE_SIZES)})")
    return v


def _shape(v, where, unknown_ok=False):
    _list(v, where)
    if len(v) > MAX_RANK:
        fail(where, f"has {len(v)} dimensions, more than {MAX_RANK}")
    for i, d in enumerate(v):
        if d is None and unknown_ok:
            continue
        _int(d, f"{where}[{i}]", minimum=0)
    return v


def _nbytes(shape, dtype) -> int:
    return math.prod(shape) * DTYPE_SIZES[dtype]  # Python ints: no overflow


# ---------------------------------------------------------------- arrays, value infos, weights

def check_array(v, where) -> None:
    """An array encoded in JSON (graph.encode_array): known dtype, shape, base64 of exactly its bytes."""
    _obj(v, where, ("dtype", "shape", "data"))
    _dtype(v["dtype"], f"{where}.dtype")
    _shape(v["shape"], f"{where}.shape")
    _str(v["data"], f"{where}.data")
    want = _nbytes(v["shape"], v["dtype"])
    if len(v["data"]) > 4 * (want + 2) // 3 + 4:  # before decoding: a huge shape or blob fails cheaply
        fail(f"{where}.data", f"is longer than the {want} bytes its shape needs")
    try:
        raw = base64.b64decode(v["data"], validate=True)
    except (binascii.Error, ValueError) as e:
        fail(f"{where}.data", f"is not base64 ({e})")
    if len(raw) != want:
        fail(f"{where}.data", f"holds {len(raw)} bytes, its shape {v['shape']} of {v['dtype']} needs {want}")


def _value_info(v, where, subgraph=False):
    """A graph input or output; a subgraph's may have unknown rank (shape None) and dtype ("": or a sequence)."""
    _obj(v, where, ("name", "shape", "dtype"))
    _str(v["name"], f"{where}.name", nonempty=True)
    if not (subgraph and v["shape"] is None):
        _shape(v["shape"], f"{where}.shape", unknown_ok=True)
    if not (subgraph and v["dtype"] == ""):
        _dtype(v["dtype"], f"{where}.dtype")


WEIGHT_KEYS = ("name", "dtype", "shape", "offset", "nbytes", "hash")
WEIGHT_OPTIONAL = ("rows_per_block", "block_hashes", "layout", "k", "n", "transposed", "cols_per_block")


def qc8w_blob_bytes(k: int, n: int) -> int:
    """cpp/ops/qc8w.h: ceil(n/16) panels of [k][16] int8, then the scales, float32, padded to 16."""
    panels = -(-n // PANEL) * PANEL
    return panels * k + panels * 4


def packed_bytes(w: dict, n0: int, n1: int) -> int:
    """Stored bytes of columns [n0, n1) of a packed weight (graph.block_nbytes, without trusting _core)."""
    groups = math.prod(w["shape"]) // (w["k"] * w["n"])  # Conv: its groups; LSTM/GRU/RNN: directions x gates
    cols = n1 - n0
    if w["layout"] == LAYOUT_QC8W:
        return qc8w_blob_bytes(w["k"], cols) * groups
    return -(-cols // PANEL) * PANEL * w["k"] * DTYPE_SIZES[w["dtype"]] * groups


def _weight(w, where):
    _obj(w, where, WEIGHT_KEYS, WEIGHT_OPTIONAL)
    where = f"{where} ({_str(w['name'], f'{where}.name', nonempty=True)!r:.60})"
    dtype, shape = _dtype(w["dtype"], f"{where}.dtype"), _shape(w["shape"], f"{where}.shape")
    _int(w["offset"], f"{where}.offset", minimum=HEADER_BYTES)
    nbytes = _int(w["nbytes"], f"{where}.nbytes", minimum=0)
    _u64(w["hash"], f"{where}.hash")
    layout = w.get("layout", "")
    if layout not in LAYOUTS:
        fail(f"{where}.layout", f"unknown layout {layout!r:.40} (known: {', '.join(repr(x) for x in LAYOUTS)})")
    rows_per_block = _int(w.get("rows_per_block", 0), f"{where}.rows_per_block", minimum=0)
    cols_per_block = _int(w.get("cols_per_block", 0), f"{where}.cols_per_block", minimum=0)
    hashes = _list(w.get("block_hashes", []), f"{where}.block_hashes")
    for i, h in enumerate(hashes):
        _u64(h, f"{where}.block_hashes[{i}]")
    if not isinstance(w.get("transposed", False), bool):
        fail(f"{where}.transposed", "must be true or false")
    k, n = _int(w.get("k", 0), f"{where}.k", minimum=0), _int(w.get("n", 0), f"{where}.n", minimum=0)
    if not layout:
        if k or n or cols_per_block or w.get("transposed", False):
            fail(f"{where}.layout", "k, n, transposed and cols_per_block describe a packed layout; layout is ''")
        if nbytes != _nbytes(shape, dtype):
            fail(f"{where}.nbytes", f"{nbytes} != {_nbytes(shape, dtype)}, the bytes of shape {shape} of {dtype}")
        if rows_per_block:
            if not shape or shape[0] < 1:
                fail(f"{where}.rows_per_block", "a table read row by row needs at least one row")
            blocks = -(-shape[0] // rows_per_block)
            if len(hashes) != blocks:
                fail(f"{where}.block_hashes", f"has {len(hashes)} checksums for {blocks} blocks of "
                                              f"{rows_per_block} rows")
        elif hashes:
            fail(f"{where}.block_hashes", "given for a tensor stored in one piece")
        return
    # Packed: shape is the ONNX tensor's, (k, n) its GEMM operand (per group for Conv).
    wanted = "int8" if layout == LAYOUT_QC8W else ("float32", "float16")
    if dtype not in wanted:
        fail(f"{where}.dtype", f"{dtype} is not a dtype of layout {layout!r} ({wanted})")
    if rows_per_block:
        fail(f"{where}.rows_per_block", "a packed weight is not read row by row")
    if k < 1 or n < 1:
        fail(f"{where}.k" if k < 1 else f"{where}.n", "a packed weight needs k >= 1 and n >= 1")
    if len(shape) == 2:
        operand = [shape[1], shape[0]] if w.get("transposed", False) else shape
        if [k, n] != operand:
            fail(f"{where}.k", f"(k, n) = ({k}, {n}) is not the [K, N] operand of shape {shape}")
    elif len(shape) >= 3:
        conv = k == math.prod(shape[1:]) and shape[0] % n == 0            # [M, C/group, *kernel], per group
        rnn = len(shape) == 3 and k == shape[2] and shape[1] % n == 0     # [directions, gates*H, input], per gate
        if not (conv or rnn):
            fail(f"{where}.k", f"(k, n) = ({k}, {n}) fits neither a conv weight shape {shape} (k = prod(shape[1:]), "
                               f"n divides shape[0]) nor a recurrent one (k = shape[2], n divides shape[1])")
    else:
        fail(f"{where}.shape", f"a packed weight has 2 (GEMM) or >= 3 (Conv) dimensions, got {shape}")
    if cols_per_block:
        if cols_per_block % PANEL or (len(shape) >= 3 and shape[0] != n):
            fail(f"{where}.cols_per_block", f"{cols_per_block} must be a multiple of {PANEL} of a single-group "
                                            f"weight")
        blocks = [(n0, min(n, n0 + cols_per_block)) for n0 in range(0, n, cols_per_block)]
        if len(hashes) != len(blocks):
            fail(f"{where}.block_hashes", f"has {len(hashes)} checksums for {len(blocks)} column blocks")
        want = sum(packed_bytes(w, n0, n1) for n0, n1 in blocks)
    else:
        if hashes:
            fail(f"{where}.block_hashes", "given for a weight stored in one piece")
        want = packed_bytes(w, 0, n)
    if nbytes != want:
        fail(f"{where}.nbytes", f"{nbytes} != {want}, the packed size of layout {layout!r} for (k, n) = ({k}, {n})"
                                f"{f' in column blocks of {cols_per_block}' if cols_per_block else ''}")


def check_weights_file(weights, path) -> None:
    """The header of weights.bin and every tensor's byte range against its real size."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise ModelFormatError(f"cannot read {path}: {e}") from None
    if len(head) < HEADER_BYTES or head[:8] != WEIGHTS_MAGIC:
        fail(str(path), "is not an onnxstream weights file (bad header)")
    version, align, count = (int.from_bytes(head[8:12], "little"), int.from_bytes(head[12:16], "little"),
                             int.from_bytes(head[16:24], "little"))
    if version != FORMAT_VERSION or align != ALIGN:
        fail(str(path), f"header says format {version}, alignment {align}; this onnxstream reads {FORMAT_VERSION}, "
                        f"{ALIGN}")
    if count != len(weights):
        fail(str(path), f"header counts {count} tensors, graph.json lists {len(weights)}")
    end = HEADER_BYTES
    for i, w in sorted(enumerate(weights), key=lambda iw: iw[1]["offset"]):
        where = f"graph.json: weights[{i}] ({w['name']!r:.60})"
        if w["offset"] < end:
            fail(f"{where}.offset", f"{w['offset']} overlaps the header or the tensor before it (ends at {end})")
        end = w["offset"] + w["nbytes"]
        if end > size:
            fail(str(path), f"is truncated: tensor {w['name']!r:.60} needs bytes up to {end} but the file has {size}")


# ---------------------------------------------------------------- nodes and the graph

def _signature(op):
    from .runtime.ops import OPS
    if op not in OPS:
        return None
    return inspect.signature(OPS[op]).parameters


def _attr_value(v, where, depth=0):
    """An ONNX attribute value: a number, string, list of those, or a tensor {"tensor": array}."""
    if isinstance(v, bool) or isinstance(v, float) or isinstance(v, str):
        return
    if isinstance(v, int):
        _int(v, where)
    elif isinstance(v, list) and depth == 0:
        for i, item in enumerate(v):
            _attr_value(item, f"{where}[{i}]", depth + 1)
    elif isinstance(v, dict) and depth == 0 and set(v) == {"tensor"}:
        check_array(v["tensor"], f"{where}.tensor")
    else:
        fail(where, f"is not an attribute value (number, string, list of those, or tensor): {v!r:.60}")


def _attrs(op, attrs, where, defined):
    params = _signature(op)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    required = [name for name, p in params.items() if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    for name in required:
        if name not in _map(attrs, where):
            fail(f"{where}.{name}", f"is missing (a required attribute of {op})")
    for name, v in _map(attrs, where).items():
        at = f"{where}.{name}"
        if name.startswith("_") or (name not in params and not takes_any):
            fail(at, f"is not an attribute of {op}")
        if isinstance(v, dict) and set(v) == {"graph"}:
            _subgraph(v["graph"], at, defined)
        elif (op, name) in SUBGRAPH_ATTRS:
            _row_tiled(attrs, at, defined)
        elif (op, name) in SRC_ATTRS:
            _src(v, at, defined)
        else:
            _attr_value(v, at)
        minimum = ATTR_MINIMUM.get(name, 0 if name == "pads" and op in PADS_MINIMUM_OPS else None)
        if minimum is not None:
            for i, item in enumerate(v if isinstance(v, list) else [v]):
                _int(item, f"{at}[{i}]" if isinstance(v, list) else at, minimum)


def _src(v, where, defined):
    """FusedConv's src: the attributes of the conv whose output this one recomputes."""
    if v is None:
        return
    for name, item in _map(v, where).items():
        if name not in ("kernel_shape", "pads", "strides", "dilations", "group", "activation", "subpixel",
                        "offsets_h", "offsets_w"):
            fail(f"{where}.{name}", "is not an attribute of a recomputed conv")
        _attr_value(item, f"{where}.{name}")
        if name in ATTR_MINIMUM:
            for i, x in enumerate(item if isinstance(item, list) else [item]):
                _int(x, f"{where}.{name}[{i}]", ATTR_MINIMUM[name])
    for name in ("kernel_shape", "pads"):
        if name not in v:
            fail(f"{where}.{name}", "is missing")


def _row_tiled(attrs, where, defined):
    """FusedRowTiled's chain: row-local nodes run on a tile of rows, reading the tile, the weights and each other."""
    _str(attrs.get("input"), f"{where[:-len('.nodes')]}.input", nonempty=True)
    weights = _list(attrs.get("weights"), f"{where[:-len('.nodes')]}.weights")
    env = {attrs["input"]} | {_str(w, f"{where[:-len('.nodes')]}.weights[{i}]") for i, w in enumerate(weights)}
    for name in env:
        if name not in defined:
            fail(where[:-len(".nodes")], f"reads {name!r:.60}, which is not defined before the node")
    for i, node in enumerate(_list(attrs["nodes"], where)):
        at = f"{where}[{i}]"
        _obj(node, at, ("op", "inputs", "outputs", "attrs"))
        if _signature(_str(node["op"], f"{at}.op")) is None or node["op"].startswith("Fused"):
            fail(f"{at}.op", f"unknown op {node['op']!r:.40} in a row-tiled chain")
        _node_io(node, at, env)
        _attrs(node["op"], node["attrs"], f"{at}.attrs", env)
    if _str(attrs.get("output"), f"{where[:-len('.nodes')]}.output", nonempty=True) not in env:
        fail(f"{where[:-len('.nodes')]}.output", f"{attrs['output']!r:.60} is not produced by the chain")


MAX_SUBGRAPH_DEPTH = 16


def _subgraph(g, where, defined):
    """An If/Loop/Scan body (graph.py's nested graphs): it sees the values defined before its node, defines its
    inputs and its nodes' outputs (names unique in the whole model), and returns values it can see."""
    _obj(g, where, ("inputs", "outputs", "nodes"))
    if where.count(".attrs.") > MAX_SUBGRAPH_DEPTH:
        fail(where, f"nests subgraphs more than {MAX_SUBGRAPH_DEPTH} deep")
    scope = set(defined)
    for i, v in enumerate(_list(g["inputs"], f"{where}.inputs")):
        _value_info(v, f"{where}.inputs[{i}]", subgraph=True)
        if v["name"] in scope:
            fail(f"{where}.inputs[{i}].name", f"{v['name']!r:.60} is already defined: each value is produced once")
        scope.add(v["name"])
    _nodes(g["nodes"], f"{where}.nodes", scope)
    for i, v in enumerate(_list(g["outputs"], f"{where}.outputs")):
        _value_info(v, f"{where}.outputs[{i}]", subgraph=True)
        if v["name"] not in scope:
            fail(f"{where}.outputs[{i}].name", f"{v['name']!r:.60} is not defined in the subgraph or around it")


def _nodes(nodes, where, defined: set):
    for i, node in enumerate(_list(nodes, where)):
        at = f"{where}[{i}]"
        _obj(node, at, ("op", "name", "inputs", "outputs", "attrs"))
        at = f"{at} ({_str(node['name'], f'{at}.name')!r:.60}, {_str(node['op'], f'{at}.op')!r:.40})"
        if _signature(node["op"]) is None:
            fail(f"{at}.op", f"this onnxstream version has no op {node['op']!r:.40}")
        _attrs(node["op"], node["attrs"], f"{at}.attrs", defined)
        _node_io(node, at, defined)


def _node_io(node, where, defined: set):
    """Inputs defined before use (no cycles); outputs new names, each produced once."""
    for i, name in enumerate(_list(node["inputs"], f"{where}.inputs")):
        if _str(name, f"{where}.inputs[{i}]") and name not in defined:
            fail(f"{where}.inputs[{i}]", f"{name!r:.60} is read before any node produces it (or never is)")
    for i, name in enumerate(_list(node["outputs"], f"{where}.outputs")):
        if _str(name, f"{where}.outputs[{i}]") and name in defined:
            fail(f"{where}.outputs[{i}]", f"{name!r:.60} is already defined: each value is produced once")
        if name:
            defined.add(name)


def check_document(doc, weights_path) -> None:
    """Everything load_graph reads from graph.json (doc, parsed) and weights.bin (weights_path)."""
    _obj(doc, "graph.json", ("format", "version", "opset", "inputs", "outputs", "nodes", "constants", "weights"),
         ("metadata",))
    _int(doc["opset"], "graph.json: opset", minimum=1)
    if not isinstance(doc.get("metadata", {}), dict):
        fail("graph.json: metadata", "must be an object")
    names = set()

    def new(name, where):
        if name in names:
            fail(where, f"{name!r:.60} is defined twice")
        names.add(name)

    for i, v in enumerate(_list(doc["inputs"], "graph.json: inputs")):
        _value_info(v, f"graph.json: inputs[{i}]")
        new(v["name"], f"graph.json: inputs[{i}].name")
    for name, a in _map(doc["constants"], "graph.json: constants").items():
        check_array(a, f"graph.json: constants[{name!r:.60}]")
        new(name, f"graph.json: constants[{name!r:.60}]")
    weights = _list(doc["weights"], "graph.json: weights")
    for i, w in enumerate(weights):
        _weight(w, f"graph.json: weights[{i}]")
        new(w["name"], f"graph.json: weights[{i}].name")
    _nodes(doc["nodes"], "graph.json: nodes", names)
    outputs = _list(doc["outputs"], "graph.json: outputs")
    for i, v in enumerate(outputs):
        _value_info(v, f"graph.json: outputs[{i}]")
        if v["name"] not in names:
            fail(f"graph.json: outputs[{i}].name", f"{v['name']!r:.60} is not produced by any node")
    if weights_path is not None:
        check_weights_file(weights, weights_path)
