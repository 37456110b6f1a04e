"""Full-size SD1.5 networks (random weights): onnxstream vs onnxruntime, each run in a fresh process.

    python bench/sd15.py [--networks text_encoder,unet,vae_decoder] [--weights fp32,fp16,int8] [--runs 3]

Builds and exports the networks once (cached by tests/modelzoo.py), converts them, then for every network and
weight format runs onnxruntime and onnxstream on the same inputs and prints one markdown table: median time per
run, peak RSS (VmHWM, with its anonymous and file-backed parts), bytes read and written (/proc/self/io), output
error vs onnxruntime (relative L2, and PSNR over the reference output's range) and the time ratio
onnxstream / onnxruntime.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import modelzoo  # noqa: E402

NETWORKS = {"text_encoder": "sd15_text_encoder", "unet": "sd15_unet", "vae_decoder": "sd15_vae_decoder"}
CACHE = Path.home() / ".cache" / "onnxstream" / "converted"

# One run of one engine in a fresh process; prints a JSON line with its measurements.
RUNNER = textwrap.dedent("""
    import json, statistics, sys, time
    import numpy as np
    engine, model, feeds_path, out_path, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    feeds = dict(np.load(feeds_path))
    def io():
        return {k: int(v) for k, v in (line.split(": ") for line in open("/proc/self/io"))}
    io0 = io()
    if engine == "onnxruntime":
        import onnxruntime as ort
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        run = lambda: dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    else:
        import onnxstream
        session = onnxstream.Session(model, resident_bytes=0)  # as the pipeline runs them: every weight streams
        run = lambda: session.run(feeds)
    io_loaded = io()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    io1 = io()
    np.savez(out_path, **out)
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    kb = lambda k: int(status[k].split()[0]) / 1024
    print(json.dumps({"seconds": statistics.median(times), "peak_mb": kb("VmHWM"), "anon_mb": kb("RssAnon"),
                      "file_mb": kb("RssFile"), "read_mb": (io1["read_bytes"] - io0["read_bytes"]) / 2**20,
                      "load_read_mb": (io_loaded["rchar"] - io0["rchar"]) / 2**20,
                      "run_read_mb": (io1["rchar"] - io_loaded["rchar"]) / 2**20 / runs,
                      "written_mb": (io1["write_bytes"] - io0["write_bytes"]) / 2**20, "runs": runs}))
""")


def run_engine(engine: str, model: Path, feeds: Path, out: Path, runs: int) -> dict:
    r = subprocess.run([sys.executable, "-c", RUNNER, engine, str(model), str(feeds), str(out), str(runs)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["killed"])[-1]}
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["outputs"] = dict(np.load(out))
    return result


def converter_revision() -> str:
    """Changes whenever the converter's code does, so cached conversions never go stale."""
    import hashlib
    src = ROOT / "python" / "onnxstream"
    files = sorted(src.rglob("*.py"))
    return hashlib.sha1(b"".join(f.read_bytes() for f in files)).hexdigest()[:8]


def converted(name: str, onnx_path: Path, weights: str) -> Path:
    import onnxstream
    out = CACHE / f"{onnx_path.stem}-{weights}-{converter_revision()}"
    if not out.exists():
        for stale in CACHE.glob(f"{onnx_path.stem}-{weights}-*"):  # older converter revisions: GBs each
            shutil.rmtree(stale, ignore_errors=True)
        start = time.time()
        onnxstream.convert(onnx_path, out, weights=weights)
        print(f"converted {name} ({weights}) in {time.time() - start:.0f} s", file=sys.stderr)
    return out


def rel_l2(a, b) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def psnr(a, ref) -> float:
    """Peak signal-to-noise ratio in dB, the peak being the reference output's range (random-weight networks do
    not produce images in [-1, 1])."""
    a, ref = a.astype(np.float64), ref.astype(np.float64)
    rmse = float(np.sqrt(np.mean((a - ref) ** 2)))
    return float("inf") if rmse == 0 else 20 * np.log10((ref.max() - ref.min()) / rmse)


def errors(ours: dict, ref: dict):
    """(worst relative L2, worst PSNR) over the outputs, or None when either run failed."""
    if "outputs" not in ours or "outputs" not in ref:
        return None
    return (max(rel_l2(ours["outputs"][k], v) for k, v in ref["outputs"].items()),
            min(psnr(ours["outputs"][k], v) for k, v in ref["outputs"].items()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", default=",".join(NETWORKS))
    p.add_argument("--weights", default="fp32,fp16,int8", help="comma-separated formats among fp32, fp16, int8")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--exporter", default="dynamo", choices=modelzoo.EXPORTERS)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for net in args.networks.split(","):
            name = NETWORKS[net]
            onnx_path = modelzoo.export(name, args.exporter)
            feeds = tmp / f"{net}-feeds.npz"
            np.savez(feeds, **modelzoo.inputs(name))
            print(f"running onnxruntime on {net}", file=sys.stderr)
            ref = run_engine("onnxruntime", onnx_path, feeds, tmp / "ref.npz", args.runs)
            rows.append((net, "fp32", "onnxruntime", ref, None))
            for weights in args.weights.split(","):
                model = converted(name, onnx_path, weights)
                print(f"running onnxstream on {net} ({weights})", file=sys.stderr)
                ours = run_engine("onnxstream", model, feeds, tmp / "ours.npz", args.runs)
                rows.append((net, weights, "onnxstream", ours, errors(ours, ref)))
            print_table(rows)
    return 0


def print_table(rows) -> None:
    print("\n| network | weights | engine | time/run (s) | peak RSS MB | RSS at exit MB (anon + file) | "
          "MB read per run (at load) | MB written | rel. L2 error vs onnxruntime fp32 | PSNR dB | time vs onnxruntime |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ref_time = {}
    for net, weights, engine, r, err in rows:
        if "error" in r:
            print(f"| {net} | {weights} | {engine} | failed: {r['error'][:80]} | | | | | | | |")
            continue
        if engine == "onnxruntime":
            ref_time[net] = r["seconds"]
        ratio = r["seconds"] / ref_time[net] if net in ref_time and engine != "onnxruntime" else None
        print(f"| {net} | {weights} | {engine} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | "
              f"{r['anon_mb'] + r['file_mb']:.0f} ({r['anon_mb']:.0f} + {r['file_mb']:.0f}) | "
              f"{r['run_read_mb']:.0f} ({r['load_read_mb']:.0f}) | "
              f"{r['written_mb']:.1f} | "
              f"{'' if err is None else f'{err[0]:.1e} | {err[1]:.1f}'}{' |' if err is None else ''} | "
              f"{'' if ratio is None else f'{ratio:.2f}x'} |")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
