"""Load and concurrency: what onnxstream promises (README "Robustness"):
  - one Session used by several threads: runs take turns (a per-session lock), each result is exact;
  - several Sessions on one model, in one process or in several: they run in parallel, each result exact;
  - a run stopped by Ctrl-C (KeyboardInterrupt) stops its weight-reader thread: no thread outlives it.
Exact = bit-identical to the same run alone, which itself matches onnxruntime."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import onnxstream
import small_models
from reference import onnxruntime_outputs



@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrency")
    return {kind: small_models.convert(kind, root / kind) for kind in ("attention", "cnn", "table")}


def alone(models, kind):
    got = onnxstream.Session(models[kind]).run(small_models.feeds(kind))
    want = onnxruntime_outputs(str(models[kind].with_name(kind + ".onnx")), small_models.feeds(kind))
    for name, w in want.items():
        assert np.abs(got[name] - w).max() <= 0.1 * np.abs(w).max()   # (int8 attention: 1e-2 relative)
    return got


def hammer(run, threads=4, runs=15):
    """Results of `runs` calls of run() in each of `threads` threads started together; exceptions kept."""
    results, barrier = [], threading.Barrier(threads)

    def work():
        barrier.wait()
        for _ in range(runs):
            try:
                results.append(run())
            except Exception as e:  # noqa: BLE001 (collected, then asserted absent)
                results.append(e)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results


@pytest.mark.parametrize("kind", ["attention", "cnn", "table"])
def test_threads_share_one_session(models, kind):
    want = alone(models, kind)
    session = onnxstream.Session(models[kind])
    for got in hammer(lambda: session.run(small_models.feeds(kind))):
        assert not isinstance(got, Exception), got
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])


def test_sessions_on_one_model_run_in_parallel(models):
    want = {kind: alone(models, kind) for kind in models}
    sessions = {kind: [onnxstream.Session(models[kind]) for _ in range(2)] for kind in models}
    counter = iter(range(10 ** 6))
    lock = threading.Lock()

    def run():
        with lock:
            i = next(counter)
        kind = list(models)[i % 3]
        return kind, sessions[kind][i // 3 % 2].run(small_models.feeds(kind))

    for got in hammer(run):
        assert not isinstance(got, Exception), got
        kind, out = got
        for name in want[kind]:
            np.testing.assert_array_equal(out[name], want[kind][name])


def test_processes_on_one_model_directory(models, tmp_path):
    want = alone(models, "cnn")
    np.save(tmp_path / "x.npy", small_models.feeds("cnn")["x"])
    env = dict(os.environ)  # (onnxstream as this process has it: installed, or PYTHONPATH=python)
    procs = [subprocess.Popen([sys.executable, "-c",
                               "import sys, numpy as np, onnxstream\n"
                               "s = onnxstream.Session(sys.argv[1]); x = np.load(sys.argv[2])\n"
                               "for i in range(20): out = s.run({'x': x})\n"
                               "np.save(sys.argv[3], out['y'])\n",
                               str(models["cnn"]), str(tmp_path / "x.npy"), str(tmp_path / f"y{i}.npy")], env=env)
             for i in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    for i in range(3):
        np.testing.assert_array_equal(np.load(tmp_path / f"y{i}.npy"), want["y"])


def threads_of_this_process() -> int:
    return len(os.listdir("/proc/self/task"))


def test_ctrl_c_stops_the_run_and_its_threads(models):
    session = onnxstream.Session(models["cnn"], threads=2)
    feeds = small_models.feeds("cnn")
    session.run(feeds)                      # the kernel thread pool now exists; the reader thread does not
    before = threads_of_this_process()
    timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        while time.perf_counter() - start < 20:
            session.run(feeds)
    timer.join()
    assert threads_of_this_process() == before   # the weight reader of the interrupted run has stopped
    np.testing.assert_array_equal(session.run(feeds)["y"], alone(models, "cnn")["y"])  # and the session works
