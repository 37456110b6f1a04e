"""Session: runs a converted model node by node, streaming each weight from disk when its node runs.

Opening a session reads graph.json only. run() starts the weight reader on the run's read order (it prefetches
ahead within a byte budget; a model whose weights fit the resident budget keeps them after its first run), then
for each node: fetch inputs, call OPS[node.op], store outputs, and drop every
value whose last reader has run, so memory holds live activations plus the weights in flight.

Control flow is a subgraph call: an If/Loop/Scan op gets each subgraph as a function of the subgraph's inputs,
which runs its nodes with this same loop (_run_graph) in a scope of its own: its inputs plus the enclosing scope's
values that it reads (graph.outer_names, resolved once per session; a plain dict, as lookups through a ChainMap
cost more than a small subgraph's kernels). A subgraph frees only
the values it defines; it reads weights when its nodes run (checksummed like every read, not prefetched: a
branch not taken reads nothing, a loop body reads its weights again each iteration, as every run does).
"""
from __future__ import annotations

import operator
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .. import _core
from ..graph import WEIGHTS_FILE, Graph, ModelFormatError, all_nodes, load_graph, outer_names, subgraphs
from ..graph import block_nbytes, column_blocks
from .ops import FLOAT16_WEIGHT_OPS, IN_PLACE_OPS, OPS, op_kwargs
from .ops.common import cast
from .panels import PanelBlocks, Panels

DONOR_MIN_BYTES = 64 << 10  # an op writes over a dying input only from this size on (Session._donor)
DEFAULT_PREFETCH_BYTES = 16 << 20  # enough to overlap reading with compute; more only costs RAM
# A model whose streamed weights total at most this keeps them in memory after the first run instead of reading
# them again every run (a 1 MB voice model or a 70 MB sentence encoder); bigger models stream, and the Stable
# Diffusion pipeline streams every part (pipelines/stable_diffusion.py: resident_bytes=0).
DEFAULT_RESIDENT_BYTES = 128 << 20


class InputError(ValueError):
    """A feed does not match what the model expects."""


class Session:
    def __init__(self, model_dir: str | os.PathLike, threads: int | None = None,
                 prefetch_bytes: int = DEFAULT_PREFETCH_BYTES, resident_bytes: int = DEFAULT_RESIDENT_BYTES):
        self.model_dir = Path(model_dir)
        self.graph: Graph = load_graph(self.model_dir)  # checked field by field (format_check.py)
        _core.set_num_threads(threads or 0)
        missing = [n.op for n in all_nodes(self.graph.nodes) if n.op not in OPS]
        if missing:
            raise ModelFormatError(f"model uses ops this onnxstream version lacks: {sorted(set(missing))}")
        weights = self.graph.weights
        path = self.model_dir / WEIGHTS_FILE
        # Reader items: one per weight, or one per column block of a weight stored in blocks.
        items, self._item_ids = [], {}
        for w in weights:
            first = len(items)
            if w.cols_per_block:
                offset = w.offset
                for (n0, n1), h in zip(column_blocks(w), w.block_hashes):
                    items.append((f"{w.name}[{n0}:{n1}]", offset, block_nbytes(w, n0, n1), h))
                    offset += items[-1][2]
            else:
                items.append((w.name, w.offset, w.nbytes, w.hash))
            self._item_ids[w.name] = list(range(first, len(items)))
        self._reader = _core.WeightReader(str(path), *map(list, zip(*items)), prefetch_bytes) if items else None
        self._weights = {w.name: w for w in weights}
        self._row_tables = {w.name for w in weights if w.rows_per_block}
        self._read_order = []
        for node in self.graph.nodes:  # a node's whole weights are fetched with its inputs, its blocks as it runs
            streamed = [n for n in node.inputs if n in self._item_ids and n not in self._row_tables]
            for n in sorted(streamed, key=lambda n: self._weights[n].cols_per_block > 0):
                self._read_order += self._item_ids[n]
        self._plans = {}  # id(graph) -> (per node: (op, keyword arguments), values to drop after it)
        self._outer_names = {}  # id(subgraph) -> the enclosing scope's names it reads
        self._plan(self.graph, top=True)
        # Resident weights: all or nothing, so the budget never splits a model between memory and disk.
        streamed = sum(w.nbytes for w in weights if not w.rows_per_block)
        self._keep_resident = 0 < streamed <= resident_bytes
        self._resident: dict[str, object] = {}
        self._unread = (-1, [])   # (len(self._resident), the read order less the resident weights)
        self._input_specs = {v.name: (np.dtype(v.dtype), tuple(v.shape)) for v in self.graph.inputs}
        self._debug = int(os.environ.get("ONNXSTREAM_DEBUG", "0") or 0)
        self.observer = None   # observer(node, values) after each node (convert-time calibration: fp16_range.py)
        # One run at a time per session (the weight reader streams one run's read order); a second thread's run
        # waits for the first. Sessions are independent: two on one model may run in parallel.
        self._lock = threading.Lock()

    # ------------------------------------------------------------ what the model takes and gives

    @property
    def inputs(self):
        return self.graph.inputs

    @property
    def outputs(self):
        return self.graph.outputs

    @property
    def bytes_read(self) -> int:
        """Weight bytes read from disk since the session opened."""
        return self._reader.bytes_read if self._reader else 0

    # ------------------------------------------------------------ running

    def _plan(self, graph: Graph, top: bool) -> None:
        """Everything a node's run needs that does not change between runs, resolved once (a small model's run is
        mostly this loop, so each step it can skip counts): per node (node, op function, keyword arguments, reads
        its subgraphs, may write over a dying input, reads its inputs with one C call when none is a weight (None
        otherwise), its one output's name (None when it has several), values to drop after it)."""
        # A subgraph drops only what it defines: the values of the enclosing scope outlive its runs.
        own = None if top else {v.name for v in graph.inputs} | {o for n in graph.nodes for o in n.outputs}
        frees = [[] for _ in graph.nodes]
        for name, i in graph.last_uses().items():
            if i < len(graph.nodes) and (own is None or name in own):
                frees[i].append(name)
        plan = []
        for n, free in zip(graph.nodes, frees):
            row_gather = n.op == "Gather" and n.inputs[0] in self._row_tables
            getter = None
            if not row_gather and not any(name in self._weights for name in n.inputs):
                getter = _getter(n.inputs)   # (a missing optional input is "", which every scope maps to None)
            single = n.outputs[0] if len(n.outputs) == 1 and n.outputs[0] else None
            fn, kwargs = OPS[n.op], op_kwargs(n.op, n.attrs, len(n.outputs), self.graph.opset)
            if hasattr(fn, "prepare") and not subgraphs(n):   # an op that resolves its attributes once per node
                fn, kwargs = fn.prepare(**kwargs), {}
            plan.append((n, fn, kwargs, bool(subgraphs(n)), n.op in IN_PLACE_OPS and bool(free), getter, single,
                         free))
        self._plans[id(graph)] = plan
        if not top:
            self._outer_names[id(graph)] = outer_names(graph)
        for node in graph.nodes:
            for g in subgraphs(node):
                self._plan(g, top=False)

    def _weight(self, name: str, op: str) -> np.ndarray:
        kept = self._resident.get(name)
        if kept is not None:
            return kept
        array = self._read_weight(name, op)
        if self._keep_resident:
            self._resident[name] = array
        return array

    def _read_weight(self, name: str, op: str) -> np.ndarray:
        w = self._weights[name]
        ids = self._item_ids[name]
        if w.cols_per_block:  # read block by block while the op runs (in the read order); a resident model keeps them
            kept = {}

            def read(i):
                block = kept.get(i)
                if block is None:
                    block = self._reader.get(ids[i]).view(np.dtype(w.dtype))
                    if self._keep_resident:
                        kept[i] = block
                return block
            return PanelBlocks(tuple(w.shape), w.k, w.n, np.dtype(w.dtype), w.cols_per_block, read)
        raw = self._reader.get(ids[0])
        if w.layout:
            return Panels(raw.view(np.dtype(w.dtype)), tuple(w.shape), w.k, w.n)
        array = raw.view(np.dtype(w.dtype)).reshape(w.shape)
        if array.dtype == np.float16 and op not in FLOAT16_WEIGHT_OPS:
            array = cast(array, np.float32)
        return array

    def _gathered_rows(self, name: str, indices: np.ndarray) -> list:
        """Gather's (table, indices) with only the rows the indices name read from disk."""
        w = self._weights[name]
        rows = w.shape[0]
        wrapped = np.where(indices < 0, indices + rows, indices).astype(np.int64)
        if wrapped.size and (wrapped.min() < 0 or wrapped.max() >= rows):
            raise IndexError(f"Gather index out of range for table '{name}' of {rows} rows")
        unique, remapped = np.unique(wrapped, return_inverse=True)
        row_nbytes = w.nbytes // rows
        raw = self._reader.read_rows(self._item_ids[name][0], row_nbytes, w.rows_per_block, w.block_hashes,
                                     unique.tolist())
        table = raw.view(np.dtype(w.dtype)).reshape([len(unique)] + w.shape[1:])
        if table.dtype == np.float16:
            table = cast(table, np.float32)
        return [table, remapped.reshape(indices.shape)]

    def _donor(self, node, dying: list, args: list, values):
        """An input of the node that dies here and that nothing else references: the op may write its result over it
        (a residual Add at SD1.5's 64x64 level then needs no third 10 MB buffer). Small arrays are not worth the
        checks: the array cache recycles their memory anyway."""
        for j, name in enumerate(node.inputs):
            if name not in dying or name not in values or not isinstance(args[j], np.ndarray):
                continue  # (weights are never written over: resident ones serve the next run)
            if args[j].nbytes < DONOR_MIN_BYTES:
                continue
            if not (args[j].flags.writeable and args[j].flags.c_contiguous):
                continue
            # References to the array: values, args and getrefcount's argument; to a view's base: the view's, the
            # local and getrefcount's (so no other value shares the memory).
            if sys.getrefcount(args[j]) != 3:
                continue
            base = args[j].base
            if base is None or (isinstance(base, np.ndarray) and base.base is None and sys.getrefcount(base) == 3
                                and base.nbytes == args[j].nbytes):   # (3: the view's, `base` and getrefcount's)
                return args[j]
        return None

    def _check_feeds(self, feeds: dict) -> dict:
        specs = self._input_specs
        if feeds.keys() != specs.keys():
            unknown, missing = sorted(set(feeds) - set(specs)), sorted(set(specs) - set(feeds))
            if unknown:
                raise InputError(f"unknown input name(s) {unknown}; the model's inputs are {sorted(specs)}")
            raise InputError(f"missing input(s) {missing}")
        checked = {}
        for name, value in feeds.items():
            dtype, shape = specs[name]
            array = value if type(value) is np.ndarray else np.asarray(value)
            if array.dtype != dtype:
                raise InputError(f"input '{name}' must be {dtype.name}, got {array.dtype}")
            if len(array.shape) != len(shape) or any(d is not None and d != a for d, a in zip(shape, array.shape)):
                want = "x".join("?" if d is None else str(d) for d in shape) or "scalar"
                raise InputError(f"input '{name}' must have shape {want}, got "
                                 f"{'x'.join(map(str, array.shape)) or 'scalar'}")
            checked[name] = array
        return checked

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str] | None = None) -> dict[str, np.ndarray]:
        with self._lock:
            return self._run(feeds, output_names)

    def _run(self, feeds, output_names):
        values: dict[str, np.ndarray] = dict(self.graph.constants)
        values.update(self._check_feeds(feeds))
        values[""] = None  # a missing optional input
        if self._reader:
            if self._unread[0] != len(self._resident):  # (the read order without resident weights, kept per count)
                resident = {i for n in self._resident for i in self._item_ids[n]}
                self._unread = (len(self._resident), [i for i in self._read_order if i not in resident])
            self._reader.start(self._unread[1])
        numpy_allocator = _core.start_array_cache()  # freed activations reused, not page-faulted in afresh
        try:
            self._run_graph(self.graph, values)
        finally:
            _core.stop_array_cache(numpy_allocator)
            if self._reader:
                self._reader.stop()
        names = output_names or [o.name for o in self.graph.outputs]
        return {name: values[name] for name in names}


    def _run_graph(self, graph: Graph, values) -> None:
        """Run graph's nodes in order over values (its scope)."""
        watched = self._debug or self.observer is not None
        for node, fn, kwargs, has_subgraphs, may_donate, getter, single, free in self._plans[id(graph)]:
            start = time.perf_counter() if watched else 0.0
            if getter is not None:
                args = getter(values)
            elif node.op == "Gather" and node.inputs[0] in self._row_tables:
                args = self._gathered_rows(node.inputs[0], values[node.inputs[1]])
            else:
                args = [values[n] if n in values else self._weight(n, node.op) for n in node.inputs]
            if has_subgraphs:  # If/Loop/Scan: each subgraph as a function, run in this scope
                kwargs = {k: self._body(v, values) if isinstance(v, Graph) else v for k, v in kwargs.items()}
            donor = self._donor(node, free, args, values) if may_donate else None
            try:
                result = fn(*args, **kwargs) if donor is None else fn(*args, _out=donor, **kwargs)
            except Exception as e:
                if _reraisable(e):
                    raise type(e)(f"{node.op} node '{node.name}': {e}") from e
                if isinstance(e, MemoryError):  # (numpy's takes a shape and a dtype)
                    raise MemoryError(f"{node.op} node '{node.name}': {e}") from e
                raise
            if single is not None and type(result) is np.ndarray:
                values[single] = result
            else:
                results = result if isinstance(result, tuple) else (result,)
                for name, value in zip(node.outputs, results):
                    if name:  # (a list is an ONNX sequence)
                        values[name] = value if isinstance(value, (np.ndarray, list)) else np.asarray(value)
                del results, value
            del args, result, donor  # (no stray references: see _donor)
            if watched:
                if self._debug:
                    _trace(node, values, time.perf_counter() - start, self._debug)
                if self.observer is not None:
                    self.observer(node, values)
            for name in free:
                values.pop(name, None)

    def _value(self, name: str, op: str, values):
        return values[name] if name in values else self._weight(name, op)

    def _body(self, graph: Graph, outer):
        """The subgraph as a function of its inputs, returning its outputs; its scope holds what it reads of the
        enclosing one."""
        outer_reads = self._outer_names[id(graph)]
        def run(*inputs):
            if len(inputs) != len(graph.inputs):
                raise ValueError(f"subgraph takes {len(graph.inputs)} inputs, got {len(inputs)}")
            scope = {name: outer[name] for name in outer_reads if name in outer}  # (weights: read when used)
            scope[""] = None
            scope.update((v.name, x) for v, x in zip(graph.inputs, inputs))
            del inputs  # (the scope holds the only references: see _donor)
            self._run_graph(graph, scope)
            return tuple(self._value(o.name, "", scope) for o in graph.outputs)
        run.outputs = graph.outputs  # ValueInfo: dtypes and shapes, for a loop that runs no iteration
        return run


def _reraisable(e: Exception) -> bool:
    """Exceptions whose constructor takes one message, so the node name can be prefixed."""
    try:
        type(e)("x")
        return True
    except Exception:
        return False


def _rss_mb() -> tuple[float, float]:
    """(resident, peak resident) MB of this process."""
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def _trace(node, values, seconds, level):
    shapes = [tuple(values[n].shape) if n in values else "?" for n in node.outputs if n]
    rss, peak = _rss_mb()
    line = (f"[onnxstream] {node.op:<20} {node.name[:48]:<48} {seconds * 1e3:8.2f} ms  rss {rss:6.1f} MB, "
            f"peak {peak:6.1f} MB  -> {shapes}")
    if level >= 2:
        for n in node.outputs:
            v = values.get(n)
            if v is not None and v.size and np.issubdtype(v.dtype, np.floating):
                line += f"\n      {n}: min {v.min():.4g} max {v.max():.4g} mean {v.mean():.4g}"
    print(line, file=sys.stderr)


def _getter(names: list[str]):
    """values -> the tuple of values[name] for names, in one C call for two or more."""
    if len(names) >= 2:
        return operator.itemgetter(*names)
    if names:
        name = names[0]
        return lambda values: (values[name],)
    return lambda values: ()
