"""Model directories are untrusted input: a crafted graph.json or weights.bin gets ModelFormatError naming the
field when the session opens (format_check.py), for every class of field; C++ bounds what it reads again. The
untouched directories match onnxruntime, so the checks refuse only what is wrong."""
import base64
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import onnxstream
import small_models
from onnxstream import _core
from onnxstream.graph import GRAPH_FILE, WEIGHTS_FILE, ModelFormatError
from reference import onnxruntime_outputs


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("untrusted")
    return {kind: small_models.convert(kind, root / kind) for kind in small_models.KINDS}


@pytest.mark.parametrize("kind", small_models.KINDS)
def test_untouched_models_match_onnxruntime(models, kind):
    want = onnxruntime_outputs(str(models[kind].with_name(kind + ".onnx")), small_models.feeds(kind))
    got = onnxstream.Session(models[kind]).run(small_models.feeds(kind))
    tol = 0.1 if small_models.WEIGHTS[kind] == "int8" else 2e-3
    for name, w in want.items():
        assert np.abs(got[name] - w).max() <= tol * np.abs(w).max()


def weight(doc, name):
    return next(w for w in doc["weights"] if w["name"] == name)


def node(doc, op, index=0):
    return [n for n in doc["nodes"] if n["op"] == op][index]


def some_constant(doc):
    return next(a for a in doc["constants"].values() if a["shape"])


def add_output(doc, op, inputs, outputs, **attrs):
    doc["nodes"].append({"op": op, "name": "crafted", "inputs": inputs, "outputs": outputs, "attrs": attrs})


# (model, what is crafted, edit of the graph.json document, what the error must say)
CASES = [
    # the weight table
    ("mlp", "negative dimension", lambda d: weight(d, "b1").update(shape=[-96]), r"weights\[1\] \('b1'\)\.shape\[0\]: -96 must be >= 0"),
    ("mlp", "2^31 x 2^31 shape", lambda d: weight(d, "b1").update(shape=[2 ** 31, 2 ** 31]), r"\('b1'\)\.nbytes: 384 != 18446744073709551616"),
    ("mlp", "unknown layout", lambda d: weight(d, "w2").update(layout="gemm_b_panels8"), r"\('w2'\)\.layout: unknown layout 'gemm_b_panels8'"),
    ("mlp", "unknown dtype", lambda d: weight(d, "b1").update(dtype="float8"), r"\('b1'\)\.dtype: unknown dtype 'float8'"),
    ("mlp", "non-integer dimension", lambda d: weight(d, "b1").update(shape=[96.0]), r"\('b1'\)\.shape\[0\]: must be an integer"),
    ("mlp", "offset past the end", lambda d: weight(d, "b1").update(offset=1 << 40), r"truncated: tensor 'b1' needs bytes up to"),
    ("mlp", "offset that overflows", lambda d: weight(d, "b1").update(offset=(1 << 64) - 1), r"\('b1'\)\.offset: \d+ does not fit in 64 bits"),
    ("mlp", "offset in the header", lambda d: weight(d, "b1").update(offset=0), r"\('b1'\)\.offset: 0 must be >= 64"),
    ("mlp", "overlapping tensors", lambda d: weight(d, "b1").update(offset=weight(d, "w1")["offset"] + 64), r"\('b1'\)\.offset: \d+ overlaps"),
    ("mlp", "negative nbytes", lambda d: weight(d, "b1").update(nbytes=-4), r"\('b1'\)\.nbytes: -4 must be >= 0"),
    ("mlp", "packed size", lambda d: weight(d, "w2").update(nbytes=weight(d, "w2")["nbytes"] - 16), r"\('w2'\)\.nbytes: 18416 != 18432, the packed size"),
    ("mlp", "panel geometry", lambda d: weight(d, "w2").update(k=95, n=40), r"\('w2'\)\.k: \(k, n\) = \(95, 40\) is not the \[K, N\] operand"),
    ("mlp", "packed dtype", lambda d: weight(d, "w2").update(dtype="int32"), r"\('w2'\)\.dtype: int32 is not a dtype of layout"),
    ("mlp", "column block width", lambda d: weight(d, "w1").update(cols_per_block=8), r"\('w1'\)\.cols_per_block: 8 must be a multiple of 16"),
    ("mlp", "column block checksums", lambda d: weight(d, "w1")["block_hashes"].pop(), r"\('w1'\)\.block_hashes: has 5 checksums for 6 column blocks"),
    ("mlp", "checksum out of range", lambda d: weight(d, "b1").update(hash=-1), r"\('b1'\)\.hash: must be an unsigned 64-bit"),
    ("mlp", "unknown weight field", lambda d: weight(d, "b1").update(evil=1), r"weights\[1\]\.evil: is not a field"),
    ("mlp", "missing weight field", lambda d: weight(d, "b1").pop("nbytes"), r"weights\[1\]\.nbytes: is missing"),
    ("mlp", "transposed not a bool", lambda d: weight(d, "w2").update(transposed="yes"), r"\('w2'\)\.transposed: must be true or false"),
    ("mlp", "duplicate weight name", lambda d: weight(d, "b1").update(name="w1"), r"weights\[1\]\.name: 'w1' is defined twice"),
    ("table", "row block checksums", lambda d: weight(d, "table")["block_hashes"].append(7), r"\('table'\)\.block_hashes: has 19 checksums for 18 blocks"),
    ("table", "negative rows per block", lambda d: weight(d, "table").update(rows_per_block=-1), r"\('table'\)\.rows_per_block: -1 must be >= 0"),
    ("table", "rows of a packed weight", lambda d: weight(d, "table").update(layout="gemm_b_panels16", k=1100, n=256), r"\('table'\)\.rows_per_block: a packed weight is not read row by row"),
    # constants, inputs, outputs
    ("cnn", "constant not base64", lambda d: some_constant(d).update(data="!!!!"), r"constants\['[^']+'\]\.data: is not base64"),
    ("cnn", "constant too short", lambda d: some_constant(d).update(shape=[1000]), r"constants\['[^']+'\]\.data: is longer than|holds \d+ bytes, its shape \[1000\]"),
    ("cnn", "constant object dtype", lambda d: some_constant(d).update(dtype="object"), r"constants\['[^']+'\]\.dtype: unknown dtype 'object'"),
    ("cnn", "input dtype", lambda d: d["inputs"][0].update(dtype="complex64"), r"inputs\[0\]\.dtype: unknown dtype 'complex64'"),
    ("cnn", "input dimension", lambda d: d["inputs"][0].update(shape=[1, -8, 8, 8]), r"inputs\[0\]\.shape\[1\]: -8 must be >= 0"),
    ("cnn", "output never produced", lambda d: d["outputs"][0].update(name="nowhere"), r"outputs\[0\]\.name: 'nowhere' is not produced"),
    # nodes: ops, order, attributes
    ("cnn", "unknown op", lambda d: d["nodes"][0].update(op="__import__"), r"nodes\[0\] \('[^']*', '__import__'\)\.op: this onnxstream version has no op"),
    ("cnn", "input never defined", lambda d: d["nodes"][1]["inputs"].__setitem__(0, "ghost"), r"nodes\[1\] .*\.inputs\[0\]: 'ghost' is read before any node produces it"),
    ("cnn", "cycle", lambda d: d["nodes"][0]["inputs"].__setitem__(0, d["nodes"][1]["outputs"][0]), r"nodes\[0\] .*\.inputs\[0\]: '[^']+' is read before"),
    ("cnn", "value produced twice", lambda d: d["nodes"][1]["outputs"].__setitem__(0, d["nodes"][0]["outputs"][0]), r"nodes\[1\] .*\.outputs\[0\]: '[^']+' is already defined"),
    ("cnn", "output over a weight", lambda d: d["nodes"][0]["outputs"].__setitem__(0, "cw"), r"nodes\[0\] .*\.outputs\[0\]: 'cw' is already defined"),
    ("cnn", "unknown attribute", lambda d: node(d, "Conv")["attrs"].update(evil=1), r"'Conv'\)\.attrs\.evil: is not an attribute of Conv"),
    ("cnn", "internal parameter as attribute", lambda d: node(d, "MaxPool")["attrs"].update(_out=1), r"'MaxPool'\)\.attrs\._out: is not an attribute"),
    ("cnn", "attribute value an object", lambda d: node(d, "Conv")["attrs"].update(pads={"a": 1}), r"'Conv'\)\.attrs\.pads: is not an attribute value"),
    ("cnn", "zero stride", lambda d: node(d, "MaxPool")["attrs"].update(strides=[0, 2]), r"'MaxPool'\)\.attrs\.strides\[0\]: 0 must be >= 1"),
    ("cnn", "zero group", lambda d: node(d, "Conv", 1)["attrs"].update(group=0), r"'Conv'\)\.attrs\.group: 0 must be >= 1"),
    ("cnn", "negative kernel", lambda d: node(d, "AveragePool")["attrs"].update(kernel_shape=[-3, 3]), r"'AveragePool'\)\.attrs\.kernel_shape\[0\]: -3 must be >= 1"),
    ("cnn", "negative pads", lambda d: node(d, "Conv", 1)["attrs"].update(pads=[-1, 1, 1, 1]), r"'Conv'\)\.attrs\.pads\[0\]: -1 must be >= 0"),
    ("cnn", "integer beyond 64 bits", lambda d: node(d, "ConvTranspose")["attrs"].update(group=1 << 70), r"'ConvTranspose'\)\.attrs\.group: \d+ does not fit in 64 bits"),
    ("cnn", "sub-pixel factor", lambda d: node(d, "FusedConv", 1)["attrs"].update(subpixel=0), r"'FusedConv'\)\.attrs\.subpixel: 0 must be >= 1"),
    ("cnn", "sub-pixel offset", lambda d: node(d, "FusedConv", 1)["attrs"].update(offsets_h=[0, -5]), r"'FusedConv'\)\.attrs\.offsets_h\[1\]: -5 must be >= 0"),
    ("cnn", "GroupNorm groups", lambda d: node(d, "FusedGroupNormScale")["attrs"].update(num_groups=0), r"\.attrs\.num_groups: 0 must be >= 1"),
    ("cnn", "recomputed conv attributes", lambda d: node(d, "FusedConv")["attrs"].update(src={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "evil": 2}), r"\.attrs\.src\.evil: is not an attribute of a recomputed conv"),
    ("attention", "row tile of no rows", lambda d: node(d, "FusedRowTiled")["attrs"].update(rows=0), r"'FusedRowTiled'\)\.attrs\.rows: 0 must be >= 1"),
    ("attention", "unknown op in a row-tiled chain", lambda d: node(d, "FusedRowTiled")["attrs"]["nodes"][1].update(op="Evil"), r"\.attrs\.nodes\[1\]\.op: unknown op 'Evil'"),
    ("attention", "row-tiled chain reads nothing", lambda d: node(d, "FusedRowTiled")["attrs"]["nodes"][1]["inputs"].__setitem__(0, "ghost"), r"\.attrs\.nodes\[1\]\.inputs\[0\]: 'ghost' is read before"),
    ("attention", "row-tiled output", lambda d: node(d, "FusedRowTiled")["attrs"].update(output="ghost"), r"'FusedRowTiled'\)\.attrs\.output: 'ghost' is not produced by the chain"),
    ("attention", "row-tiled attribute", lambda d: node(d, "FusedRowTiled")["attrs"]["nodes"][0]["attrs"].update(evil=[1]), r"\.attrs\.nodes\[0\]\.attrs\.evil: is not an attribute of MatMul"),
    # the document itself
    ("mlp", "unknown top-level field", lambda d: d.update(evil=1), r"graph\.json\.evil: is not a field"),
    ("mlp", "opset not an integer", lambda d: d.update(opset="17"), r"graph\.json: opset: must be an integer"),
    ("mlp", "nodes not a list", lambda d: d.update(nodes={}), r"graph\.json: nodes: must be a list"),
]


@pytest.mark.parametrize("kind, what, edit, message", CASES, ids=[c[1] for c in CASES])
def test_crafted_graph_json_is_refused_naming_the_field(models, tmp_path, kind, what, edit, message):
    crafted = tmp_path / kind
    shutil.copytree(models[kind], crafted)
    doc = json.loads((crafted / GRAPH_FILE).read_text())
    edit(doc)
    (crafted / GRAPH_FILE).write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match=message):
        onnxstream.Session(crafted)


def crafted_weights(models, tmp_path, kind, edit_bytes):
    crafted = tmp_path / kind
    shutil.copytree(models[kind], crafted)
    data = bytearray((crafted / WEIGHTS_FILE).read_bytes())
    (crafted / WEIGHTS_FILE).write_bytes(bytes(edit_bytes(data)))
    return crafted


def test_weights_file_header_and_size(models, tmp_path):
    def magic(b):
        b[:8] = b"NOTMINE!"
        return b

    def count(b):
        b[16:24] = (99).to_bytes(8, "little")
        return b

    with pytest.raises(ModelFormatError, match="is not an onnxstream weights file"):
        onnxstream.Session(crafted_weights(models, tmp_path / "a", "mlp", magic))
    with pytest.raises(ModelFormatError, match="header counts 99 tensors, graph.json lists 3"):
        onnxstream.Session(crafted_weights(models, tmp_path / "b", "mlp", count))
    with pytest.raises(ModelFormatError, match="truncated: tensor 'table' needs bytes up to"):
        onnxstream.Session(crafted_weights(models, tmp_path / "c", "table", lambda b: b[:len(b) // 2]))
    (tmp_path / "d").mkdir()
    bad = tmp_path / "d" / "m"
    shutil.copytree(models["mlp"], bad)
    (bad / GRAPH_FILE).write_text("{not json")
    with pytest.raises(ModelFormatError, match="is damaged"):
        onnxstream.Session(bad)
    (bad / GRAPH_FILE).write_text("[1, 2]")
    with pytest.raises(ModelFormatError, match="is not an onnxstream model"):
        onnxstream.Session(bad)


def test_huge_allocation_is_a_clear_error(models, tmp_path):
    """A crafted ConstantOfShape asking for 2^44 floats: MemoryError naming the node, not a crash."""
    crafted = tmp_path / "mlp"
    shutil.copytree(models["mlp"], crafted)
    doc = json.loads((crafted / GRAPH_FILE).read_text())
    shape = np.array([1 << 44], np.int64)
    doc["constants"]["big_shape"] = {"dtype": "int64", "shape": [1], "data": base64.b64encode(shape.tobytes()).decode()}
    add_output(doc, "ConstantOfShape", ["big_shape"], ["big"])
    doc["outputs"].append({"name": "big", "shape": [1 << 44], "dtype": "float32"})
    (crafted / GRAPH_FILE).write_text(json.dumps(doc))
    with pytest.raises(MemoryError, match="ConstantOfShape node 'crafted'"):
        onnxstream.Session(crafted).run(small_models.feeds("mlp"))


# ---------------------------------------------------------------- C++ bounds what it reads, whatever Python passed

def test_reader_offsets_cannot_overflow(models):
    path = str(models["mlp"] / WEIGHTS_FILE)
    with pytest.raises(ValueError, match="truncated: tensor 't'"):  # offset + nbytes wraps around 2^64
        _core.WeightReader(path, ["t"], [(1 << 64) - 16], [32], [0], 1 << 20)


def test_row_reader_never_allocates_more_than_the_table(models):
    from onnxstream.graph import load_graph
    w = load_graph(models["table"]).weights[0]
    reader = _core.WeightReader(str(models["table"] / WEIGHTS_FILE), [w.name], [w.offset], [w.nbytes], [w.hash], 0)
    row = w.nbytes // w.shape[0]
    whole = np.frombuffer((models["table"] / WEIGHTS_FILE).read_bytes()[w.offset:w.offset + w.nbytes], np.float32)
    # One block of 2^60 rows: its single checksum is the whole table's, and only the table's bytes are allocated.
    got = reader.read_rows(0, row, 1 << 60, [w.hash], [3, 1099]).view(np.float32).reshape(2, -1)
    np.testing.assert_array_equal(got, whole.reshape(w.shape)[[3, 1099]])
    with pytest.raises(ValueError, match="block checksums"):
        reader.read_rows(0, row, 1 << 60, [w.hash, 0], [3])
    with pytest.raises(ValueError, match="described inconsistently"):
        reader.read_rows(0, row + 4, 64, w.block_hashes, [3])
    with pytest.raises(ValueError, match="row 1100 out of range"):
        reader.read_rows(0, row, w.rows_per_block, w.block_hashes, [1100])


def test_pool_work_is_bounded_by_the_input_not_the_kernel():
    """A 2^31 x 2^31 max-pool window over a 4x4 input (pads and strides to match): one output, computed at once
    (the loop over the kernel would never end)."""
    code = ("import numpy as np\nfrom onnxstream import _core\n"
            "x = np.arange(16, dtype=np.float32).reshape(1, 1, 1, 4, 4); y = np.empty((1, 1, 1, 1, 1), np.float32)\n"
            "k, p = 1 << 31, 1 << 30\n"
            "_core.pool('max', x, [1, k, k], [1, k, k], [0, p, p], [0, p, p], [1, 1, 1], False, 2.0, y, None)\n"
            "print(float(y.reshape(-1)[0]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "15.0"
    with pytest.raises(ValueError, match="below 2\\^31"):
        _core.pool("max", np.zeros((1, 1, 1, 4, 4), np.float32), [1, 1, 1 << 40], [1, 1, 1], [0, 0, 0], [0, 0, 0],
                   [1, 1, 1], False, 2.0, np.empty((1, 1, 1, 4, 4), np.float32), None)


def test_converter_refuses_a_graph_the_runtime_would(tmp_path):
    """A malformed ONNX model (here a cycle: the first node reads the last one's output) is refused at convert
    time by the same check, and nothing is written."""
    from onnxstream.converter import ConversionError
    model = small_models.build_onnx("mlp")
    model.graph.node[0].input[0] = model.graph.node[-1].output[0]
    path = tmp_path / "cycle.onnx"
    import onnx
    onnx.save(model, str(path))
    with pytest.raises(ConversionError, match=r"the model is malformed: graph.json: nodes\[0\] .* is read before"):
        onnxstream.convert(path, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cycle.onnx"]
