"""Fused 2-D convolutions (fusion_conv.py makes them): the conv runs band by band over its output rows, so what
it fuses never exists whole.

Per band: the prologue builds the conv's float32 input rows from the stored input (float32 or float16),
normalized by a GroupNorm's per-channel (scale, shift) and SiLU'd on the way; conv_packed computes the band
(a sub-pixel conv computes the s*s phases of a nearest-upsampled input at once); the epilogue adds the residual
and stores float32 or float16, unshuffling the phases. Consecutive bands share their halo rows through a rolling
buffer, which is also what lets a conv write its output over its own input (inplace="input": rows are written
only once no later band reads them) and lets an input be recomputed instead of stored (src: the input is itself
a FusedConv of a smaller tensor, run band by band inside this one). A weight stored in column blocks is read
one block at a time, each block running the band loop for its output channels.
"""
from __future__ import annotations

import numpy as np

from ... import _core
from ...packing import PACKED, Panels
from .common import contiguous

BAND_BYTES = 12 << 20   # float32 scratch per band (input rows, conv rows, recomputed source rows)


def _pairs(v, default):
    v = [int(i) for i in (v or [])]
    return v if v else [default, default]


class _Conv:
    """One conv's geometry and weights: output rows on demand, from a source of input rows."""

    def __init__(self, src, W, B, kernel_shape, pads, strides, dilations, group, subpixel, offsets_h, offsets_w):
        if not isinstance(W, PACKED) and W.ndim != 4:
            raise ValueError(f"FusedConv weight must be 4-D, got shape {W.shape}")
        self.src = src
        self.W = W
        self.Mz = int(W.shape[0])
        self.bias = None if B is None else contiguous(np.asarray(B, np.float32)).reshape(-1)
        self.kernel = _pairs(kernel_shape, 1) or list(W.shape[2:])
        pads = [int(p) for p in (pads or [0, 0, 0, 0])]
        self.pb, self.pe = pads[:2], pads[2:]
        self.strides, self.dil = _pairs(strides, 1), _pairs(dilations, 1)
        self.group = int(group)
        self.s = int(subpixel)
        self.off_h = [int(o) for o in (offsets_h or [0])]
        self.off_w = [int(o) for o in (offsets_w or [0])]
        N, C, H, Wd = src.shape
        if C != W.shape[1] * self.group:
            raise ValueError(f"FusedConv input has {C} channels, weight expects {W.shape[1]} x group {self.group}")
        self.zsize = [(H + self.pb[0] + self.pe[0] - ((self.kernel[0] - 1) * self.dil[0] + 1)) // self.strides[0] + 1,
                   (Wd + self.pb[1] + self.pe[1] - ((self.kernel[1] - 1) * self.dil[1] + 1)) // self.strides[1] + 1]
        s = self.s
        self.M = self.Mz // (s * s)
        # A sub-pixel conv's z rows/columns [0, H + max offset) give output rows/columns [0, s*H).
        out = [s * (self.zsize[0] - max(self.off_h)), s * (self.zsize[1] - max(self.off_w))] if s > 1 else self.zsize
        self.shape = (N, self.M, out[0], out[1])
        self.row_bytes = 4 * N * (self.Mz * self.zsize[1] // s + C * Wd * self.strides[0] // s) + src.row_bytes
        self.cache = None   # (a, b, z): the last z rows, which a sub-pixel conv's next band starts with
        self.bufs, self.flip = [None, None, None], 0   # z scratch: two alternating (one is the cache), fresh rows

    def z_rows(self, a: int, b: int) -> np.ndarray:
        """Conv output rows [a, b) (the s*s phases for a sub-pixel conv), float32 [N, Mz, b - a, zw]. A sub-pixel
        conv's consecutive bands share a row: it is kept (self.cache) and copied instead of recomputed."""
        shape = (self.src.shape[0], self.Mz, b - a, self.zsize[1])
        if self.s == 1:
            return self._compute(a, b, self._scratch(0, shape))
        if self.cache is not None and self.cache[0] <= a < self.cache[1]:
            ca, cb, cz = self.cache
            if b <= cb:
                return cz[:, :, a - ca:b - ca]
            z = self._scratch(self.flip, shape)
            z[:, :, :cb - a] = cz[:, :, a - ca:]
            z[:, :, cb - a:] = self._compute(cb, b, self._scratch(2, shape[:2] + (b - cb,) + shape[3:]))
        else:
            z = self._compute(a, b, self._scratch(self.flip, shape))
        self.cache, self.flip = (a, b, z), 1 - self.flip
        return z

    def _compute(self, a: int, b: int, z: np.ndarray) -> np.ndarray:
        kh, sh, dh, ph = self.kernel[0], self.strides[0], self.dil[0], self.pb[0]
        lo, hi = a * sh - ph, (b - 1) * sh - ph + (kh - 1) * dh + 1   # input rows read, padding included
        H = self.src.shape[2]
        x = self.src.rows(max(lo, 0), min(hi, H))
        window = ([1] + self.kernel, [1] + self.strides, [0, max(-lo, 0), self.pb[1]],
                  [0, max(hi - H, 0), self.pe[1]], [1] + self.dil)
        x5, z5 = x[:, :, None], z[:, :, None]
        if isinstance(self.W, Panels):
            _core.conv_packed(x5, self.W.data, self.Mz, self.bias, *window, self.group, z5)
        else:
            _core.conv(x5, contiguous(self.W)[:, :, None], self.bias, *window, self.group, z5)
        return z

    def _scratch(self, i: int, shape) -> np.ndarray:
        """Contiguous float32 scratch i, reused band after band: fresh pages would cost a fault each."""
        n = int(np.prod(shape))
        if self.bufs[i] is None or self.bufs[i].size < n:
            self.bufs[i] = np.empty(n, np.float32)
        return self.bufs[i][:n].reshape(shape)

    def rows_into(self, r0: int, r1: int, out: np.ndarray, residual=None) -> None:
        """Output rows [r0, r1) (+ residual rows) stored into out: [N, M, r1 - r0, W], float32 or float16."""
        s = self.s
        a, b = (r0 // s, (r1 - 1) // s + max(self.off_h) + 1) if s > 1 else (r0, r1)
        z = self.z_rows(a, b)
        _core.conv_band_epilogue(z, residual, s, r0, a, self.off_h, self.off_w, out)

    def band_rows(self) -> int:
        rows = max(1, BAND_BYTES // max(self.row_bytes, 1))
        return max(self.s, rows - rows % self.s)


class _Stored:
    """Rows of a stored tensor, normalized and activated by the prologue (a view when there is nothing to do)."""

    def __init__(self, x, norm, activation):
        if x.ndim != 4 or x.dtype not in (np.float32, np.float16):
            raise ValueError(f"FusedConv input must be 4-D float32 or float16, got {x.dtype} {x.shape}")
        self.x, self.norm, self.silu = x, _norm(norm, x), _silu(activation)
        self.shape = x.shape
        self.row_bytes = 0

    def as_view(self) -> bool:
        return self.norm is None and not self.silu and self.x.dtype == np.float32 and self.x.strides[-1] == 4

    def rows_into(self, a: int, b: int, out: np.ndarray) -> None:
        _core.conv_band_prologue(self.x, a, self.norm, self.silu, out)


class _Recomputed:
    """Rows of a FusedConv's output that was never stored: computed band by band, then normalized/activated."""

    def __init__(self, conv: _Conv, norm, activation):
        self.conv, self.silu = conv, _silu(activation)
        self.shape = conv.shape
        self.norm = None if norm is None else _norm(norm, np.empty((self.shape[0], self.shape[1], 0, 0), np.float32))
        self.row_bytes = conv.row_bytes + 4 * self.shape[0] * self.shape[1] * self.shape[3]

    def as_view(self) -> bool:
        return False

    def rows_into(self, a: int, b: int, out: np.ndarray) -> None:
        self.conv.rows_into(a, b, out)
        if self.norm is not None or self.silu:
            _core.conv_band_prologue(out, 0, self.norm, self.silu, out)


class _Rolling:
    """A source's rows [a, b), band after band, in one reused float32 buffer: the rows a band shares with the last
    one (the conv's halo) move to the front instead of being recomputed, and survive a conv writing over its own
    input. A stored float32 tensor with nothing to apply is read in place instead (unless in_place)."""

    def __init__(self, src, in_place=False):
        self.src, self.shape, self.row_bytes = src, src.shape, src.row_bytes
        self.view = src.as_view() and not in_place
        self.a = self.b = 0
        self.buf = None

    def rows(self, a: int, b: int) -> np.ndarray:
        if self.view:
            return self.src.x[:, :, a:b]
        if self.buf is not None and self.a <= a and b <= self.b:
            return self.buf[:, :, a - self.a:b - self.a]
        keep = self.b - a if self.buf is not None and self.a <= a < self.b else 0
        buf = self.buf
        if buf is None or buf.shape[2] < b - a:
            buf = np.empty(self.shape[:2] + (b - a, self.shape[3]), np.float32)
        if keep:
            shared = self.buf[:, :, a - self.a:self.b - self.a]
            buf[:, :, :keep] = shared.copy() if buf is self.buf else shared
        self.src.rows_into(a + keep, b, buf[:, :, keep:b - a])
        self.a, self.b, self.buf = a, b, buf
        return buf[:, :, :b - a]


def _norm(norm, x):
    if norm is None:
        return None
    norm = contiguous(np.asarray(norm, np.float32))
    if norm.shape != (x.shape[0], 2, x.shape[1]):
        raise ValueError(f"FusedConv norm must be [N, 2, C] = {[x.shape[0], 2, x.shape[1]]}, got {list(norm.shape)}")
    return norm


def _silu(activation) -> bool:
    if activation not in ("", "silu", None):
        raise ValueError(f"FusedConv activation must be '' or 'silu', got {activation!r}")
    return activation == "silu"


def _source(X, norm, activation, src_W, src_B, src_norm, src):
    """The rows a conv reads: X itself, or (src) the output of the FusedConv src of X, recomputed."""
    if not src:
        return _Stored(X, norm, activation)
    inner = _Conv(_Rolling(_Stored(X, src_norm, src.get("activation", ""))), src_W, src_B, src["kernel_shape"], src["pads"],
                  src.get("strides"), src.get("dilations"), src.get("group", 1), src.get("subpixel", 1),
                  src.get("offsets_h"), src.get("offsets_w"))
    return _Recomputed(inner, norm, activation)


def _whole(W):
    """A weight packed in column blocks (PanelBlocks) as one Panels: for weights every band reads whole."""
    if W is None or not isinstance(W, PACKED) or isinstance(W, Panels):
        return W
    if W.dtype == np.int8:   # each int8 block is a blob of panels then scales: blobs do not concatenate
        raise ValueError("FusedConv: an int8 weight stored in column blocks cannot be read whole")
    return Panels(np.concatenate([panels for _, _, panels in W.blocks()]), W.shape, W.k, W.n)


def _column_blocks(W, phases: int):
    """(z channels [n0, n1), weight of those channels) per column block: a packed weight stored in blocks is read
    one block at a time, each block a whole number of sub-pixel channel groups (z channel = m * phases + phase)."""
    if not isinstance(W, PACKED) or isinstance(W, Panels) or W.cols_per_block % phases:
        yield 0, int(W.shape[0]), _whole(W)
        return
    for n0, n1, panels in W.blocks():
        yield n0, n1, Panels(panels, (n1 - n0,) + tuple(W.shape[1:]), W.k, n1 - n0)


def FusedConv(X, W, B=None, norm=None, residual=None, src_W=None, src_B=None, src_norm=None, kernel_shape=None,
              pads=None, strides=None, dilations=None, group=1, activation="", subpixel=1, offsets_h=None,
              offsets_w=None, out_dtype="float32", inplace="", src=None):
    """y = conv(act(norm(X))) + residual, stored as out_dtype; see the module docstring for subpixel, inplace, src."""
    phases, dtype = int(subpixel) ** 2, np.dtype(out_dtype)
    blocked = isinstance(W, PACKED) and not isinstance(W, Panels) and W.cols_per_block < W.n
    if blocked and inplace == "input":
        inplace = ""   # later column blocks still read the input: write a new tensor
    out = None
    for n0, n1, w in _column_blocks(W, phases):
        source = _source(X, norm, activation, _whole(src_W), src_B, src_norm, src)
        bias = None if B is None else np.asarray(B).reshape(-1)[n0:n1]
        conv = _Conv(_Rolling(source, in_place=inplace == "input"), w, bias, kernel_shape, pads, strides, dilations,
                     group, subpixel, offsets_h, offsets_w)
        shape = conv.shape[:1] + (int(W.shape[0]) // phases,) + conv.shape[2:]
        if out is None:
            out = _output(X, residual, inplace, shape, dtype, conv, src)
        m0, m1 = n0 // phases, n1 // phases
        step = conv.band_rows()
        for r0 in range(0, shape[2], step):
            r1 = min(shape[2], r0 + step)
            conv.rows_into(r0, r1, out[:, m0:m1, r0:r1], None if residual is None else residual[:, m0:m1, r0:r1])
        del w, conv, source   # before the next block is read
    return out


def _output(X, residual, inplace, shape, dtype, conv, src):
    if residual is not None and tuple(residual.shape) != shape:
        raise ValueError(f"FusedConv residual of shape {residual.shape} does not match the output {shape}")
    if inplace == "residual":
        out = residual
    elif inplace == "input":
        out = X
        if src or X.shape != shape or conv.s != 1 or conv.strides != [1, 1] or conv.pe[0] < 0:
            raise ValueError("FusedConv inplace='input' needs a stored input shaped like the output, stride 1")
    else:
        out = np.empty(shape, dtype)
    if out.dtype != dtype or tuple(out.shape) != shape:
        raise ValueError(f"FusedConv inplace={inplace!r}: the buffer reused is {out.dtype} {out.shape}, "
                         f"the output {dtype} {shape}")
    return out


def FusedGroupNormScale(X, scale, bias, src_W=None, src_B=None, src_norm=None, num_groups=1, epsilon=1e-5,
                        src=None):
    """GroupNorm of X as per-channel (a, b): [N, 2, C] with a*x + b the normalized x. X may be recomputed (src)."""
    source = _source(X, None, "", _whole(src_W), src_B, src_norm, src)
    N, C, H, Wd = source.shape
    groups = int(num_groups)
    gamma = contiguous(np.broadcast_to(np.asarray(scale, np.float32).reshape(-1), (C,)))
    beta = contiguous(np.broadcast_to(np.asarray(bias, np.float32).reshape(-1), (C,)))
    shift = np.zeros((N, groups), np.float32)
    sums = np.zeros((N, groups, 2), np.float64)
    if src:
        step, rows = source.conv.band_rows(), _Rolling(source)
        for r0 in range(0, H, step):
            _core.group_norm_stats(rows.rows(r0, min(H, r0 + step)), groups, r0 == 0, shift, sums)
    else:
        _core.group_norm_stats(X, groups, True, shift, sums)
    out = np.empty((N, 2, C), np.float32)
    _core.group_norm_scale_shift(sums, shift, float(C // groups * H * Wd), gamma, beta, float(epsilon), out)
    return out
