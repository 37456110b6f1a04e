"""GFLOP/s of onnxstream's Conv (weights pre-packed as at convert time, float32 and float16) vs onnxruntime running
a single-Conv model, at SD1.5 UNet conv shapes (batch 2, 64x64 latents).

Every measurement runs in a fresh process (fresh onnxruntime session), implementations alternate, and each keeps
its best of `--rounds` processes. Clocks as in bench/gemm.py: `wall` (default with threads > 1) is what a user
waits; `cpu` is process CPU time (1 thread: the calling thread's), steady on a shared machine (onnxruntime's pool
is told not to spin so idle time is not counted).

    PYTHONPATH=python python bench/conv.py [--threads 2] [--rounds 3] [--clock wall|cpu]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from timing import best_seconds

SHAPES = [  # (N, C, H=W, M, kernel, stride)
    (2, 320, 64, 320, 3, 1),
    (2, 640, 32, 640, 3, 1),
    (2, 1280, 16, 1280, 3, 1),
    (2, 2560, 8, 1280, 3, 1),
    (2, 640, 64, 320, 1, 1),
    (2, 1280, 32, 640, 1, 1),
    (2, 320, 64, 320, 3, 2),
    (2, 4, 64, 320, 3, 1),
]
IMPLS = ["onnxruntime", "ours-f32", "ours-f16"]




def onnxruntime_conv(x, w, b, stride, threads):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k = w.shape[2]
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[k // 2] * 4, strides=[stride] * 2)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x})


def worker(impl, N, C, H, M, k, s, threads, clock_name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = rng.standard_normal((M, C, k, k), dtype=np.float32)
    b = rng.standard_normal(M, dtype=np.float32)
    Ho = (H + 2 * (k // 2) - k) // s + 1
    if impl == "onnxruntime":
        fn = onnxruntime_conv(x, w, b, s, threads)
    else:
        from onnxstream import _core
        from onnxstream.packing import pack_conv

        _core.set_num_threads(threads)
        panels = pack_conv(w.astype(np.float16) if impl == "ours-f16" else w, group=1)
        y = np.empty((N, M, 1, Ho, Ho), np.float32)
        p = k // 2
        fn = lambda: _core.conv_packed(x[:, :, None], panels, M, b, [1, k, k], [1, s, s], [0, p, p], [0, p, p],  # noqa
                                       [1, 1, 1], 1, y)
    clock = time.perf_counter if clock_name == "wall" else time.thread_time if threads == 1 else time.process_time
    return 2.0 * N * M * Ho * Ho * C * k * k / best_seconds(fn, clock) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clock", choices=["wall", "cpu"], default=None, help="default: cpu for 1 thread, else wall")
    ap.add_argument("--worker", nargs=7, metavar=("IMPL", "N", "C", "H", "M", "K", "S"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    clock = args.clock or ("cpu" if args.threads == 1 else "wall")
    if args.worker:
        print(json.dumps(worker(args.worker[0], *map(int, args.worker[1:]), args.threads, clock)))
        return
    print(f"threads={args.threads}, best of {args.rounds} processes each, GFLOP/s by {clock} clock")
    print(f"{'x':>16} {'M':>5} {'k':>2} {'s':>2} | {'ort':>6} {'f32':>6} {'f16':>6} | {'f32/ort':>7} {'f16/ort':>7}")
    for shape in SHAPES:
        best = dict.fromkeys(IMPLS, 0.0)
        for _ in range(args.rounds):
            for impl in IMPLS:  # alternate so load from other processes hits all alike
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--clock", clock, "--worker", impl,
                       *map(str, shape)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                best[impl] = max(best[impl], json.loads(out.strip().splitlines()[-1]))
        N, C, H, M, k, s = shape
        o, f32, f16 = best["onnxruntime"], best["ours-f32"], best["ours-f16"]
        print(f"{f'{N}x{C}x{H}x{H}':>16} {M:>5} {k:>2} {s:>2} | {o:6.1f} {f32:6.1f} {f16:6.1f} | "
              f"{f32 / o:7.2f} {f16 / o:7.2f}", flush=True)


if __name__ == "__main__":
    main()
