"""Small ONNX models (onnx.helper, seeded random weights) that, once converted, hold every kind of field a model
directory has: plain, packed (GEMM panels, Conv panels, int8 qc8w), column-blocked and row-table weights, inline
constants, fused ops (attention, GroupNorm, row-tiled chains, band convs) and their structured attributes.
Used by tests/test_untrusted_models.py (crafted directories), tests/test_faults.py and bench/fuzz.py (seeds).

    build_onnx(kind) -> onnx.ModelProto;  feeds(kind) -> {name: array};  convert(kind, out_dir) -> out_dir
"""
from __future__ import annotations

import numpy as np

KINDS = ("mlp", "cnn", "attention", "table")
WEIGHTS = {"mlp": "fp32", "cnn": "fp16", "attention": "int8", "table": "fp32"}


def _rng(seed=0):
    return np.random.default_rng(seed)


def build_onnx(kind: str):
    from onnx import TensorProto, helper, numpy_helper

    rng = _rng()
    inits, nodes = [], []

    def w(name, shape, scale=0.3):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def node(op, ins, outs, **attrs):
        nodes.append(helper.make_node(op, ins, outs, name=f"{op.lower()}_{len(nodes)}", **attrs))
        return outs[0]

    if kind == "mlp":  # x [4, 32] -> MatMul (column blocks) -> Add -> Relu -> Gemm transB -> Sigmoid -> Mul
        x, shape_in = "x", [4, 32]
        h = node("MatMul", [x, w("w1", (32, 96))], ["h"])
        h = node("Relu", [node("Add", [h, w("b1", (96,))], ["a"])], ["r"])
        g = node("Gemm", [h, w("w2", (40, 96)), w("b2", (40,))], ["g"], transB=1)
        y = node("Mul", [node("Sigmoid", [g], ["s"]), g], ["y"])
        out_shape = [4, 40]
    elif kind == "cnn":  # x [1, 8, 8, 8]: Conv -> GroupNorm+SiLU -> Conv (+ residual) -> Resize 2x -> Conv, then pools
        x, shape_in = "x", [1, 8, 8, 8]
        const = lambda name, a: inits.append(numpy_helper.from_array(np.asarray(a), name)) or name  # noqa: E731
        x0 = node("Conv", [x, w("pw", (8, 8, 1, 1))], ["x0"])
        r = node("Reshape", [x0, const("gshape", np.array([1, 4, -1], np.int64))], ["gr"])
        n = node("InstanceNormalization", [r, const("ones", np.ones(4, np.float32)),
                                           const("zeros", np.zeros(4, np.float32))], ["gi"], epsilon=1e-5)
        n = node("Reshape", [n, const("xshape", np.array(shape_in, np.int64))], ["gb"])
        n = node("Add", [node("Mul", [n, w("gw", (8, 1, 1))], ["gm"]), w("gbias", (8, 1, 1))], ["ga"])
        n = node("Mul", [n, node("Sigmoid", [n], ["gs"])], ["silu"])
        c = node("Conv", [n, w("cw", (8, 8, 3, 3), 0.1), w("cb", (8,))], ["c"], pads=[1, 1, 1, 1])
        c = node("Add", [c, x0], ["res"])
        up = node("Resize", [c, "", const("scales", np.array([1, 1, 2, 2], np.float32))], ["up"], mode="nearest")
        c = node("Conv", [up, w("uw", (8, 8, 3, 3), 0.1), w("ub", (8,))], ["u"], pads=[1, 1, 1, 1])
        p = node("MaxPool", [c], ["p"], kernel_shape=[2, 2], strides=[2, 2])
        a = node("AveragePool", [p], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)
        d = node("Conv", [a, w("dw", (8, 1, 3, 3))], ["d"], pads=[1, 1, 1, 1], group=8)
        t = node("ConvTranspose", [d, w("tw", (8, 4, 2, 2))], ["t"], strides=[2, 2])
        y = node("Conv", [t, w("ow", (3, 4, 1, 1))], ["y"])
        out_shape = [1, 3, 16, 16]
    elif kind == "attention":  # x [1, 16, 32]: LayerNorm, attention (MatMul-Softmax-MatMul), feed-forward
        x, shape_in = "x", [1, 16, 32]
        ln = node("LayerNormalization", [x, w("g", (32,)), w("be", (32,))], ["ln"], axis=-1)
        q = node("MatMul", [ln, w("wq", (32, 32), 0.3 * 32 ** -0.5)], ["q"])
        k = node("MatMul", [ln, w("wk", (32, 32))], ["k"])
        v = node("MatMul", [ln, w("wv", (32, 32))], ["v"])
        kt = node("Transpose", [k], ["kt"], perm=[0, 2, 1])
        att = node("MatMul", [node("Softmax", [node("MatMul", [q, kt], ["qk"])], ["p"], axis=-1), v], ["att"])
        h = node("Add", [x, att], ["h"])
        f = node("MatMul", [h, w("f1", (32, 64))], ["f"])
        f = node("Add", [f, w("fb", (64,))], ["fa"])
        f = node("Relu", [f], ["fr"])
        y = node("Add", [node("MatMul", [f, w("f2", (64, 32))], ["f2o"]), h], ["y"])
        out_shape = [1, 16, 32]
    elif kind == "table":  # token ids [1, 7] -> Gather from a 1.1 MB table (read row by row) -> ReduceMean
        x, shape_in = "ids", [1, 7]
        inits.append(numpy_helper.from_array(rng.standard_normal((1100, 256)).astype(np.float32), "table"))
        e = node("Gather", ["table", x], ["e"], axis=0)
        y = node("ReduceMean", [e], ["y"], axes=[2], keepdims=0)
        out_shape = [1, 7]
    else:
        raise ValueError(kind)
    in_type = TensorProto.INT64 if kind == "table" else TensorProto.FLOAT
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info(x, in_type, shape_in)],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model


def feeds(kind: str) -> dict:
    rng = _rng(1)
    if kind == "table":
        return {"ids": np.array([[0, 5, 1099, 17, 5, 640, -1]], np.int64)}
    shape = {"mlp": (4, 32), "cnn": (1, 8, 8, 8), "attention": (1, 16, 32)}[kind]
    return {"x": rng.standard_normal(shape).astype(np.float32)}


def convert(kind: str, out_dir, onnx_path=None, **options):
    """build_onnx(kind) saved (to onnx_path, or beside out_dir) and converted into out_dir. The mlp's first
    weight is stored in column blocks (small blocks for a small model)."""
    from pathlib import Path

    import onnx
    import onnxstream
    from onnxstream import packing
    out_dir = Path(out_dir)
    onnx_path = Path(onnx_path or out_dir.with_name(out_dir.name + ".onnx"))
    onnx.save(build_onnx(kind), str(onnx_path))
    from onnxstream import fusion, fusion_conv
    # Thresholds made for SD1.5's sizes, lowered so that these small models get every fused form.
    small = [(packing, "COLUMN_BLOCK_BYTES", 2048 if kind == "mlp" else packing.COLUMN_BLOCK_BYTES),
             (fusion_conv, "SUBPIXEL_MIN_PIXELS", 0), (fusion_conv, "FP16_MIN_BYTES", 0),
             (fusion_conv, "RESIDUAL_MIN_BYTES", 0),
             (fusion, "ROW_TILE_MIN_BYTES", 0), (fusion, "ROW_TILE_MIN_ROWS", 0), (fusion, "ROW_TILE_ROWS", 5)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in small]
    for module, name, value in small:
        setattr(module, name, value)
    try:
        return onnxstream.convert(onnx_path, out_dir, weights=options.pop("weights", WEIGHTS[kind]), **options)
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
