"""Signal-processing ops: DFT and STFT (numpy's FFT, float64 inside), the window functions and the mel filter bank.
Complex tensors are real ones with a last axis of 2 (real, imaginary); a last axis of 1 is a real signal."""
from __future__ import annotations

import numpy as np

from .common import axis_index, onnx_dtype


def _complex(x: np.ndarray) -> np.ndarray:
    """[..., 1] or [..., 2] -> complex128 [...]."""
    if x.shape[-1] == 1:
        return x[..., 0].astype(np.float64)
    if x.shape[-1] == 2:
        return x[..., 0].astype(np.float64) + 1j * x[..., 1]
    raise ValueError(f"a signal's last axis must be 1 (real) or 2 (real, imaginary), got shape {x.shape}")


def _pairs(z: np.ndarray, dtype) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1).astype(dtype)


def DFT(input, dft_length=None, axis=None, inverse=0, onesided=0, _opset=20):
    """axis is an attribute (default 1) before opset 20 and an input (default -2) since."""
    axis = (1 if _opset < 20 else -2) if axis is None else int(np.asarray(axis).reshape(-1)[0])
    axis = axis_index(axis, input.ndim)
    if axis == input.ndim - 1:
        raise ValueError("DFT: the axis cannot be the last one (it holds the real and imaginary parts)")
    z = _complex(input)
    if dft_length is None or np.asarray(dft_length).size == 0:
        n = 2 * (input.shape[axis] - 1) if inverse and onesided else input.shape[axis]
    else:
        n = int(np.asarray(dft_length).reshape(-1)[0])
    if inverse and onesided:  # one-sided spectrum -> real signal
        return np.fft.irfft(z, n=n, axis=axis)[..., None].astype(input.dtype)
    y = np.fft.ifft(z, n=n, axis=axis) if inverse else np.fft.fft(z, n=n, axis=axis)
    if onesided:
        y = np.take(y, range(n // 2 + 1), axis=axis)
    return _pairs(y, input.dtype)


def STFT(signal, frame_step, window=None, frame_length=None, onesided=1):
    """signal [B, L, 1 or 2] -> [B, frames, bins, 2]: the DFT of each frame of frame_length samples, frame_step
    apart, times the window."""
    step = int(np.asarray(frame_step))
    if frame_length is not None:
        length = int(np.asarray(frame_length))
    else:
        length = window.shape[0] if window is not None else signal.shape[1]
    w = np.ones(length) if window is None else np.asarray(window, np.float64)
    if w.shape[0] != length:
        raise ValueError(f"STFT: window of {w.shape[0]} samples for frames of {length}")
    frames = 1 + (signal.shape[1] - length) // step
    z = _complex(signal)  # [B, L]
    starts = np.arange(frames) * step
    framed = z[:, starts[:, None] + np.arange(length)[None, :]] * w  # [B, frames, length]
    y = np.fft.fft(framed, axis=-1)
    if onesided:
        y = y[..., :length // 2 + 1]
    return _pairs(y, signal.dtype)


# ---------------------------------------------------------------- windows and filter banks

def _window(size, periodic, output_datatype, coefficients):
    """sum_k a_k cos(2 pi k n / N), N = size (periodic) or size - 1 (symmetric)."""
    size = int(np.asarray(size))
    n = np.arange(size)
    period = size if periodic else size - 1
    w = sum(a * np.cos(2 * np.pi * k * n / period) for k, a in enumerate(coefficients))
    return np.asarray(w).astype(onnx_dtype(output_datatype))


def HannWindow(size, output_datatype=1, periodic=1):
    return _window(size, periodic, output_datatype, (0.5, -0.5))


def HammingWindow(size, output_datatype=1, periodic=1):
    return _window(size, periodic, output_datatype, (25 / 46, -21 / 46))


def BlackmanWindow(size, output_datatype=1, periodic=1):
    return _window(size, periodic, output_datatype, (0.42, -0.5, 0.08))


def MelWeightMatrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz, output_datatype=1):
    """[dft_length // 2 + 1, num_mel_bins] triangular filters, evenly spaced in mel between the edges, on the
    DFT bins (as ONNX's reference places them)."""
    bins, n_fft, rate = int(np.asarray(num_mel_bins)), int(np.asarray(dft_length)), int(np.asarray(sample_rate))
    lo, hi = float(np.asarray(lower_edge_hertz)), float(np.asarray(upper_edge_hertz))
    mel = lambda hz: 2595 * np.log10(1 + hz / 700)  # noqa: E731
    points = np.arange(bins + 2) * (mel(hi) - mel(lo)) / (bins + 2) + mel(lo)
    edges = (((n_fft + 1) * (700 * (10 ** (points / 2595) - 1))) // rate).astype(np.int64)
    out = np.zeros((n_fft // 2 + 1, bins))
    j = np.arange(n_fft // 2 + 1)[:, None]
    left, centre, right = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    rising = (j >= left) & (j <= centre)
    falling = (j >= centre) & (j < right)
    out = np.where(rising, (j - left) / np.maximum(centre - left, 1), out)
    out = np.where(falling, (right - j) / np.maximum(right - centre, 1), out)
    out = np.where((centre == left) & (j == centre), 1.0, out)
    return out.astype(onnx_dtype(output_datatype))
