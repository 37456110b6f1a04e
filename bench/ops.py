"""Single-op ONNX models at shapes the zoo's CNNs and transformers run (MobileNetV3 / PP-OCR blocks, MiniLM), each
converted by onnxstream and run through a Session (so per-node dispatch is included), beside onnxruntime.

    PYTHONPATH=python python bench/ops.py [--threads 1] [--rounds 3] [--cases dw3x3,relu,...]

Every measurement runs in a fresh process; the engines alternate and each keeps its best of --rounds processes
(best-of-runs time within a process, by the thread's CPU clock at 1 thread, the wall clock otherwise). To compare
two onnxstream trees, run this file with PYTHONPATH pointing at each.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from timing import best_seconds


def conv(c, hw, m, k, s=1, group=1, act=None):
    return ("Conv", dict(kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4, group=group),
            [(1, c, hw, hw)], [("w", (m, c // group, k, k)), ("b", (m,))], act)


CASES = {  # name: (op, attributes, input shapes, constant inputs, activation after it)
    "dw3x3_112": conv(16, 112, 16, 3, group=16),
    "dw3x3s2_56": conv(64, 56, 64, 3, 2, group=64),
    "dw5x5_28": conv(128, 28, 128, 5, group=128),
    "dw5x5_14_hswish": conv(256, 14, 256, 5, group=256, act="HardSwish"),
    "pw_56_64x128": conv(64, 56, 128, 1),
    "pw_28_128x128_relu": conv(128, 28, 128, 1, act="Relu"),
    "conv3x3s2_224": conv(3, 224, 16, 3, 2),
    "conv3x3_112_16x16": conv(16, 112, 16, 3),
    "conv3x3_56_32x32": conv(32, 56, 32, 3),
    "conv3x3_28_64x64": conv(64, 28, 64, 3),
    "conv3x3_14_128x128": conv(128, 14, 128, 3),
    "pw_112_16x32": conv(16, 112, 32, 1),
    "pw_14_96x576": conv(96, 14, 576, 1),
    "relu": ("Relu", {}, [(1, 64, 112, 112)], [], None),
    "clip6": ("Clip", {}, [(1, 64, 112, 112)], [("lo", ()), ("hi", ())], None),
    "hardswish": ("HardSwish", {}, [(1, 64, 112, 112)], [], None),
    "sigmoid": ("Sigmoid", {}, [(1, 64, 112, 112)], [], None),
    "tanh": ("Tanh", {}, [(1, 64, 112, 112)], [], None),
    "erf": ("Erf", {}, [(1, 64, 112, 112)], [], None),
    "exp": ("Exp", {}, [(1, 64, 112, 112)], [], None),
    "add": ("Add", {}, [(1, 64, 112, 112), (1, 64, 112, 112)], [], None),
    "mul_channel": ("Mul", {}, [(1, 64, 112, 112)], [("c", (1, 64, 1, 1))], None),
    "maxpool3x3s2": ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                     [(1, 64, 112, 112)], [], None),
    "gap": ("GlobalAveragePool", {}, [(1, 256, 28, 28)], [], None),
}


def model(case):
    from onnx import TensorProto, helper, numpy_helper
    op, attrs, shapes, consts, act = CASES[case]
    rng = np.random.default_rng(0)
    inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, s) for i, s in enumerate(shapes)]
    inits = []
    for name, shape in consts:
        v = {"lo": 0.0, "hi": 6.0}.get(name)
        a = np.array(v, np.float32) if v is not None else (rng.standard_normal(shape) * 0.3).astype(np.float32)
        inits.append(numpy_helper.from_array(a, name))
    outs = ["y0"] if act else ["y"]
    nodes = [helper.make_node(op, [i.name for i in inputs] + [n for n, _ in consts], outs, **attrs)]
    if act:
        nodes.append(helper.make_node(act, ["y0"], ["y"]))
    graph = helper.make_graph(nodes, case, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def worker(impl, case, threads, clock_name, tmp):
    import onnx
    m = model(case)
    path = Path(tmp) / f"{case}.onnx"
    onnx.save(m, path)
    rng = np.random.default_rng(1)
    feeds = {f"x{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(CASES[case][2])}
    if impl == "onnxruntime":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        fn = lambda: sess.run(None, feeds)  # noqa: E731
    else:
        import onnxstream
        out = Path(tmp) / f"{case}-os"
        onnxstream.convert(path, out, overwrite=True)
        sess = onnxstream.Session(out, threads=threads)
        fn = lambda: sess.run(feeds)  # noqa: E731
    clock = time.perf_counter if clock_name == "wall" else time.thread_time if threads == 1 else time.process_time
    return best_seconds(fn, clock, min_time=0.3)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--clock", choices=["wall", "cpu"], default=None, help="default: cpu for 1 thread, else wall")
    ap.add_argument("--worker", nargs=2, metavar=("IMPL", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    clock = args.clock or ("cpu" if args.threads == 1 else "wall")
    if args.worker:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(worker(*args.worker, args.threads, clock, tmp)))
        return
    print(f"threads={args.threads}, best of {args.rounds} processes each, ms per run by the {clock} clock\n")
    print("| case | onnxruntime ms | onnxstream ms | ratio |\n|---|---|---|---|")
    for case in args.cases.split(","):
        best = {}
        for _ in range(args.rounds):
            for impl in ("onnxruntime", "onnxstream"):
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--clock", clock, "--worker", impl, case]
                r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
                if r.returncode:
                    best[impl] = float("nan")
                    print(r.stderr.strip().splitlines()[-1], file=sys.stderr)
                    continue
                best[impl] = min(best.get(impl, 1e9), json.loads(r.stdout.strip().splitlines()[-1]))
        o, s = best["onnxruntime"] * 1e3, best["onnxstream"] * 1e3
        print(f"| {case} | {o:.3f} | {s:.3f} | {s / o:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
