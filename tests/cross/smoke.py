"""Cross-build smoke test: a tiny model converted and run on the build machine, then run again on the target
(under QEMU) from the installed wheel; the target's outputs must equal the build machine's within 1e-5.

  python tests/cross/smoke.py make DIR    # build machine: ONNX model -> DIR/model, DIR/feeds.npz, DIR/expected.npz
  python tests/cross/smoke.py check DIR   # target: run DIR/model, compare with DIR/expected.npz
The model uses MatMul, Conv, Add, Relu, Sigmoid, Mul and Transpose, leaving out ops this build's runtime
does not have yet (printed)."""
import sys
from pathlib import Path

import numpy as np


def build_onnx(path: Path, ops: set) -> list:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, used = [], [], []
    x, shape = "x", [1, 4, 6, 6]
    if "Conv" in ops:
        w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * 0.3
        inits += [numpy_helper.from_array(w, "conv_w"), numpy_helper.from_array(np.linspace(-1, 1, 8, dtype=np.float32), "conv_b")]
        nodes.append(helper.make_node("Conv", [x, "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]))
        x, ch, shape = "c", 8, [1, 8, 6, 6]
        used.append("Conv")
    else:
        ch = 4
    if "Transpose" in ops:
        nodes.append(helper.make_node("Transpose", [x], ["t"], perm=[0, 2, 3, 1]))  # [1, 6, 6, ch]
        x, shape = "t", [1, 6, 6, ch]
        used.append("Transpose")
    if "MatMul" in ops:
        w = rng.standard_normal((shape[-1], 5)).astype(np.float32) * 0.5
        inits.append(numpy_helper.from_array(w, "mm_w"))
        nodes.append(helper.make_node("MatMul", [x, "mm_w"], ["m"]))
        x, shape = "m", shape[:-1] + [5]
        used.append("MatMul")
    inits.append(numpy_helper.from_array(rng.standard_normal(shape[-1:]).astype(np.float32), "add_b"))
    nodes += [helper.make_node("Add", [x, "add_b"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
              helper.make_node("Sigmoid", ["a"], ["s"]), helper.make_node("Mul", ["r", "s"], ["y"])]
    used += ["Add", "Relu", "Sigmoid", "Mul"]
    graph = helper.make_graph(nodes, "cross_smoke", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return used


def make(out: Path) -> None:
    import onnxstream
    from onnxstream.runtime.ops import OPS

    out.mkdir(parents=True, exist_ok=True)
    ops = set(OPS)
    used = build_onnx(out / "model.onnx", ops)
    print("smoke model ops:", " ".join(used), "| missing in this runtime:",
          " ".join(sorted({"MatMul", "Conv", "Transpose"} - ops)) or "none")
    onnxstream.convert(out / "model.onnx", out / "model", overwrite=True)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 4, 6, 6)).astype(np.float32)}
    got = onnxstream.Session(out / "model").run(feeds)
    try:  # the build machine's run is itself checked against onnxruntime
        import onnxruntime as ort
        want = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        np.testing.assert_allclose(got["y"], want, rtol=1e-5, atol=1e-5)
        print("build machine matches onnxruntime")
    except ImportError:
        pass
    np.savez(out / "feeds.npz", **feeds)
    np.savez(out / "expected.npz", **got)


def check(out: Path) -> None:
    import platform

    import onnxstream
    feeds = dict(np.load(out / "feeds.npz"))
    expected = dict(np.load(out / "expected.npz"))
    got = onnxstream.Session(out / "model").run(feeds)
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-5, err_msg=name)
    err = max(float(np.max(np.abs(got[n] - expected[n]))) for n in expected)
    print(f"smoke OK on {platform.machine()} (python {platform.python_version()}, numpy {np.__version__}, "
          f"onnxstream from {Path(onnxstream.__file__).parent}): max abs diff {err:.3g}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__)
    (make if sys.argv[1] == "make" else check)(Path(sys.argv[2]))
