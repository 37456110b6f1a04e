"""The model directory format: graph.json (nodes, inputs, outputs, small constants, weight table) + weights.bin.

Control-flow nodes (If, Loop, Scan) hold subgraphs as attributes: {"graph": {"inputs", "outputs", "nodes"}}, each
a Graph without constants or weights of its own (those live in the main graph's tables, names unique across the
model). A subgraph reads values of the enclosing scopes by name; outer_names() lists them, and they count as reads
of the node holding the subgraph (reads(), Graph.last_uses), so they live until it has run.

weights.bin starts with a 64-byte header (magic b"ONXSTRM1", format version, tensor count) and holds each
weight tensor at a 4096-byte aligned offset, in the order the runtime first reads them; graph.json stores each
tensor's offset, size, dtype, shape and XXH64 checksum.
"""
from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _core

FORMAT_VERSION = 1
GRAPH_FILE = "graph.json"
WEIGHTS_FILE = "weights.bin"
WEIGHTS_MAGIC = b"ONXSTRM1"
HEADER_BYTES = 64
ALIGN = 4096
# Packed weight layouts (cpp/ops/gemm.h, cpp/ops/qc8w.h): 16-column GEMM panels, float or int8 with scales.
LAYOUT = "gemm_b_panels16"
LAYOUT_QC8W = "gemm_b_panels16_qc8w"


class ModelFormatError(ValueError):
    """The model directory is missing, damaged or from an incompatible version."""


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]   # "" marks an omitted optional input
    outputs: list[str]
    attrs: dict = field(default_factory=dict)


@dataclass
class ValueInfo:
    name: str
    shape: list | None   # ints; None for a dimension unknown at convert time (subgraphs: None for an unknown rank)
    dtype: str           # numpy dtype name ("" in subgraphs: unknown, or a sequence)


@dataclass
class Weight:
    name: str
    dtype: str
    shape: list[int]
    offset: int = 0
    nbytes: int = 0
    hash: int = 0
    rows_per_block: int = 0          # > 0: a Gather table read row by row; each block of rows has a checksum
    block_hashes: list = field(default_factory=list)
    layout: str = ""                 # "gemm_b_panels16": stored as GEMM panels of its [k, n] operand (packing.py)
    k: int = 0
    n: int = 0
    transposed: bool = False         # the ONNX tensor is that operand transposed ([n, k]: Gemm transB=1)
    cols_per_block: int = 0          # > 0: packed as column blocks of this many columns, one checksum each


@dataclass
class Graph:
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    nodes: list[Node]
    constants: dict[str, np.ndarray] = field(default_factory=dict)  # small tensors kept in graph.json
    weights: list[Weight] = field(default_factory=list)             # large tensors streamed from weights.bin
    opset: int = 13
    metadata: dict = field(default_factory=dict)

    def last_uses(self) -> dict[str, int]:
        """Index of the last node reading each value, subgraph reads included (graph outputs are never freed)."""
        last = {}
        for i, node in enumerate(self.nodes):
            for name in reads(node):
                last[name] = i
        for out in self.outputs:
            last[out.name] = len(self.nodes)
        return last


# ---------------------------------------------------------------- subgraphs (If, Loop, Scan bodies)

def subgraphs(node: Node) -> list[Graph]:
    return [v for v in node.attrs.values() if isinstance(v, Graph)]


def outer_names(graph: Graph) -> list[str]:
    """Names a subgraph (or its own subgraphs) reads without defining them: values of the enclosing scopes,
    constants and weights, in first-read order."""
    defined = {v.name for v in graph.inputs} | {o for n in graph.nodes for o in n.outputs}
    seen = {}
    for node in graph.nodes:
        for name in reads(node):
            if name not in defined:
                seen[name] = None
    for out in graph.outputs:
        if out.name not in defined:
            seen[out.name] = None
    return list(seen)


def all_nodes(nodes: list[Node]) -> list[Node]:
    """nodes and, after each control-flow node, the nodes of its subgraphs (recursively)."""
    out = []
    for node in nodes:
        out.append(node)
        for g in subgraphs(node):
            out += all_nodes(g.nodes)
    return out


def reads(node: Node) -> list[str]:
    """The names a node reads: its inputs, then what its subgraphs read from outside them ("" omitted)."""
    names = [n for n in node.inputs if n]
    for g in subgraphs(node):
        names += [n for n in outer_names(g) if n not in names]
    return names


# ---------------------------------------------------------------- packed weights stored as column blocks

def block_nbytes(w, n0: int, n1: int) -> int:
    """Stored bytes of the column block [n0, n1) of a packed weight."""
    groups = int(np.prod(w.shape)) // (w.k * w.n)   # Conv: its group count; LSTM/GRU/RNN: directions x gates
    if w.layout == LAYOUT_QC8W:
        return _core.qc8w_blob_bytes(w.k, n1 - n0) * groups
    return -(-(n1 - n0) // 16) * 16 * w.k * np.dtype(w.dtype).itemsize * groups


def column_blocks(w) -> list[tuple[int, int]]:
    step = w.cols_per_block or w.n
    return [(n0, min(w.n, n0 + step)) for n0 in range(0, w.n, step)]


# ---------------------------------------------------------------- encoding of arrays and attributes in JSON

def encode_array(a: np.ndarray) -> dict:
    a = np.asarray(a).copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_array(d: dict) -> np.ndarray:
    raw = base64.b64decode(d["data"])
    return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def encode_attr(v):
    if isinstance(v, np.ndarray):
        return {"tensor": encode_array(v)}
    if isinstance(v, Graph):
        return {"graph": _graph_doc(v)}
    return v


def decode_attr(v):
    if isinstance(v, dict) and "tensor" in v:
        return decode_array(v["tensor"])
    if isinstance(v, dict) and "graph" in v:
        return _graph_from_doc(v["graph"])
    return v


def _graph_doc(g: Graph) -> dict:
    """The fields a main graph and a subgraph share."""
    return {"inputs": [vars(v) for v in g.inputs], "outputs": [vars(v) for v in g.outputs],
            "nodes": [{"op": n.op, "name": n.name, "inputs": n.inputs, "outputs": n.outputs,
                       "attrs": {k: encode_attr(v) for k, v in n.attrs.items()}} for n in g.nodes]}


def _graph_from_doc(doc: dict) -> Graph:
    return Graph(inputs=[ValueInfo(**v) for v in doc["inputs"]],
                 outputs=[ValueInfo(**v) for v in doc["outputs"]],
                 nodes=[Node(n["op"], n["name"], n["inputs"], n["outputs"],
                             {k: decode_attr(v) for k, v in n["attrs"].items()}) for n in doc["nodes"]])


# ---------------------------------------------------------------- reading and writing a model directory

def save_graph(graph: Graph, directory: Path) -> None:
    doc = {
        "format": "onnxstream",
        "version": FORMAT_VERSION,
        "opset": graph.opset,
        "metadata": graph.metadata,
        **_graph_doc(graph),
        "constants": {k: encode_array(v) for k, v in graph.constants.items()},
        "weights": [vars(w) for w in graph.weights],
    }
    with open(directory / GRAPH_FILE, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())


def load_graph(directory: str | os.PathLike) -> Graph:
    directory = Path(directory)
    path = directory / GRAPH_FILE
    if not directory.is_dir():
        raise ModelFormatError(f"model directory {directory} does not exist")
    if not path.is_file():
        raise ModelFormatError(f"{directory} is not an onnxstream model: {GRAPH_FILE} is missing "
                               f"(convert an .onnx file first: onnxstream convert MODEL.onnx {directory})")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ModelFormatError(f"{path} is damaged: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != "onnxstream" or doc.get("version") != FORMAT_VERSION:
        raise ModelFormatError(f"{path} is not an onnxstream model of format version {FORMAT_VERSION}")
    weights_path = directory / WEIGHTS_FILE
    if doc.get("weights") and not weights_path.is_file():
        raise ModelFormatError(f"{directory} is incomplete: {WEIGHTS_FILE} is missing")
    from .format_check import check_document  # every field below is checked before it is used
    check_document(doc, weights_path if doc["weights"] else None)
    graph = _graph_from_doc(doc)
    graph.constants = {k: decode_array(v) for k, v in doc["constants"].items()}
    graph.weights = [Weight(**w) for w in doc["weights"]]
    graph.opset = doc["opset"]
    graph.metadata = doc.get("metadata", {})
    for a in graph.constants.values():
        a.setflags(write=False)  # shared by every run: no op may write over one
    return graph


def weights_header(count: int) -> bytes:
    head = WEIGHTS_MAGIC + FORMAT_VERSION.to_bytes(4, "little") + ALIGN.to_bytes(4, "little") + count.to_bytes(8, "little")
    return head.ljust(HEADER_BYTES, b"\0")
