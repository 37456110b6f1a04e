"""Bad input gets a clear error naming the problem, and nothing is half-written."""
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxstream
from onnxstream.converter import ConversionError
from onnxstream.graph import GRAPH_FILE, WEIGHTS_FILE, load_graph
from reference import onnxruntime_outputs


def small_model(opset=18, dims=(2, 64), extra_nodes=(), name_w="weight_a"):
    """y = relu(x + Wa) * Wb with two streamed [2, 64] weights (plus any extra nodes appended)."""
    rng = np.random.default_rng(0)
    wa = numpy_helper.from_array(rng.standard_normal((2, 64)).astype(np.float32), name_w)
    wb = numpy_helper.from_array(rng.standard_normal((2, 64)).astype(np.float32), "weight_b")
    nodes = [helper.make_node("Add", ["x", name_w], ["h"], name="add"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Mul", ["r", "weight_b"], ["y"], name="mul"), *extra_nodes]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [wa, wb])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.fixture
def converted(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(small_model(), str(path))
    return path, onnxstream.convert(path, tmp_path / "m")


def feeds():
    return {"x": np.random.default_rng(1).standard_normal((2, 64)).astype(np.float32)}


def test_small_model_matches_onnxruntime(converted):
    path, out = converted
    want = onnxruntime_outputs(str(path), feeds())["y"]
    np.testing.assert_allclose(onnxstream.Session(out).run(feeds())["y"], want, rtol=1e-6)


# ---------------------------------------------------------------- run-time input checks

def test_wrong_input_name(converted):
    with pytest.raises(onnxstream.InputError, match=r"unknown input name\(s\) \['z'\].*\['x'\]"):
        onnxstream.Session(converted[1]).run({"z": feeds()["x"]})


def test_missing_input(converted):
    with pytest.raises(onnxstream.InputError, match=r"missing input\(s\) \['x'\]"):
        onnxstream.Session(converted[1]).run({})


def test_wrong_shape(converted):
    with pytest.raises(onnxstream.InputError, match="input 'x' must have shape 2x64, got 3x64"):
        onnxstream.Session(converted[1]).run({"x": np.zeros((3, 64), np.float32)})


def test_wrong_dtype(converted):
    with pytest.raises(onnxstream.InputError, match="input 'x' must be float32, got float64"):
        onnxstream.Session(converted[1]).run({"x": np.zeros((2, 64))})


# ---------------------------------------------------------------- damaged model directories

def test_not_a_model_directory(tmp_path):
    with pytest.raises(onnxstream.ModelFormatError, match="does not exist"):
        onnxstream.Session(tmp_path / "nothing")
    with pytest.raises(onnxstream.ModelFormatError, match=f"{GRAPH_FILE} is missing"):
        onnxstream.Session(tmp_path)


def test_missing_weights_file(converted):
    os.remove(converted[1] / WEIGHTS_FILE)
    with pytest.raises(onnxstream.ModelFormatError, match=f"{WEIGHTS_FILE} is missing"):
        onnxstream.Session(converted[1])


def test_truncated_weights_file(converted):
    path = converted[1] / WEIGHTS_FILE
    last = load_graph(converted[1]).weights[-1]
    with open(path, "r+b") as f:
        f.truncate(last.offset + last.nbytes - 1)
    with pytest.raises(ValueError, match="truncated: tensor 'weight_b'"):
        onnxstream.Session(converted[1])


def test_checksum_mismatch(converted):
    w = next(w for w in load_graph(converted[1]).weights if w.name == "weight_b")
    with open(converted[1] / WEIGHTS_FILE, "r+b") as f:
        f.seek(w.offset + 5)
        byte = f.read(1)
        f.seek(w.offset + 5)
        f.write(bytes([byte[0] ^ 0x40]))
    session = onnxstream.Session(converted[1])
    with pytest.raises(ValueError, match="checksum mismatch in tensor 'weight_b'"):
        session.run(feeds())


# ---------------------------------------------------------------- converter errors

def test_unsupported_ops_are_all_listed(tmp_path):
    extra = [helper.make_node("Frobnicate", ["y"], ["d1"], name="det_node", domain="com.example"),
             helper.make_node("Defrobnicate", ["y"], ["nz"], name="nonzero_node", domain="com.example"),
             helper.make_node("Frobnicate", ["y"], ["d2"], name="det_node_2", domain="com.example")]
    model = small_model(extra_nodes=extra)
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    model.graph.output.extend([helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("d1", "d2")]
                              + [helper.make_tensor_value_info("nz", TensorProto.INT64, None)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ConversionError) as e:
        onnxstream.convert(path, tmp_path / "out")
    assert "com.example.Frobnicate: det_node, det_node_2" in str(e.value)
    assert "com.example.Defrobnicate: nonzero_node" in str(e.value)
    assert os.listdir(tmp_path) == ["m.onnx"]  # no output dir, no temp dir left behind


def test_old_opset_is_upgraded(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(small_model(opset=11), str(path))
    out = onnxstream.convert(path, tmp_path / "out")
    assert load_graph(out).opset == 13  # onnx.version_converter's upgrade
    want = onnxruntime_outputs(str(path), feeds())["y"]
    np.testing.assert_allclose(onnxstream.Session(out).run(feeds())["y"], want, rtol=1e-6)


def test_negative_dims_are_dynamic(tmp_path):
    """Paddle writes -1 for a dynamic axis: it takes --input like a symbolic one."""
    path = tmp_path / "m.onnx"
    onnx.save(small_model(dims=(-1, 64)), str(path))
    with pytest.raises(ConversionError, match=r"input 'x' has dynamic dimensions \(\?x64\); fix them with --input x=Nx64"):
        onnxstream.convert(path, tmp_path / "out")
    out = onnxstream.convert(path, tmp_path / "out", input_shapes={"x": (2, 64)})
    want = onnxruntime_outputs(str(path), feeds())["y"]
    np.testing.assert_allclose(onnxstream.Session(out).run(feeds())["y"], want, rtol=1e-6)
    with pytest.raises(ConversionError, match=r"does not fit the model's shape \['\?', 64\]"):
        onnxstream.convert(path, tmp_path / "out2", input_shapes={"x": (2, 32)})


def test_negative_dim_on_the_command_line():
    from onnxstream.converter import parse_input_shape
    assert parse_input_shape("x=1x3x48x192") == ("x", (1, 3, 48, 192))
    with pytest.raises(ConversionError, match="x=-1x3x48x192: dimensions must not be negative; give the size"):
        parse_input_shape("x=-1x3x48x192")


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_range_keeps_its_dtype_through_folding(tmp_path, dtype):
    """A constant Range folds to its inputs' type, so the Add after it folds or runs (before: float64/int64,
    the Add's fold failed silently and the run failed with 'input dtypes differ')."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    consts = [numpy_helper.from_array(np.array(v, dtype), n) for n, v in (("s", 1), ("l", 9), ("d", 2))]
    nodes = [helper.make_node("Range", ["s", "l", "d"], ["r"], name="range"),
             helper.make_node("Add", ["r", "r"], ["r2"], name="add_consts"),
             helper.make_node("Add", ["x", "r2"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, [4])],
                              [helper.make_tensor_value_info("y", elem, [4])], consts)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    out = onnxstream.convert(path, tmp_path / "out")
    x = {"x": np.arange(4).astype(dtype)}
    got = onnxstream.Session(out).run(x)["y"]
    want = onnxruntime_outputs(str(path), x)["y"]
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_failing_constant_fold_is_reported(tmp_path):
    """A node whose inputs are all constants fails at convert time, with its name (it was left to fail at run
    time, or to pass through unfolded)."""
    consts = [numpy_helper.from_array(np.arange(6, dtype=np.float32), "c"),
              numpy_helper.from_array(np.array([4], np.int64), "shape")]
    nodes = [helper.make_node("Reshape", ["c", "shape"], ["r"], name="bad_reshape"),
             helper.make_node("Add", ["x", "r"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], consts)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ConversionError, match=r"Reshape node 'bad_reshape' fails on its constant inputs "
                                              r"\(float32\[6\], int64\[1\]\): ValueError: cannot reshape"):
        onnxstream.convert(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dynamo_opset17_split_is_refused(tmp_path):
    import modelzoo
    with pytest.raises(ConversionError, match="opset-18 form.*export with opset_version=18"):
        onnxstream.convert(modelzoo.split_opset17_dynamo(), tmp_path / "out")


def test_dynamic_input_needs_a_shape(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(small_model(dims=("batch", 64)), str(path))
    with pytest.raises(ConversionError, match=r"input 'x' has dynamic dimensions \(\?x64\); fix them with --input x=Nx64"):
        onnxstream.convert(path, tmp_path / "out")
    out = onnxstream.convert(path, tmp_path / "out", input_shapes={"x": (2, 64)})
    assert onnxstream.Session(out).inputs[0].shape == [2, 64]
    with pytest.raises(ConversionError, match="--input names \\['y'\\] are not inputs"):
        onnxstream.convert(path, tmp_path / "out2", input_shapes={"y": (2, 64)})


def test_existing_output_is_not_overwritten(converted, tmp_path):
    path, out = converted
    before = (out / GRAPH_FILE).read_bytes()
    with pytest.raises(ConversionError, match="already exists"):
        onnxstream.convert(path, out)
    assert (out / GRAPH_FILE).read_bytes() == before


def test_missing_external_data(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save(small_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.onnx.data", size_threshold=0)
    os.remove(tmp_path / "ext.onnx.data")
    with pytest.raises(ConversionError, match="external weight data that is missing"):
        onnxstream.convert(path, tmp_path / "out")


def test_external_data_model_converts(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save(small_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.onnx.data", size_threshold=0)
    out = onnxstream.convert(path, tmp_path / "out")
    want = onnxruntime_outputs(str(path), feeds())["y"]
    np.testing.assert_allclose(onnxstream.Session(out).run(feeds())["y"], want, rtol=1e-6)


# ---------------------------------------------------------------- the command line: one line, no traceback

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "onnxstream", *map(str, args)], capture_output=True, text=True)


def test_cli_errors_are_one_line(converted, tmp_path):
    r = run_cli("convert", tmp_path / "missing.onnx", tmp_path / "out")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [f"onnxstream: error: {tmp_path / 'missing.onnx'} does not exist"]
    np.save(tmp_path / "x.npy", np.zeros((3, 64), np.float32))
    r = run_cli("run", converted[1], "--input", f"x={tmp_path / 'x.npy'}", "--output", tmp_path / "o.npz")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "input 'x' must have shape 2x64, got 3x64" in r.stderr
    assert not (tmp_path / "o.npz").exists()


def test_cli_run_and_info(converted, tmp_path):
    x = feeds()["x"]
    np.save(tmp_path / "x.npy", x)
    r = run_cli("run", converted[1], "--input", f"x={tmp_path / 'x.npy'}", "--output", tmp_path / "o.npz")
    assert r.returncode == 0, r.stderr
    want = onnxruntime_outputs(str(converted[0]), {"x": x})["y"]
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["y"], want, rtol=1e-6)
    r = run_cli("info", converted[1])
    assert r.returncode == 0 and "input  x: float32 2x64" in r.stdout
