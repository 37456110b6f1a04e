"""GFLOP/s of onnxstream's matmul (float32, float16 and int8 weights, packed at convert time as the runtime reads
them) vs OpenBLAS sgemm at SD1.5 UNet shapes.

OpenBLAS comes from the scipy-openblas32 wheel (pip install scipy-openblas32), called through ctypes with the
same thread count. Every measurement runs in a fresh process (OpenBLAS threads spin after a call and would steal
cores from the next one), implementations alternate, and each keeps its best of `--rounds` processes.
Clocks: `wall` (default with threads > 1) is what a user waits, and load from other jobs distorts it; `cpu` is the
process's CPU time (with 1 thread: the calling thread's, where both libraries compute), steady on a shared machine
(OpenBLAS threads are told to sleep at once rather than spin so their idle time is not counted). With 2+ threads
the cpu clock measures work, not balance.

    PYTHONPATH=python python bench/gemm.py [--threads 2] [--rounds 3] [--clock wall|cpu]
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

import numpy as np

from timing import best_seconds

SHAPES = [  # (M, K, N): UNet attention/feed-forward projections at 64x64 latents and the text context
    (4096, 320, 320),
    (4096, 320, 2560),
    (4096, 1280, 320),
    (1024, 640, 640),
    (256, 1280, 1280),
    (64, 1280, 5120),
    (154, 768, 768),
]
IMPLS = ["openblas", "ours-f32", "ours-f16", "ours-int8"]




def openblas_call(threads):
    import scipy_openblas32

    lib = ctypes.CDLL(os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so"))
    lib.scipy_openblas_set_num_threads(threads)
    sgemm = lib.scipy_cblas_sgemm
    f, i, p = ctypes.c_float, ctypes.c_int, ctypes.c_void_p
    sgemm.argtypes = [i, i, i, i, i, i, f, p, i, p, i, f, p, i]
    row_major, no_trans = 101, 111

    def run(a, w, y):
        M, K = a.shape
        N = w.shape[1]
        sgemm(row_major, no_trans, no_trans, M, N, K, 1.0, a.ctypes.data, K, w.ctypes.data, N, 0.0, y.ctypes.data, N)

    return run


def worker(impl, M, K, N, threads, clock_name):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    w = rng.standard_normal((K, N), dtype=np.float32)
    bias = rng.standard_normal(N, dtype=np.float32)
    y = np.empty((M, N), np.float32)
    if impl == "openblas":
        sgemm = openblas_call(threads)
        fn = lambda: sgemm(a, w, y)  # noqa: E731
    else:
        from onnxstream import _core, packing

        _core.set_num_threads(threads)
        if impl == "ours-int8":
            panels = packing.pack_gemm_b_qc8w(w)
        else:
            panels = packing.pack_gemm_b(w.astype(np.float16) if impl == "ours-f16" else w)
        a3, y3 = a[None], y[None]
        fn = lambda: _core.matmul_packed(a3, panels, K, N, bias, y3)  # noqa: E731
    clock = time.perf_counter if clock_name == "wall" else time.thread_time if threads == 1 else time.process_time
    return 2.0 * M * K * N / best_seconds(fn, clock) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clock", choices=["wall", "cpu"], default=None, help="default: cpu for 1 thread, else wall")
    ap.add_argument("--worker", nargs=4, metavar=("IMPL", "M", "K", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    clock = args.clock or ("cpu" if args.threads == 1 else "wall")
    if args.worker:
        impl, M, K, N = args.worker[0], *map(int, args.worker[1:])
        print(json.dumps(worker(impl, M, K, N, args.threads, clock)))
        return
    import importlib.util
    if importlib.util.find_spec("scipy_openblas32") is None:
        sys.exit("bench/gemm.py needs OpenBLAS for the reference column: pip install scipy-openblas32")
    print(f"threads={args.threads}, best of {args.rounds} processes each, GFLOP/s by {clock} clock")
    print(f"| M | K | N | openblas | ours-f32 | ours-f16 | ours-int8 | f32/blas | f16/blas | int8/blas |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for M, K, N in SHAPES:
        best = dict.fromkeys(IMPLS, 0.0)
        for _ in range(args.rounds):
            for impl in IMPLS:  # alternate so load from other processes hits all alike
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--clock", clock, "--worker", impl,
                       str(M), str(K), str(N)]
                env = {**os.environ, "OPENBLAS_THREAD_TIMEOUT": "4"} if clock == "cpu" else None
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
                best[impl] = max(best[impl], json.loads(out.strip().splitlines()[-1]))
        b, f32, f16, i8 = best["openblas"], best["ours-f32"], best["ours-f16"], best["ours-int8"]
        print(f"| {M} | {K} | {N} | {b:.1f} | {f32:.1f} | {f16:.1f} | {i8:.1f} | {f32 / b:.2f} | {f16 / b:.2f} | "
              f"{i8 / b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
