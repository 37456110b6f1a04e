"""GFLOP/s of onnxstream's fused attention vs onnxruntime running the unfused MatMul-Softmax-MatMul model
(tests/test_fusion.py's attention_model), at SD1.5 and CLIP shapes, same thread count, best of a short loop.
Ours runs the converted model's FusedAttention through _core.attention on the same inputs (q and k pre-scaled
as the model does, so both compute softmax(q k^T / sqrt(d)) v). FLOPs: 2 * B * H * M * N * (D + Dv).

Clocks: `wall` (default) is what a user waits, distorted by other jobs on a shared machine; `cpu` is the process's
CPU time, steady under load (onnxruntime's threads are told not to spin so idle time is not counted); with 2+
threads it measures work, not balance, so use it with --threads 1.

    PYTHONPATH=python python bench/attention.py [--threads 2] [--clock wall|cpu]
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from timing import best_seconds

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

CASES = [  # name, (B, H, M, N, D), causal mask
    ("SD1.5 self-attention 64x64", (2, 8, 4096, 4096, 40), False),
    ("SD1.5 cross-attention 64x64", (2, 8, 4096, 77, 40), False),
    ("CLIP causal self-attention", (2, 12, 77, 77, 64), True),
]




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = ap.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    import onnx
    import onnxruntime as ort
    from onnxstream import _core
    from test_fusion import attention_model

    _core.set_num_threads(args.threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    print(f"threads {args.threads}, clock {args.clock}, ISA {os.environ.get('ONNXSTREAM_ISA', 'best')}")
    print("| case | B,H,M,N,D | ours ms | ours GFLOP/s | onnxruntime ms | onnxruntime GFLOP/s | speedup | rel L2 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (b, h, m, n, d), causal in CASES:
        mask_shape = (1, 1, m, n) if causal else None
        model = attention_model(b, h, m, n, d, mask_shape)
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((b, h, m, d), (b, h, n, d), (b, h, n, d)))
        feeds = {"q": q, "k": k, "v": v}
        mask = None
        if causal:
            mask = np.where(np.triu(np.ones((m, n)), 1) > 0, -np.inf, 0).astype(np.float32)[None, None]
            feeds["mask"] = mask
        # Ours: the same math the converted graph runs (Mul by sqrt(scale) on both sides, FusedAttention).
        s = np.float32(0.125 ** 0.5)
        qs, kts = q * s, np.ascontiguousarray((k * s).transpose(0, 1, 3, 2))
        mask4 = None if mask is None else np.broadcast_to(mask, (b, h, m, n))
        y = np.empty((b, h, m, d), np.float32)
        ours = best_seconds(lambda: _core.attention(qs, kts, v, mask4, y, False), clock, min_time=1.0)
        ref = sess.run(None, feeds)[0]
        err = np.linalg.norm(y - ref) / np.linalg.norm(ref)
        theirs = best_seconds(lambda: sess.run(None, feeds), clock, min_time=1.0)
        flop = 2.0 * b * h * m * n * (d + d)
        print(f"| {name} | {b},{h},{m},{n},{d} | {ours * 1e3:.1f} | {flop / ours / 1e9:.1f} | {theirs * 1e3:.1f} | "
              f"{flop / theirs / 1e9:.1f} | {theirs / ours:.2f}x | {err:.1e} |")


if __name__ == "__main__":
    main()
