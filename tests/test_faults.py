"""Faults: SIGKILL and a full disk during convert, weights changed on disk between runs, power loss during
`onnxstream sd --save-latents` (SIGKILL at a random step, then --resume), damaged latents files, outputs on another
filesystem, Ctrl-C. Nothing half-written ever appears under a final name, and no result is computed from bad bytes.
References: onnxruntime on the same model, and the uninterrupted run of the same command."""
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxstream
import small_models
from onnxstream.converter import ConversionError
from onnxstream.graph import WEIGHTS_FILE, ModelFormatError, load_graph
from reference import onnxruntime_outputs
from test_pipeline import diffusers_dir, engine_model, onnx_model  # noqa: F401  (fixtures: the tiny pipeline)

ENV = dict(os.environ)  # subprocesses get onnxstream as this process has it: installed, or PYTHONPATH=python


def cli(*args):
    return [sys.executable, "-m", "onnxstream", *map(str, args)]


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A small tmpfs mounted at path (a full disk, another filesystem), or a skip saying why there is none."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                       text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'mount failed'}; needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def big_table_onnx(path: Path, rows=32768):
    """A 32 MB Gather table (row blocks, checksums) + MatMul: long enough to write that kills land inside it."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.standard_normal((rows, 256)).astype(np.float32), "table")
    w = numpy_helper.from_array(rng.standard_normal((256, 64)).astype(np.float32), "w")
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"], axis=0), helper.make_node("MatMul", ["e", "w"], ["y"])]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 64])], [table, w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


TABLE_FEEDS = {"ids": np.array([[0, 7, 32767, 100, 7]], np.int64)}


def check_complete(model_dir: Path, onnx_path: Path):
    """A model dir under its final name is whole: it opens, runs and matches onnxruntime."""
    got = onnxstream.Session(model_dir).run(TABLE_FEEDS)["y"]
    np.testing.assert_allclose(got, onnxruntime_outputs(str(onnx_path), TABLE_FEEDS)["y"], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- convert: SIGKILL, full disk

def test_sigkill_during_convert_never_leaves_a_half_written_model(tmp_path):
    src = big_table_onnx(tmp_path / "m.onnx")
    out = tmp_path / "out"
    start = time.perf_counter()
    subprocess.run(cli("convert", src, tmp_path / "timing"), env=ENV, check=True, capture_output=True)
    whole = time.perf_counter() - start
    rng = np.random.default_rng(13)
    outcomes = []
    for trial in range(10):
        p = subprocess.Popen(cli("convert", src, out, "--force"), env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        if trial % 2:  # at a random point of the whole run
            time.sleep(rng.uniform(0.2, 1.1) * whole)
        else:          # while it writes: once its temp dir exists (or the run is over)
            while p.poll() is None and not list(tmp_path.glob(f".out.tmp-{p.pid}")):
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.3))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if out.exists():   # a model under the final name is always complete: the earlier one or the new one
            check_complete(out, src)
        outcomes.append((p.returncode, out.exists(), len(list(tmp_path.glob(".out.tmp-*")))))
    print("SIGKILL trials (returncode, out exists, temp dirs left):", outcomes)
    assert any(code == -signal.SIGKILL for code, _, _ in outcomes)
    assert any(left for _, _, left in outcomes), "some kills must land while the temp dir is being written"
    r = subprocess.run(cli("convert", src, out, "--force"), env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    check_complete(out, src)
    assert not list(tmp_path.glob(".out.tmp-*")), "the next convert removes the killed runs' temp dirs"


def test_disk_full_during_convert(tmp_path):
    src = tmp_path / "table.onnx"
    onnx.save(small_models.build_onnx("table"), str(src))  # 1.1 MB of weights
    with tmpfs(tmp_path / "small", "1m") as small:
        with pytest.raises(ConversionError, match="no space left on the device of .*nothing was written"):
            onnxstream.convert(src, small / "out")
        assert os.listdir(small) == []   # no output, no temp dir
        r = subprocess.run(cli("convert", src, small / "out"), env=ENV, capture_output=True, text=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("onnxstream: error: no space left on the device")
        assert os.listdir(small) == []


# ---------------------------------------------------------------- weights changed on disk between runs

@pytest.fixture
def mlp(tmp_path):
    return small_models.convert("mlp", tmp_path / "mlp")


def flip(path: Path, offset: int):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))


@pytest.mark.parametrize("name, message", [("w2", r"checksum mismatch in tensor 'w2\[0:16\]'"),
                                           ("w1", r"checksum mismatch in tensor 'w1\[16:32\]'"),
                                           ("b1", "checksum mismatch in tensor 'b1'")])
def test_bit_flip_between_runs_is_caught_at_every_run(mlp, name, message):
    feeds = small_models.feeds("mlp")
    # resident_bytes=0: every run streams every weight again (a resident weight is the copy verified at its first
    # read, so a later flip on disk cannot reach it: checked below)
    session = onnxstream.Session(mlp, resident_bytes=0)
    resident = onnxstream.Session(mlp)
    good = session.run(feeds)["y"]
    np.testing.assert_array_equal(resident.run(feeds)["y"], good)
    w = next(w for w in load_graph(mlp).weights if w.name == name)
    offset = w.offset + (w.nbytes // 6 + 3 if w.cols_per_block else w.nbytes // 2)  # w1: inside its 2nd block
    flip(mlp / WEIGHTS_FILE, offset)
    for _ in range(3):  # the first run that reads it, and every later one: never a result from the bad bytes
        with pytest.raises(ValueError, match=message):
            session.run(feeds)
    with pytest.raises(ValueError, match=message):
        onnxstream.Session(mlp).run(feeds)
    if not w.cols_per_block:  # column blocks are never resident: they stream and are checked at every run
        np.testing.assert_array_equal(resident.run(feeds)["y"], good)
    flip(mlp / WEIGHTS_FILE, offset)  # restored: the same session computes the same result again
    np.testing.assert_array_equal(session.run(feeds)["y"], good)


def test_truncation_between_runs(tmp_path):
    model = small_models.convert("table", tmp_path / "table")
    feeds = small_models.feeds("table")
    session = onnxstream.Session(model)
    session.run(feeds)
    w = load_graph(model).weights[0]
    with open(model / WEIGHTS_FILE, "r+b") as f:
        f.truncate(w.offset + w.nbytes // 2)
    for _ in range(2):
        with pytest.raises(ValueError, match="tensor 'table' .*(truncated|end of file)"):
            session.run(feeds)
    with pytest.raises(ModelFormatError, match="truncated: tensor 'table'"):
        onnxstream.Session(model)


# ---------------------------------------------------------------- power loss during `onnxstream sd`

def latents_done(path: Path) -> int:
    from onnxstream.pipelines.latents_file import load_latents
    try:
        return load_latents(path)["done"]
    except (ValueError, OSError):
        return -1


def png_pixels(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


STEPS = 6
SAMPLERS = ["euler_a", "lcm", "euler", "dpmpp_2m", "ddim"]


def sd(model, out, sampler, *extra):
    return cli("sd", "--model", model, "--prompt", "a red fox in snow", "--steps", STEPS, "--sampler", sampler,
               "--seed", 11, "--guidance", 1.0 if sampler == "lcm" else 5.0, "--threads", 1, "--output", out, *extra)


def test_power_loss_then_resume_gives_the_same_image(engine_model, tmp_path):  # noqa: F811
    reference = {}
    for sampler in SAMPLERS:
        r = subprocess.run(sd(engine_model, tmp_path / f"{sampler}.png", sampler), env=ENV, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        reference[sampler] = png_pixels(tmp_path / f"{sampler}.png")
    rng = np.random.default_rng(5)
    for trial in range(10):
        sampler = SAMPLERS[trial % len(SAMPLERS)]
        state, out = tmp_path / f"state{trial}.npz", tmp_path / f"killed{trial}.png"
        at = int(rng.integers(1, STEPS))  # kill once at least this many steps are saved
        p = subprocess.Popen(sd(engine_model, out, sampler, "--save-latents", state), env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while p.poll() is None and latents_done(state) < at:
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if out.exists():  # it finished before the kill landed: then the image is whole and right
            assert np.array_equal(png_pixels(out), reference[sampler])
            continue
        assert latents_done(state) >= at, f"trial {trial}: the state file must be whole after a kill"
        resumed = tmp_path / f"resumed{trial}.png"
        r = subprocess.run(cli("sd", "--model", engine_model, "--resume", state, "--output", resumed), env=ENV,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert np.array_equal(png_pixels(resumed), reference[sampler]), f"trial {trial} ({sampler}, step {at})"


def test_damaged_latents_file_is_a_clear_error(engine_model, tmp_path):  # noqa: F811
    import zipfile
    state = tmp_path / "state.npz"
    r = subprocess.run(sd(engine_model, tmp_path / "a.png", "euler_a", "--save-latents", state), env=ENV,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    good = state.read_bytes()
    with zipfile.ZipFile(state) as z:
        info = z.getinfo("latents.npy")
    damaged = {
        "truncated": good[:len(good) // 2],
        "bit flip in the latents": bytearray(good),
        "empty": b"",
    }
    damaged["bit flip in the latents"][info.header_offset + 30 + len(info.filename) + 200] ^= 0x04
    for what, data in damaged.items():
        bad = tmp_path / "bad.npz"
        bad.write_bytes(bytes(data))
        out = tmp_path / "never.png"
        r = subprocess.run(cli("sd", "--model", engine_model, "--resume", bad, "--output", out), env=ENV,
                           capture_output=True, text=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (what, r.stderr)
        assert "is not a latents file" in r.stderr or "is damaged" in r.stderr, (what, r.stderr)
        assert not out.exists(), what
    # Well-formed but inconsistent: latents of another size, more steps done than the run has.
    with np.load(state) as z:
        arrays = {k: z[k] for k in z.files}
    import json
    meta = json.loads(arrays["meta"].tobytes())
    for what, edit in [("another size", lambda a, m: a.update(latents=np.zeros((1, 4, 3, 3), np.float32))),
                       ("steps done", lambda a, m: m.update(done=99)),
                       ("NaN latents", lambda a, m: a["latents"].__setitem__((0, 0, 0, 0), np.nan))]:
        a, m = {k: v.copy() for k, v in arrays.items()}, json.loads(json.dumps(meta))
        edit(a, m)
        a["meta"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
        np.savez(tmp_path / "odd.npz", **a)
        r = subprocess.run(cli("sd", "--model", engine_model, "--resume", tmp_path / "odd.npz", "--output",
                               tmp_path / "never.png"), env=ENV, capture_output=True, text=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (what, r.stderr)
        assert "damaged" in r.stderr or "another model or size" in r.stderr, (what, r.stderr)
        assert not (tmp_path / "never.png").exists()


def test_outputs_on_another_filesystem_are_atomic(engine_model, mlp, tmp_path):  # noqa: F811
    with tmpfs(tmp_path / "target", "64m") as target:
        r = subprocess.run(sd(engine_model, target / "out.png", "euler", "--save-latents", target / "s.npz"),
                           env=ENV, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        np.save(tmp_path / "x.npy", small_models.feeds("mlp")["x"])
        r = subprocess.run(cli("run", mlp, "--input", f"x={tmp_path / 'x.npy'}", "--output", target / "o.npz"),
                           env=ENV, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert sorted(os.listdir(target)) == ["o.npz", "out.png", "s.npz"]  # no temp files left
        assert latents_done(target / "s.npz") == STEPS
        np.testing.assert_array_equal(np.load(target / "o.npz")["y"],
                                      onnxstream.Session(mlp).run(small_models.feeds("mlp"))["y"])
    with tmpfs(tmp_path / "full", "4k") as full:  # no room for the PNG: an error, and nothing half-written
        r = subprocess.run(sd(engine_model, full / "out.png", "euler"), env=ENV, capture_output=True, text=True)
        assert r.returncode == 1 and "No space left" in r.stderr, r.stderr
        assert os.listdir(full) == []


def test_ctrl_c_during_sd_exits_at_once_cleanly(engine_model, tmp_path):  # noqa: F811
    state, out = tmp_path / "s.npz", tmp_path / "out.png"
    p = subprocess.Popen(cli("sd", "--model", engine_model, "--prompt", "x", "--steps", 400, "--sampler", "euler",
                             "--seed", 1, "--output", out, "--save-latents", state), env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while p.poll() is None and latents_done(state) < 2:
        time.sleep(0.01)
    sent = time.perf_counter()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    seconds = time.perf_counter() - sent
    print(f"exited {seconds:.2f} s after SIGINT")
    assert p.returncode == 130 and err.strip().splitlines()[-1] == "onnxstream: error: interrupted", err
    assert "Traceback" not in err
    assert seconds < 1.0
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["s.npz"]  # nothing half-written
    assert 2 <= latents_done(state) < 400    # the state file is whole: the run can be resumed


def test_weights_kept_by_the_caller_outlive_their_session(mlp):
    """A resident weight (or any weight array a caller keeps) holds its reader's budget state, not the reader: it
    stays valid, with the bytes onnxruntime's reference weights have, after the session and its reader are gone
    (the budget bookkeeping was a use-after-free here, found by bench/fuzz.py's ASan replay)."""
    import gc
    from onnx import numpy_helper
    feeds = small_models.feeds("mlp")
    session = onnxstream.Session(mlp)
    good = session.run(feeds)["y"]
    kept = dict(session._resident)
    assert kept, "the small MLP's weights are resident"
    del session
    gc.collect()
    reference = {t.name: numpy_helper.to_array(t) for t in small_models.build_onnx("mlp").graph.initializer}
    unpacked = [n for n, a in kept.items() if n in reference and isinstance(a, np.ndarray)  # (not panels)
                and a.shape == reference[n].shape]
    assert unpacked
    for name in unpacked:
        np.testing.assert_array_equal(kept[name], reference[name])
    del kept
    gc.collect()
    np.testing.assert_array_equal(onnxstream.Session(mlp).run(feeds)["y"], good)
