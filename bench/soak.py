"""Soak: many consecutive runs of one Session, printing resident memory, open file descriptors and threads, which
must stay flat (no leak per run). A fresh process per model.

    python bench/soak.py                      # 1000 runs of a small model, 20 of a medium one
    python bench/soak.py --small 5000 --medium 50

small: tests/small_models.py's attention block (int8 packed weights, fused attention, row-tiled feed-forward);
medium: the full-size SD1.5 CLIP text encoder of tests/modelzoo.py (random weights, 235 MB as fp16, streamed;
its token table read row by row). Reported: VmRSS, open
fds and threads after the first run (warm: thread pool, caches) and at the end, with the largest value seen.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IN_PLACE = any((ROOT / "python" / "onnxstream").glob("_core*.so"))  # built in place (development), else installed


def probe() -> tuple[float, int, int]:
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    return rss, len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task"))


def soak(model_dir: str, feeds_path: str, runs: int) -> dict:
    import numpy as np
    import onnxstream
    feeds = dict(np.load(feeds_path))
    session = onnxstream.Session(model_dir)
    first = session.run(feeds)
    warm = probe()
    peak = list(warm)
    every = max(1, runs // 10)
    trace = []
    for i in range(1, runs):
        out = session.run(feeds)
        now = probe()
        peak = [max(a, b) for a, b in zip(peak, now)]
        if i % every == 0 or i == runs - 1:
            trace.append(round(now[0], 1))
    same = all(np.array_equal(out[k], first[k]) for k in first)
    end = probe()
    return dict(runs=runs, warm=warm, end=end, peak=peak, rss_trace=trace, same_result=bool(same))


def prepare(work: Path, which: str) -> tuple[Path, Path]:
    import numpy as np
    sys.path[:0] = ([str(ROOT / "python")] if IN_PLACE else []) + [str(ROOT / "tests")]
    if which == "small":
        import small_models
        model = small_models.convert("attention", work / "small")
        feeds = small_models.feeds("attention")
    else:
        import modelzoo
        import onnxstream
        onnx_path = modelzoo.export("sd15_text_encoder", "dynamo")
        model = onnxstream.convert(onnx_path, work / "medium", weights="fp16")
        feeds = modelzoo.inputs("sd15_text_encoder")
    np.savez(work / f"{which}.npz", **feeds)
    return model, work / f"{which}.npz"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", type=int, default=1000)
    p.add_argument("--medium", type=int, default=20)
    p.add_argument("--child", nargs=3, metavar=("MODEL", "FEEDS", "RUNS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(soak(args.child[0], args.child[1], int(args.child[2]))))
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(([str(ROOT / "python")] if IN_PLACE else []) +
                                                       [os.environ.get("PYTHONPATH", "")])}
    print("| model | runs | RSS MB warm -> end (max) | open fds warm -> end (max) | threads warm -> end (max) | "
          "RSS every 10% of the runs | same result |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for which, runs in (("small", args.small), ("medium", args.medium)):
            model, feeds = prepare(Path(work), which)
            out = subprocess.run([sys.executable, __file__, "--child", str(model), str(feeds), str(runs)], env=env,
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            (rss0, fd0, th0), (rss1, fd1, th1), (rssp, fdp, thp) = r["warm"], r["end"], r["peak"]
            print(f"| {which} | {runs} | {rss0:.1f} -> {rss1:.1f} ({rssp:.1f}) | {fd0} -> {fd1} ({fdp}) | "
                  f"{th0} -> {th1} ({thp}) | {' '.join(map(str, r['rss_trace']))} | {r['same_result']} |", flush=True)


if __name__ == "__main__":
    main()
