"""Quantized ops against onnxruntime and exact integer references: the ONNX node cases, the integer ops on random
data (exact int32 sums), and small torch CNN / transformer exports quantized by onnxruntime.quantization
(quantize_static in QDQ and QOperator formats, quantize_dynamic), run by onnxruntime and onnxstream.

Tolerances: integer results are compared exactly. Float outputs of quantized models are compared with rtol 1e-5:
both engines compute the same integers and the same float32 scale products, but onnxruntime's graph optimizations
fuse a DequantizeLinear-Mul chain into one kernel that rounds once less (6.6e-8 relative seen).
The models are quantized with reduce_range=True: without it onnxruntime's AVX2 kernels for uint8 x int8 products
(vpmaddubsw) saturate the int16 sum of each pair of products, so onnxruntime itself is not exact there
(test_matmulinteger_exact_where_onnxruntime_saturates shows it); onnxstream's sums are always exact."""
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxstream
from conformance import all_cases, run_case
from onnxstream.runtime.ops.common import ONNX_DTYPES
from reference import onnxruntime_outputs
from test_controlflow import upgraded

QUANTIZED = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
             "QLinearMatMul", "QLinearConv"}


def _as_array(v):
    """Case data as numpy; None when it is a tensor type numpy has no dtype for (float8, int4, int2, float4)."""
    if isinstance(v, (np.ndarray, np.generic)):  # (some cases hold 0-d numpy scalars)
        return np.asarray(v)
    if isinstance(v, onnx.TensorProto) and v.data_type in ONNX_DTYPES:
        return numpy_helper.to_array(v)
    return None


def quantized_cases():
    run, skipped = [], []
    for c in all_cases():
        if not ({n.op_type for n in c.model.graph.node} & QUANTIZED):
            continue
        data = [([_as_array(v) for v in ins], [_as_array(v) for v in outs]) for ins, outs in c.data_sets]
        if all(v is not None for ins, outs in data for v in ins + outs):
            run.append(type("Case", (), {"name": c.name, "model": c.model, "data_sets": data}))
        else:
            skipped.append(c.name)
    return run, skipped


CASES, SKIPPED = quantized_cases()


def test_quantized_case_list():
    print(f"\nquantized node cases: {len(CASES)} run; not run (float8, int4, int2 or float4 tensors, types numpy "
          f"lacks): {', '.join(SKIPPED)}")
    assert len(CASES) >= 29


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_quantized_node_case(case, tmp_path):
    run_case(upgraded(case), tmp_path)


# ---------------------------------------------------------------- integer ops, exact

def one_node(op, inputs, out_type, attrs=None, domain=""):
    """A model of one node whose inputs are all graph inputs (name -> array); returns (model, feeds)."""
    elem = lambda a: helper.np_dtype_to_tensor_dtype(a.dtype)  # noqa: E731
    node = helper.make_node(op, list(inputs), ["y"], domain=domain, **(attrs or {}))
    g = helper.make_graph([node], "q", [helper.make_tensor_value_info(k, elem(v), v.shape) for k, v in inputs.items()],
                          [helper.make_tensor_value_info("y", out_type, None)])
    opsets = [helper.make_opsetid("", 21)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(g, opset_imports=opsets, ir_version=10), inputs


def run_engine(model, feeds, tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    out = onnxstream.convert(path, tmp_path / "m", input_shapes={k: v.shape for k, v in feeds.items()})
    return onnxstream.Session(out).run(feeds)["y"]


def exact_matmul(a, b, azp, bzp):
    return (a.astype(np.int64) - np.asarray(azp, np.int64)) @ (b.astype(np.int64) - np.asarray(bzp, np.int64))


def test_matmulinteger_exact_where_onnxruntime_saturates(tmp_path):
    """uint8 x int8 with large values: each pair of products exceeds int16. onnxstream's int32 sums equal numpy's
    int64 ones; onnxruntime's AVX2 path (vpmaddubsw) saturates them (it is checked here that it still does, so the
    reason for reduce_range in the model tests stays true)."""
    rng = np.random.default_rng(0)
    a = rng.integers(200, 256, (3, 17, 40), dtype=np.uint8)
    b = rng.integers(-128, -100, (40, 33), dtype=np.int8)
    azp, bzp = np.array(7, np.uint8), np.array(-3, np.int8)
    model, feeds = one_node("MatMulInteger", {"A": a, "B": b, "a_zp": azp, "b_zp": bzp}, TensorProto.INT32)
    got = run_engine(model, feeds, tmp_path)
    want = exact_matmul(a, b, azp, bzp)
    assert got.dtype == np.int32 and np.array_equal(got, want)
    ort = onnxruntime_outputs(model, feeds)["y"]
    assert not np.array_equal(ort, want)  # onnxruntime's saturation (see the module docstring)


@pytest.mark.parametrize("a_dtype,b_dtype", [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8)])
def test_matmulinteger_per_column_zero_points(a_dtype, b_dtype, tmp_path):
    rng = np.random.default_rng(1)
    info_a, info_b = np.iinfo(a_dtype), np.iinfo(b_dtype)
    a = rng.integers(info_a.min, info_a.max, (2, 5, 300), dtype=a_dtype, endpoint=True)
    b = rng.integers(info_b.min, info_b.max, (300, 150), dtype=b_dtype, endpoint=True)
    azp = np.array(info_a.min + 3, a_dtype)
    bzp = rng.integers(info_b.min, info_b.max, 150, dtype=b_dtype)
    model = one_node("MatMulInteger", {"A": a, "B": b, "a_zp": azp, "b_zp": bzp}, TensorProto.INT32)
    got = run_engine(*model, tmp_path)
    assert np.array_equal(got, exact_matmul(a, b, azp, bzp))


def test_conv_integer_and_qlinearconv_exact(tmp_path):
    """Grouped, strided, padded: ConvInteger equals an int64 reference; QLinearConv equals onnxruntime's."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (2, 8, 9, 11), dtype=np.uint8)
    w = rng.integers(-127, 128, (12, 4, 3, 3), dtype=np.int8)
    attrs = {"group": 2, "strides": [2, 1], "pads": [1, 0, 1, 2]}
    xzp, wzp = np.array(11, np.uint8), np.array(0, np.int8)
    got = run_engine(*one_node("ConvInteger", {"x": x, "w": w, "x_zp": xzp, "w_zp": wzp}, TensorProto.INT32, attrs), tmp_path / "a")
    xp = np.pad(x.astype(np.int64) - 11, [(0, 0), (0, 0), (1, 1), (0, 2)])
    want = np.zeros_like(got, dtype=np.int64)
    for g in range(2):
        for m in range(6):
            k = w[g * 6 + m].astype(np.int64)
            for i in range(got.shape[2]):
                for j in range(got.shape[3]):
                    want[:, g * 6 + m, i, j] = (xp[:, g * 4:(g + 1) * 4, 2 * i:2 * i + 3, j:j + 3] * k).sum((1, 2, 3))
    assert np.array_equal(got, want)
    # QLinearConv with per-channel weight scales (7-bit weights: onnxruntime is exact there too)
    w7 = (w // 2).astype(np.int8)
    feeds = {"x": x, "xs": np.array(0.02, np.float32), "xzp": xzp, "w": w7,
             "ws": rng.uniform(0.001, 0.01, 12).astype(np.float32), "wzp": np.zeros(12, np.int8),
             "ys": np.array(0.3, np.float32), "yzp": np.array(120, np.uint8),
             "B": rng.integers(-2000, 2000, 12).astype(np.int32)}
    model, feeds = one_node("QLinearConv", feeds, TensorProto.UINT8, attrs)
    got = run_engine(model, feeds, tmp_path / "b")
    assert got.dtype == np.uint8 and np.array_equal(got, onnxruntime_outputs(model, feeds)["y"])


# ---------------------------------------------------------------- models quantized by onnxruntime

def _torch_models():
    import torch

    class CNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16)
            self.c2 = torch.nn.Conv2d(16, 16, 3, padding=1, groups=4)
            self.c3, self.fc = torch.nn.Conv2d(16, 32, 1, stride=2), torch.nn.Linear(32, 10)

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            y = torch.nn.functional.max_pool2d(y + torch.relu(self.c2(y)), 2)
            return self.fc(torch.relu(self.c3(y)).mean((2, 3)))

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)
            self.head = torch.nn.Linear(32, 5)

        def forward(self, x):
            return self.head(self.layer(x))

    return {"cnn": (CNN, (1, 3, 16, 16)), "encoder": (Encoder, (1, 8, 32))}


@pytest.fixture(scope="module")
def float_models(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime.quantization")
    d = tmp_path_factory.mktemp("quantized")
    out = {}
    torch.manual_seed(0)
    for name, (cls, shape) in _torch_models().items():
        path = d / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(cls().eval(), (torch.randn(*shape),), str(path), dynamo=False, opset_version=17,
                              input_names=["x"])
        out[name] = (path, shape)
    return out


@pytest.mark.parametrize("name", ["cnn", "encoder"])
@pytest.mark.parametrize("how", ["static_qdq", "static_qoperator", "dynamic"])
def test_onnxruntime_quantized_model(float_models, name, how, tmp_path):
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_dynamic, quantize_static
    path, shape = float_models[name]
    rng = np.random.default_rng(3)

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.data = iter([{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(8)])

        def get_next(self):
            return next(self.data, None)

    q = tmp_path / "q.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how == "dynamic":
            quantize_dynamic(str(path), str(q), reduce_range=True)
        else:
            fmt = QuantFormat.QDQ if how == "static_qdq" else QuantFormat.QOperator
            quantize_static(str(path), str(q), Calibration(), quant_format=fmt, reduce_range=True)
    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert ops & {"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger"}
    x = {"x": rng.standard_normal(shape).astype(np.float32)}
    out = onnxstream.convert(q, tmp_path / "m")
    got = list(onnxstream.Session(out).run(x).values())[0]
    want = {}
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level, options.log_severity_level = level, 3
        want[level] = ort.InferenceSession(str(q), options, providers=["CPUExecutionProvider"]).run(None, x)[0]
    # The ONNX semantics (onnxruntime without graph optimizations): the same within float32 rounding.
    np.testing.assert_allclose(got, want[ort.GraphOptimizationLevel.ORT_DISABLE_ALL], rtol=1e-5, atol=1e-6)
    optimized = want[ort.GraphOptimizationLevel.ORT_ENABLE_ALL]
    if how == "static_qdq":
        # onnxruntime's optimizer turns DQ -> op -> Q groups into its own int8 kernels, whose results differ from
        # the float ops between DQ and Q by a quantization step here and there (onnxstream runs the float ops).
        assert np.linalg.norm(got - optimized) / np.linalg.norm(optimized) < 0.1
    else:
        np.testing.assert_allclose(got, optimized, rtol=1e-5, atol=1e-6)
    # and the quantized model is a fair approximation of the float one (the quantization did something sane)
    fp32 = onnxruntime_outputs(str(path), x)
    ref = list(fp32.values())[0]
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.1
