"""Work per UNet step by kernel family and by op, and how the thread pool splits it (one instrumented run).

    python bench/unet_work.py [--threads 4] [--out ~/.cache/onnxstream/peers/unet-work.json]

Runs the full-size SD1.5 UNet (batch 2, 64x64 latent: one txt2img step with guidance; the fp16 conversion of
bench/sd15_pipeline.py) once with the runtime's counting hooks on (both off by default):
- ONNXSTREAM_COUNT_KERNELS=1: dispatch.cc hands out counting trampolines, so every microkernel call adds its FLOP
  (GEMM: 2 * mr * nc * kc), weight and activation bytes and tile fill to its family (cpp/kernel_counts.cc);
- ONNXSTREAM_POOL_STATS=1: the thread pool (cpp/parallel.cc) counts, per worker, the items and chunks it ran and
  its thread CPU time inside them, and per parallel_for job its wall time and whether it was split into fewer
  chunks than threads (some worker then had nothing to do).
The counters are read at every op boundary (each op function of runtime/ops wrapped in this process only) and
given to the innermost running op, so the tables say which ops the work and any imbalance come from. With --threads 4 on a 2-core machine the items and
chunks per worker show how the split would feed a Pi Zero 2 W's four cores; the wall and CPU times are those of
four threads sharing two cores, so read their ratios (CPU time per worker), not their sum.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("ONNXSTREAM_MODEL_CACHE", Path.home() / ".cache" / "onnxstream"))

CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from onnxstream import _core
    from onnxstream.runtime import ops as ops_module
    from onnxstream.runtime.executor import Session
    unet_dir, threads = sys.argv[1], int(sys.argv[2])
    per_op, stack, mark = {}, [], [time.perf_counter()]
    def record(name):
        return per_op.setdefault(name, {"calls": 0, "seconds": 0.0, "kernels": {}, "pool": None})
    def flush():
        # what accrued since the last op boundary belongs to the innermost running op (ops such as FusedRowTiled
        # call other ops: each gets its own share, nothing is counted twice)
        now = time.perf_counter()
        if stack:
            rec = record(stack[-1])
            rec["seconds"] += now - mark[0]
            for fam, c in _core.kernel_counts().items():
                acc = rec["kernels"].setdefault(fam, dict.fromkeys(c, 0))
                for k, v in c.items():
                    acc[k] += v
            s = _core.pool_stats()
            if rec["pool"] is None:
                rec["pool"] = {k: (0 if k != "workers" else [dict(items=0, chunks=0, cpu_ns=0) for _ in s["workers"]])
                               for k in s if k != "threads"}
            for k, v in s.items():
                if k == "workers":
                    for acc, w in zip(rec["pool"]["workers"], v):
                        for kk in acc:
                            acc[kk] += w[kk]
                elif k != "threads":
                    rec["pool"][k] += v
        _core.reset_kernel_counts(); _core.reset_pool_stats()
        mark[0] = now
    def wrap(name, fn):
        def run(*args, **kw):
            flush()
            stack.append(name)
            record(name)["calls"] += 1
            try:
                return fn(*args, **kw)
            finally:
                flush()
                stack.pop()
        return run
    for name, fn in list(ops_module.OPS.items()):
        ops_module.OPS[name] = wrap(name, fn)
    session = Session(unet_dir, threads=threads)
    rng = np.random.default_rng(0)
    feeds = {"sample": rng.standard_normal((2, 4, 64, 64)).astype(np.float32),
             "timestep": np.array([500.0], np.float32),
             "encoder_hidden_states": rng.standard_normal((2, 77, 768)).astype(np.float32)}
    t = time.perf_counter()
    session.run(feeds)
    print(json.dumps({"threads": threads, "seconds": time.perf_counter() - t, "ops": per_op}))
""")


def unet_dir() -> Path:
    found = sorted((CACHE / "pipeline-bench" / "sd15-random").glob("converted-fp16-*/unet"))
    if not found:
        sys.exit("no converted SD1.5 UNet: run `python bench/sd15_pipeline.py --steps 1` first (it builds and "
                 "converts the random-weight pipeline)")
    return found[-1]


def summarize(data):
    ops = data["ops"]
    kernels = {}
    for rec in ops.values():
        for fam, c in rec["kernels"].items():
            acc = kernels.setdefault(fam, dict.fromkeys(c, 0))
            for k, v in c.items():
                acc[k] += v
    return kernels


def tables(data):
    threads, ops = data["threads"], data["ops"]
    kernels = summarize(data)
    out = [f"UNet batch 2, 64x64 latent, fp16 weights, {threads} threads: one step; run {data['seconds']:.1f} s\n",
           "| kernel family | calls | GFLOP (or G elements) | weight MB read | activation MB read | mean tile fill |",
           "|---|---|---|---|---|---|"]
    for fam, c in sorted(kernels.items(), key=lambda kv: -kv[1]["flop"]):
        if not c["calls"]:
            continue
        fill = (f"{c['tile_rows'] / c['calls']:.2f} rows x {c['tile_cols'] / c['calls']:.1f} cols"
                if c["tile_rows"] else "-")
        out.append(f"| {fam} | {c['calls']} | {c['flop'] / 1e9:.1f} | {c['weight_bytes'] / 2**20:.0f} | "
                   f"{c['a_bytes'] / 2**20:.0f} | {fill} |")
    out += ["", "| op | calls | s | GFLOP in kernels | pool jobs | jobs with < threads chunks (share of job wall "
            "time) | items per worker (min / max of mean) | CPU s per worker | inline jobs |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, rec in sorted(ops.items(), key=lambda kv: -kv[1]["seconds"]):
        p = rec["pool"]
        flop = sum(c["flop"] for f, c in rec["kernels"].items() if "gemm" in f or f in ("f32w", "f16w", "qc8w"))
        if rec["seconds"] < 0.05 * data["seconds"] / 20 and not p["jobs"]:
            continue
        items = [w["items"] for w in p["workers"]]
        mean = sum(items) / len(items) if items else 0
        spread = f"{min(items) / mean:.2f} / {max(items) / mean:.2f}" if mean else "-"
        short = (f"{p['short_jobs']} ({p['short_job_wall_ns'] / p['job_wall_ns']:.0%})" if p["job_wall_ns"]
                 else f"{p['short_jobs']}")
        cpu = " / ".join(f"{w['cpu_ns'] / 1e9:.1f}" for w in p["workers"])
        out.append(f"| {name} | {rec['calls']} | {rec['seconds']:.2f} | {flop / 1e9:.0f} | {p['jobs']} | {short} | "
                   f"{spread} | {cpu} | {p['inline_jobs']} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--out", type=Path, default=CACHE / "peers" / "unet-work.json")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "ONNXSTREAM_COUNT_KERNELS": "1",
           "ONNXSTREAM_POOL_STATS": "1"}
    r = subprocess.run([sys.executable, "-c", CHILD, str(unet_dir()), str(args.threads)], capture_output=True,
                       text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"the instrumented UNet run failed:\n{r.stderr[-3000:]}")
    data = json.loads(r.stdout.strip().splitlines()[-1])
    data["kernels"] = summarize(data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, args.out)
    print(tables(data))
    print(f"\n(raw counts: {args.out}; `python bench/arm_kernels.py --counts {args.out}` projects them)")


if __name__ == "__main__":
    main()
