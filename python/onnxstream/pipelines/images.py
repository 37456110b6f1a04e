"""Image in/out for the pipelines: PNG writing (stdlib zlib, no Pillow needed) and init-image loading."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] HxWx3 -> uint8, rounded like diffusers' numpy_to_pil ((x * 255).round())."""
    return (np.asarray(image, dtype=np.float32) * 255).round().clip(0, 255).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(pixels: np.ndarray, text: dict | None = None, palette: np.ndarray | None = None) -> bytes:
    """An RGB PNG of uint8 HxWx3 `pixels` with tEXt chunks (latin-1 keys; values stored as iTXt when not latin-1);
    with a uint8 [K, 3] `palette`, an indexed PNG of uint8 HxW palette indices."""
    h, w = pixels.shape[:2]
    c = 1 if palette is not None else 3
    assert pixels.shape == ((h, w) if c == 1 else (h, w, 3)) and pixels.dtype == np.uint8
    raw = np.concatenate([np.zeros((h, 1), np.uint8), pixels.reshape(h, w * c)], axis=1).tobytes()  # filter 0
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3 if c == 1 else 2, 0, 0, 0))
    if palette is not None:
        out += _chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    for key, value in (text or {}).items():
        value = str(value)
        try:
            out += _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
        except UnicodeEncodeError:  # iTXt: keyword, no compression, empty language and translated keyword
            out += _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))
    return out + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def write_atomic(path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, then rename it over `path` (never a half-written file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def fsync_dir(directory) -> None:
    """Make a rename in `directory` survive a power cut (the file's own fsync does not cover its name)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_png(path, image: np.ndarray, text: dict | None = None) -> None:
    write_atomic(path, png_bytes(to_uint8(image), text))


def load_image(image, width: int, height: int) -> np.ndarray:
    """Init image -> float32 [1, 3, H, W] in [-1, 1], like diffusers' VaeImageProcessor.preprocess.

    Accepts a path (PNG/JPEG/... via Pillow, or .npy), a PIL image, or a float array HxWx3 in [0, 1].
    Images of another size are resized to width x height with Lanczos (diffusers' default)."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"init image {path} does not exist")
        if path.suffix == ".npy":
            image = np.load(path, allow_pickle=False)
        else:
            try:
                from PIL import Image
            except ImportError:
                raise ValueError("reading an init image needs Pillow (pip install pillow), or pass a .npy") from None
            try:
                with Image.open(path) as im:
                    image = im.convert("RGB")
            except Exception as e:
                raise ValueError(f"cannot read init image {path}: {e}") from None
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        from PIL import Image
        image = image.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), resample=Image.LANCZOS)
        image = np.asarray(image, dtype=np.float32) / 255.0
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"init image must be H x W x 3, got shape {image.shape}")
    if image.shape[:2] != (height, width):
        raise ValueError(f"init image is {image.shape[1]}x{image.shape[0]}, the model makes {width}x{height}")
    return np.ascontiguousarray((image * 2 - 1).transpose(2, 0, 1)[None], dtype=np.float32)
