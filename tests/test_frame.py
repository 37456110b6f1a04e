"""`onnxstream frame` end to end, as separate processes on a tiny random-weight pipeline converted at 800x480
(the Inky Impression 7.3"'s size): pictures on schedule, identical to what StableDiffusion makes for the chosen
prompt and seed, dithered as frame/dither.py does; SIGKILL in the middle of a picture and in the wait between two,
then a restart: the same picture byte for byte, the schedule kept; bytes written per picture; the memory check;
the systemd unit; the real inky drivers on mocked GPIO/SPI (tests/inky_hardware.py), checked on the SPI bus."""
from __future__ import annotations

import importlib.util
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("dynamicprompts")

from test_pipeline import CACHE, diffusers_dir, png_text  # noqa: E402,F401  (diffusers_dir: a fixture)
from test_pipeline_taesd import taesd_dir  # noqa: E402,F401  (a fixture: random-weight AutoencoderTiny)

from child_env import child_env  # noqa: E402
from onnxstream.frame.dither import dither  # noqa: E402
from onnxstream.frame.panels import PANELS  # noqa: E402
from onnxstream.frame.prompts import Prompts  # noqa: E402
from onnxstream.frame.schedule import Schedule, parse_every  # noqa: E402
from onnxstream.pipelines.images import to_uint8  # noqa: E402
from onnxstream.pipelines.stable_diffusion import StableDiffusion  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# no .pyc writes by the frame process (pip compiles them at install time; the systemd unit sets this too)
ENV = child_env(PYTHONDONTWRITEBYTECODE="1")
PROMPTS = """# the frame's prompts
{a watercolor|a linocut|an oil} painting of __animal__ at dusk
a lighthouse on a cliff, __animal__ in the foreground
"""


@pytest.fixture(scope="session")
def frame_model(diffusers_dir, tmp_path_factory):  # noqa: F811
    """test_pipeline's tiny pipeline with a UNet whose only attention is in its mid block (6000 latent tokens
    at 800x480 would make the down blocks' exported attention constants GBs), exported once at 800x480
    (cached) and converted per session."""
    onnx = CACHE / "frame-onnx-800x480"
    if not onnx.is_dir():
        import torch
        from diffusers import UNet2DConditionModel
        from onnxstream.pipelines.convert_pipeline import convert_pipeline
        src = tmp_path_factory.mktemp("frame-src") / "diffusers"
        shutil.copytree(diffusers_dir, src)
        shutil.rmtree(src / "unet")
        torch.manual_seed(0)
        UNet2DConditionModel(sample_size=8, down_block_types=("DownBlock2D", "DownBlock2D"),
                             up_block_types=("UpBlock2D", "UpBlock2D"), block_out_channels=(32, 64),
                             layers_per_block=1, norm_num_groups=8, cross_attention_dim=32,
                             attention_head_dim=8).save_pretrained(src / "unet")
        convert_pipeline(src, onnx, onnx_only=True, width=800, height=480)  # written to a temp dir, renamed
    from onnxstream.pipelines.convert_pipeline import convert_pipeline
    out = tmp_path_factory.mktemp("frame-model") / "tiny-800x480"
    convert_pipeline(onnx, out)
    return out


@pytest.fixture
def prompts(tmp_path):
    (tmp_path / "wildcards").mkdir()
    (tmp_path / "wildcards" / "animal.txt").write_text("a cat\na fox\nan owl\n")
    path = tmp_path / "prompts.txt"
    path.write_text(PROMPTS)
    return path


def frame_cmd(model, prompts, work, *extra):
    return [sys.executable, "-m", "onnxstream", "frame", "--model", str(model), "--prompts", str(prompts),
            "--output", str(work / "pictures"), "--state-dir", str(work / "state"), "--display", "none", *extra]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV, **kw)


def lines_until(proc, pattern, timeout=120):
    """Read the process's stdout until a line containing `pattern` (within `timeout` s); returns the lines read."""
    if not hasattr(proc, "lines"):  # one reader thread per process: readline cannot time out by itself
        proc.lines = queue.Queue()
        threading.Thread(target=lambda: [proc.lines.put(l) for l in proc.stdout] + [proc.lines.put(None)],
                         daemon=True).start()
    seen, deadline = [], time.time() + timeout
    while True:
        try:
            line = proc.lines.get(timeout=max(0.0, deadline - time.time()))
        except queue.Empty:
            line = None
        if line is None:
            break
        seen.append(line)
        if pattern in line:
            return seen
    raise AssertionError(f"no line with {pattern!r} in {timeout} s; got:\n{''.join(seen)}")


def expected_picture(model, path, steps, sampler="euler"):
    """What StableDiffusion makes for the prompt and seed written in the PNG, and its dithered panel image."""
    text = png_text(path)
    image = StableDiffusion(model)(text["prompt"], steps=steps, sampler=sampler, seed=int(text["seed"]),
                                   output_type="np")[0]
    pixels = to_uint8(image)
    return text, pixels, dither(pixels, PANELS["inky-7.3"].palette(0.5))


def read_png(path):
    from PIL import Image
    with Image.open(path) as im:
        return im.mode, np.asarray(im), im.getpalette()


def test_once_makes_the_picture_and_its_panel_image(frame_model, prompts, tmp_path):
    r = run(frame_cmd(frame_model, prompts, tmp_path, "--once", "--steps", "3", "--seed", "41"))
    assert r.returncode == 0, r.stderr + r.stdout
    log = r.stdout.splitlines()
    assert sum(" step " in line and "ETA" in line for line in log) == 3  # one line per step
    assert any("picture 1 done" in line for line in log)
    colour, panel = tmp_path / "pictures" / "frame-00001.png", tmp_path / "pictures" / "frame-00001-panel.png"
    text, pixels, indices = expected_picture(frame_model, colour, steps=3)
    assert text["seed"] == "41" and text["picture"] == "1" and text["panel"] == "inky-7.3"
    assert Prompts(prompts).choose(41) == (text["template"], text["prompt"])  # reproducible from the seed
    mode, got, _ = read_png(colour)
    assert mode == "RGB" and got.shape == (480, 800, 3) and np.array_equal(got, pixels)
    mode, got, palette = read_png(panel)
    assert mode == "P" and got.shape == (480, 800) and np.array_equal(got, indices)
    assert palette[:21] == np.asarray(PANELS["inky-7.3"].pure).flatten().tolist()
    assert png_text(panel)["saturation"] == "0.5" and png_text(panel)["dither"] == "oklab"
    schedule = json.loads((tmp_path / "state" / "schedule.json").read_text())
    assert schedule["number"] == 2 and schedule["current"] is None and schedule["base_seed"] == 41
    assert not (tmp_path / "state" / "picture.npz").exists()
    assert json.loads((frame_model / "memory.json").read_text())["peak_rss_mb"] > 50


def test_taesd_decoder_makes_the_picture_the_pipeline_makes(frame_model, taesd_dir, prompts, tmp_path):  # noqa: F811
    from onnxstream.pipelines.convert_pipeline import convert_pipeline
    model = convert_pipeline(CACHE / "frame-onnx-800x480", tmp_path / "tiny-800x480-taesd", tiny_vae=taesd_dir)
    r = run(frame_cmd(model, prompts, tmp_path, "--once", "--steps", "2", "--seed", "5", "--decoder", "taesd"))
    assert r.returncode == 0, r.stderr + r.stdout
    colour = tmp_path / "pictures" / "frame-00001.png"
    text = png_text(colour)
    assert text["decoder"] == "taesd"
    image = StableDiffusion(model)(text["prompt"], steps=2, seed=5, decoder="taesd", output_type="np")[0]
    full = StableDiffusion(model)(text["prompt"], steps=2, seed=5, output_type="np")[0]
    _, got, _ = read_png(colour)
    assert got.shape == (480, 800, 3) and np.array_equal(got, to_uint8(image))
    assert np.abs(to_uint8(full).astype(int) - got).mean() > 1  # TAESD's picture, not the full VAE's


def test_bytes_written_per_picture_are_the_checkpoints_and_the_images(frame_model, prompts, tmp_path):
    """/proc/self/io write_bytes of the frame process during one picture: nothing but the per-step checkpoint,
    the two PNGs and the small state files (each a few KB rounded up to pages)."""
    steps = 4
    r = run(frame_cmd(frame_model, prompts, tmp_path, "--once", "--steps", str(steps), "--seed", "5"))
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if "picture 1 done" in l)
    written = float(line.split("wrote ")[1].split(" MB")[0]) * 1e6
    if written == 0:
        pytest.skip("this filesystem does not account write_bytes (tmpfs?)")
    pictures = sum(p.stat().st_size for p in (tmp_path / "pictures").iterdir())
    checkpoint = tmp_path / "checkpoint.npz"  # the size of one step's checkpoint, made the same way
    StableDiffusion(frame_model)("a cat", steps=1, seed=5, output_type="np", save_latents=checkpoint)
    page = lambda n: -(-n // 4096) * 4096  # noqa: E731  (write_bytes counts whole pages)
    files = page(pictures) + steps * page(checkpoint.stat().st_size) + 3 * 4096  # + schedule.json x2, memory.json
    budget = 1.1 * files + 65536  # the filesystem's own rounding
    print(f"wrote {written / 1e6:.3f} MB for one picture ({steps} steps); PNGs {pictures / 1e6:.3f} MB, "
          f"checkpoint {checkpoint.stat().st_size / 1e3:.0f} KB a step, files {files / 1e6:.3f} MB")
    assert pictures <= written <= budget, (written, pictures, budget)


def test_kill_9_mid_picture_resumes_to_the_same_bytes(frame_model, prompts, tmp_path):
    steps, args = 6, ["--once", "--steps", "6", "--sampler", "euler_a", "--seed", "77"]
    ref = tmp_path / "uninterrupted"
    assert run(frame_cmd(frame_model, prompts, ref, *args)).returncode == 0

    work = tmp_path / "killed"
    proc = subprocess.Popen(frame_cmd(frame_model, prompts, work, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    lines_until(proc, f"step 2/{steps}")
    proc.send_signal(signal.SIGKILL)  # a power cut
    proc.wait()
    assert not (work / "pictures" / "frame-00001.png").exists()
    state = json.loads((work / "state" / "schedule.json").read_text())
    assert state["current"]["number"] == 1 and state["current"]["seed"] == 77

    r = run(frame_cmd(frame_model, prompts, work, *args))
    assert r.returncode == 0, r.stderr
    resumed = [l for l in r.stdout.splitlines() if "resuming after step" in l]
    assert resumed, r.stdout
    done = int(resumed[0].split("resuming after step ")[1].split()[0])
    assert 2 <= done < steps
    assert sum(" step " in l and "ETA" in l for l in r.stdout.splitlines()) == steps - done
    for name in ("frame-00001.png", "frame-00001-panel.png"):
        assert (work / "pictures" / name).read_bytes() == (ref / "pictures" / name).read_bytes(), name


def test_schedule_survives_kill_9_between_pictures(frame_model, prompts, tmp_path):
    every = 30.0  # more than a picture takes here
    cmd = frame_cmd(frame_model, prompts, tmp_path, "--every", "30s", "--steps", "1", "--seed", "1000")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    lines_until(proc, "next picture (2) at")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((tmp_path / "state" / "schedule.json").read_text())
    assert state["number"] == 2 and state["current"] is None
    started = (tmp_path / "pictures" / "frame-00001.png").stat().st_mtime

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        seen = lines_until(proc, "picture 2 done")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert any("next picture (2) at" in l for l in seen)  # it waited for the due time, it did not start at once
    first = next(l for l in seen if "picture 2: seed" in l)
    assert "seed 1001" in first
    begun = time.mktime(time.strptime(first[:19], "%Y-%m-%d %H:%M:%S"))  # the log's time, to the second
    assert begun >= int(state["due"]) and started < state["due"] <= started + every  # a period after picture 1 began
    assert png_text(tmp_path / "pictures" / "frame-00002.png")["seed"] == "1001"


def test_schedule_rules():
    assert parse_every("3h") == 10800 and parse_every("1h30m") == 5400 and parse_every("45s") == 45
    for bad in ("3x", "h", "", "0s", "3 h"):
        with pytest.raises(ValueError, match="--every"):
            parse_every(bad)
    s = Schedule(base_seed=10, number=4, current=dict(number=4, seed=13, started=1000.0))
    s.finish(every=3600, record={}, now=1200.0)
    assert (s.number, s.due, s.current) == (5, 4600.0, None) and s.seed_of(5) == 14
    s.current = dict(number=5, started=4600.0)
    s.finish(every=3600, record={}, now=90000.0)  # off for a day: the next one at once, not a burst
    assert s.due == 90000.0 and s.seconds_to_wait(3600, now=90000.0) == 0
    s.due = 1e12  # the clock went back: never wait more than one period
    assert s.seconds_to_wait(3600, now=90000.0) == 3600


def test_prompts_are_seeded_and_errors_are_clear(tmp_path, prompts):
    p = Prompts(prompts)
    picks = [p.choose(seed) for seed in range(40)]
    assert picks == [p.choose(seed) for seed in range(40)]  # the seed decides
    assert {t for t, _ in picks} == set(p.templates()) and len({q for _, q in picks}) >= 6
    for template, prompt in picks:
        assert "{" not in prompt and "__" not in prompt and any(a in prompt for a in ("cat", "fox", "owl"))
    (tmp_path / "prompts.txt").write_text("a picture of __plant__\n")
    with pytest.raises(ValueError, match=r"__plant__ has no values: make .*wildcards/plant\.txt"):
        Prompts(prompts).check()
    (tmp_path / "prompts.txt").write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match="has no prompts"):
        Prompts(prompts).templates()
    # without the dynamicprompts package: plain prompts work, templates say what to install
    code = ("import sys; sys.modules['dynamicprompts'] = None\n"
            "from onnxstream.frame.prompts import Prompts\n"
            f"p = Prompts({str(tmp_path / 'plain.txt')!r})\n"
            "print(p.choose(3)[1])\n"
            "p.expand('a {{red|blue}} door', 1)\n")
    (tmp_path / "plain.txt").write_text("a red door\n")
    r = run([sys.executable, "-c", code])
    assert r.stdout.strip() == "a red door" and "pip install dynamicprompts" in r.stderr


def model_with_peak(frame_model, tmp_path, peak_mb):
    """The model's parts (symlinks) with a memory.json recording `peak_mb`."""
    model = tmp_path / "model"
    model.mkdir()
    for item in frame_model.iterdir():
        if item.name != "memory.json":
            (model / item.name).symlink_to(item)
    (model / "memory.json").write_text(json.dumps({"peak_rss_mb": peak_mb}))
    return model


def test_refuses_to_start_without_enough_memory(frame_model, prompts, tmp_path):
    model = model_with_peak(frame_model, tmp_path, 10_000_000)
    r = run(frame_cmd(model, prompts, tmp_path, "--once", "--steps", "1"))
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "not enough free memory" in err[0] and "10500000 MB" in err[0] and "available" in err[0]
    assert not (tmp_path / "pictures").exists() or not any((tmp_path / "pictures").iterdir())


def test_memory_limit_of_the_cgroup_counts(frame_model, prompts, tmp_path):
    """Under a hard 300 MB cgroup limit (memlimit) a model recorded at 400 MB is refused, with the cgroup's free
    memory as 'available' (MemAvailable alone would show the whole machine's)."""
    found = [p / "shared" / "tools" / "memlimit" for p in (ROOT.parent, ROOT.parent.parent)]  # shared/ beside the repo
    memlimit = next((p for p in found if p.is_file()), None)
    if memlimit is None or os.geteuid() != 0:
        pytest.skip("needs shared/tools/memlimit (cgroup v1) and root")
    model = model_with_peak(frame_model, tmp_path, 400)
    r = run(["bash", str(memlimit), "300M", *frame_cmd(model, prompts, tmp_path, "--once", "--steps", "1")])
    if "no writable cgroup" in r.stderr:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 1, r.stderr + r.stdout
    line = next(l for l in r.stderr.splitlines() if "not enough free memory" in l)
    available = float(line.split("only ")[1].split(" MB")[0])
    assert available < 300, line


def test_errors_are_one_line(frame_model, prompts, tmp_path):
    cases = [(["--panel", "600x448"], "convert the model for it: onnxstream convert DIFFUSERS_DIR "
                                      "tiny-800x480-600x448 --width 600 --height 448"),
             (["--panel", "inky-5"], "unknown panel 'inky-5'"),
             (["--every", "soon"], "--every expects a duration"),
             (["--saturation", "2"], "--saturation must be between 0 and 1"),
             (["--sampler", "heun"], "unknown sampler"),
             (["--decoder", "taesd"], "has no TAESD decoder; convert the model again with --tiny-vae")]
    for extra, message in cases:
        r = run(frame_cmd(frame_model, prompts, tmp_path, "--once", *extra))
        assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, (extra, r.stderr)
    # a second frame on the same state dir
    cmd = frame_cmd(frame_model, prompts, tmp_path, "--every", "1h", "--steps", "1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        lines_until(proc, "frame:")
        r = run(cmd)
        assert r.returncode == 1 and "another onnxstream frame is running" in r.stderr
    finally:
        proc.kill()
        proc.wait()


def test_install_systemd_writes_a_unit_that_runs_the_same_command(frame_model, prompts, tmp_path, monkeypatch):
    from onnxstream.cli import build_parser, main
    from onnxstream.frame import systemd
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # as a user, not root: a user unit under XDG_CONFIG_HOME
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    assert main(["frame", "--model", str(frame_model), "--prompts", "prompts.txt", "--every", "2h",
                 "--panel", "inky-7.3", "--steps", "2", "--output", "out dir", "--install-systemd"]) == 0
    unit = tmp_path / "config" / "systemd" / "user" / systemd.NAME
    text = unit.read_text()
    exec_start = next(l for l in text.splitlines() if l.startswith("ExecStart="))[len("ExecStart="):]
    import shlex
    words = shlex.split(exec_start)
    assert words[:4] == [sys.executable, "-m", "onnxstream", "frame"]
    args = build_parser().parse_args(words[3:])
    assert Path(args.prompts) == prompts and Path(args.output) == tmp_path / "out dir" and args.every == "2h"
    assert args.steps == 2 and args.panel == "inky-7.3" and not args.install_systemd and not args.once
    assert "WantedBy=default.target" in text and "Restart=on-failure" in text
    assert not list(unit.parent.glob(".*tmp*"))
    if shutil.which("systemd-analyze"):  # systemd's own parser: no syntax errors, the executable exists
        for path, content in ((unit, text), (tmp_path / "system.service", systemd.unit_text(words[4:], "pi"))):
            path.write_text(content)
            r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
            problems = [l for l in r.stderr.splitlines() if str(path.name) in l and "User=" not in l]
            assert not problems, r.stderr


def inky_frames(log_path):
    """(chip selects, data) of every DTM (0x10: the picture) transfer the driver sent, from the SPI log."""
    entries = [json.loads(l) for l in Path(log_path).read_text().splitlines()]
    frames, i = [], 0
    while i < len(entries):
        e = entries[i]
        if e["dc"] == 0 and e["data"] == "10":
            data, i = bytearray(), i + 1
            while i < len(entries) and entries[i]["dc"] == 1:
                data += bytes.fromhex(entries[i]["data"])
                i += 1
            frames.append((e["cs"], bytes(data)))
        else:
            i += 1
    return frames


def unpack_nibbles(data):
    b = np.frombuffer(data, np.uint8)
    return np.stack([b >> 4, b & 0x0F], axis=1).reshape(-1)


def test_inky_shows_the_panel_image_on_the_spi_bus(frame_model, prompts, tmp_path):
    """--display inky with inky.auto() on a 7.3" ACeP EEPROM: the driver's picture data on the SPI bus are the
    panel image's indices, two pixels a byte."""
    if importlib.util.find_spec("inky") is None:
        pytest.skip("needs Pimoroni's inky library (pip install --no-deps inky: its hardware modules are mocked)")
    log = tmp_path / "spi.jsonl"
    cmd = frame_cmd(frame_model, prompts, tmp_path, "--once", "--steps", "1", "--seed", "3")
    cmd = [sys.executable, str(ROOT / "tests" / "inky_hardware.py"), "20", str(log), *cmd[3:]]
    cmd[cmd.index("--display") + 1] = "inky"
    r = run(cmd)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "display: Inky Impression 7.3\" (7-colour ACeP, AC073TC1A) found" in r.stdout
    assert "picture 1: on the panel" in r.stdout
    _, indices, _ = read_png(tmp_path / "pictures" / "frame-00001-panel.png")
    (cs, data), = inky_frames(log)
    assert cs == [8] and len(data) == 800 * 480 // 2
    assert np.array_equal(unpack_nibbles(data).reshape(480, 800), indices)


def test_inky_spectra_13_gets_both_halves(tmp_path):
    """Spectra 6 13.3": our six pure colours map onto the driver's codes (no second dithering), the picture is
    rotated and split between the two controllers as the driver does."""
    if importlib.util.find_spec("inky") is None:
        pytest.skip("needs Pimoroni's inky library (pip install --no-deps inky: its hardware modules are mocked)")
    rng = np.random.default_rng(0)
    indices = rng.integers(0, 6, (1200, 1600)).astype(np.uint8)
    np.save(tmp_path / "indices.npy", indices)
    log = tmp_path / "spi.jsonl"
    r = run([sys.executable, str(ROOT / "tests" / "inky_hardware.py"), "21", str(log), "show",
             str(tmp_path / "indices.npy"), "spectra-13.3"])
    assert r.returncode == 0, r.stderr
    frames = inky_frames(log)
    assert [cs for cs, _ in frames] == [[26], [16]]
    codes = np.array(PANELS["spectra-13.3"].codes, np.uint8)[indices]
    region = np.rot90(codes, -1)                                   # [1600, 1200], as EL133UF1.show
    assert np.array_equal(unpack_nibbles(frames[0][1]).reshape(1600, 600), region[:, :600])
    assert np.array_equal(unpack_nibbles(frames[1][1]).reshape(1600, 600), region[:, 600:])


def test_display_auto_without_a_panel_saves_only(frame_model, prompts, tmp_path):
    cmd = frame_cmd(frame_model, prompts, tmp_path, "--once", "--steps", "1")
    cmd[cmd.index("--display") + 1] = "auto"
    code = "import sys; sys.modules['inky'] = None; from onnxstream.cli import main; sys.exit(main(sys.argv[1:]))"
    r = run([sys.executable, "-c", code, *cmd[3:]])
    assert r.returncode == 0, r.stderr
    assert "display: no inky panel found" in r.stdout and (tmp_path / "pictures" / "frame-00001-panel.png").exists()
    cmd[cmd.index("--display") + 1] = "inky"
    r = run([sys.executable, "-c", code, *cmd[3:]])
    assert r.returncode == 1 and "--display inky: cannot open the panel" in r.stderr
