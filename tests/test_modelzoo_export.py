"""Sanity test of the model zoo: every tiny model exports with both torch
exporters, loads in onnxruntime and matches the torch module.

Exports go to the shared cache (ONNXSTREAM_MODEL_CACHE or
~/.cache/onnxstream/models), so only the first run pays for them (~1-2 min).
"""

import functools
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import modelzoo  # noqa: E402

RTOL_L2 = 1e-4


@functools.lru_cache(maxsize=None)
def _reference(name):
    return modelzoo.torch_outputs(name)


def _rel_l2(got, ref):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


def test_inputs_are_deterministic():
    for name in modelzoo.MODEL_NAMES:
        a, b = modelzoo.inputs(name), modelzoo.inputs(name)
        assert list(a) == modelzoo.input_names(name)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("exporter", modelzoo.EXPORTERS)
@pytest.mark.parametrize("name", modelzoo.TINY_MODELS)
def test_tiny_export_matches_torch(name, exporter):
    path = modelzoo.export(name, exporter)
    assert path.suffix == ".onnx" and path.is_file()
    assert modelzoo.export(name, exporter) == path  # cache hit, same file

    model = onnx.load(str(path), load_external_data=False)
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == modelzoo.OPSETS[exporter]
    assert [i.name for i in model.graph.input] == modelzoo.input_names(name)
    assert [o.name for o in model.graph.output] == modelzoo.output_names(name)

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = modelzoo.inputs(name)
    got = sess.run(None, feeds)
    ref = _reference(name)
    assert len(got) == len(ref)
    for (oname, r), g in zip(ref.items(), got):
        assert g.shape == r.shape, oname
        err = _rel_l2(g, r)
        assert err < RTOL_L2, f"{name}/{exporter}/{oname}: rel L2 error {err:.3g}"


def test_fresh_export_is_atomic(tmp_path):
    path = modelzoo.export("split_chunk", "legacy", cache_dir=tmp_path)
    assert path.parent == tmp_path
    assert path == modelzoo.cache_path("split_chunk", "legacy", tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    # the model, its metadata and the lock directory; no temp leftovers
    assert names == sorted([path.name, path.name + ".json", ".locks"])
    mtime = path.stat().st_mtime_ns
    assert modelzoo.export("split_chunk", "legacy", cache_dir=tmp_path) == path
    assert path.stat().st_mtime_ns == mtime


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError):
        modelzoo.export("no_such_model", "dynamo")
    with pytest.raises(ValueError):
        modelzoo.export("small_cnn", "torchscript")
    with pytest.raises(ValueError):
        modelzoo.inputs("no_such_model")


def test_split_opset17_dynamo_is_the_broken_case():
    """dynamo exporter + opset_version=17 writes an opset-18 Split
    (num_outputs attribute) into a model declaring opset 17."""
    path = modelzoo.split_opset17_dynamo()
    model = onnx.load(str(path))
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == 17
    splits = [n for n in model.graph.node if n.op_type == "Split"]
    assert len(splits) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in splits[0].attribute}
    assert attrs.get("num_outputs") == 2
    assert len(splits[0].input) == 1  # no 'split' sizes input
    with pytest.raises(onnx.checker.ValidationError, match="num_outputs"):
        onnx.checker.check_model(model)
    with pytest.raises(Exception, match="num_outputs"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
