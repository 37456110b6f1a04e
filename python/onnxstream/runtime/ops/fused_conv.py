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
from ..panels import PACKED, Panels
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
        self.buf = None   # z scratch, reused band after band

    def z_row(self, o: int) -> int:
        """The conv output row (z row) output row o reads: o itself, or for a sub-pixel conv o // s + phase offset.
        It never decreases as o grows."""
        return o // self.s + self.off_h[o % self.s] if self.s > 1 else o

    def aligned(self, r: int) -> int:
        """The first band boundary at or after output row r: bands of a sub-pixel conv end where the z row changes,
        so consecutive bands read disjoint z rows (none computed twice)."""
        while self.s > 1 and 0 < r < self.shape[2] and self.z_row(r) == self.z_row(r - 1):
            r += 1
        return r

    def z_rows(self, a: int, b: int) -> np.ndarray:
        """Conv output rows [a, b) (the s*s phases for a sub-pixel conv), float32 [N, Mz, b - a, zw]."""
        shape = (self.src.shape[0], self.Mz, b - a, self.zsize[1])
        n = int(np.prod(shape))
        if self.buf is None or self.buf.size < n:   # fresh pages would cost a fault each
            self.buf = np.empty(n, np.float32)
        return self._compute(a, b, self.buf[:n].reshape(shape))

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

    def rows_into(self, r0: int, r1: int, out: np.ndarray, residual=None) -> None:
        """Output rows [r0, r1) (+ residual rows) stored into out: [N, M, r1 - r0, W], float32 or float16."""
        a = self.z_row(r0)
        z = self.z_rows(a, self.z_row(r1 - 1) + 1)
        _core.conv_band_epilogue(z, residual, self.s, r0, a, self.off_h, self.off_w, out)

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

    def aligned(self, r: int) -> int:
        return r

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

    def aligned(self, r: int) -> int:
        return self.conv.aligned(r)

    def rows_into(self, a: int, b: int, out: np.ndarray) -> None:
        self.conv.rows_into(a, b, out)
        if self.norm is not None or self.silu:
            _core.conv_band_prologue(out, 0, self.norm, self.silu, out)


class _Headed:
    """Rows of a recomputed tensor whose first rows the GroupNorm statistics pass kept (float16 chunks, see
    FusedGroupNormScale): those are read from the chunks, which are dropped once no later band needs them."""

    def __init__(self, head, recomputed: _Recomputed, free: bool):
        self.head, self.src, self.free = head, recomputed, free
        self.shape, self.row_bytes = recomputed.shape, recomputed.row_bytes
        self.end = max((c[1] for c in head if c is not None), default=0)

    def as_view(self) -> bool:
        return False

    def aligned(self, r: int) -> int:
        return r if r <= self.end else self.src.aligned(r)

    def rows_into(self, a: int, b: int, out: np.ndarray) -> None:
        for i, chunk in enumerate(self.head):
            if chunk is None:
                continue
            c0, c1, x = chunk
            lo, hi = max(a, c0), min(b, c1)
            if lo < hi:
                _core.conv_band_prologue(x, lo - c0, self.src.norm, self.src.silu, out[:, :, lo - a:hi - a])
            if self.free and c1 <= b:
                self.head[i] = None   # bands only move down: no later band reads these rows again
        if b > self.end:
            self.src.rows_into(max(a, self.end), b, out[:, :, max(a, self.end) - a:])


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
        end = self.src.aligned(b)   # a recomputed source fills up to its next band boundary; the rest waits here
        buf = self.buf
        if buf is None or buf.shape[2] < end - a:
            buf = np.empty(self.shape[:2] + (end - a, self.shape[3]), np.float32)
        if keep:
            shared = self.buf[:, :, a - self.a:self.b - self.a]
            buf[:, :, :keep] = shared.copy() if buf is self.buf else shared
        self.src.rows_into(a + keep, end, buf[:, :, keep:end - a])
        self.a, self.b, self.buf = a, end, buf
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


def _source(X, norm, activation, src_W, src_B, src_norm, src, head=None, free_head=True):
    """The rows a conv reads: X itself, or (src) the output of the FusedConv src of X, recomputed (its first rows
    possibly kept by the statistics pass: head)."""
    if not src:
        return _Stored(X, norm, activation)
    stored = _Rolling(_Stored(X, src_norm, src.get("activation", "")))
    inner = _Conv(stored, src_W, src_B, src["kernel_shape"], src["pads"],
                  src.get("strides"), src.get("dilations"), src.get("group", 1), src.get("subpixel", 1),
                  src.get("offsets_h"), src.get("offsets_w"))
    recomputed = _Recomputed(inner, norm, activation)
    return recomputed if head is None else _Headed(head, recomputed, free_head)


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


def FusedConv(X, W, B=None, norm=None, residual=None, src_W=None, src_B=None, src_norm=None, head=None,
              kernel_shape=None, pads=None, strides=None, dilations=None, group=1, activation="", subpixel=1,
              offsets_h=None, offsets_w=None, out_dtype="float32", inplace="", src=None):
    """y = conv(act(norm(X))) + residual, stored as out_dtype; see the module docstring for subpixel, inplace, src."""
    phases, dtype = int(subpixel) ** 2, np.dtype(out_dtype)
    blocked = isinstance(W, PACKED) and not isinstance(W, Panels) and W.cols_per_block < W.n
    if blocked and inplace == "input":
        inplace = ""   # later column blocks still read the input: write a new tensor
    out = None
    for n0, n1, w in _column_blocks(W, phases):
        source = _source(X, norm, activation, _whole(src_W), src_B, src_norm, src, head, free_head=not blocked)
        bias = None if B is None else np.asarray(B).reshape(-1)[n0:n1]
        conv = _Conv(_Rolling(source, in_place=inplace == "input"), w, bias, kernel_shape, pads, strides, dilations,
                     group, subpixel, offsets_h, offsets_w)
        shape = conv.shape[:1] + (int(W.shape[0]) // phases,) + conv.shape[2:]
        if out is None:
            out = _output(X, residual, inplace, shape, dtype, conv, src, progressive=head is not None)
        m0, m1 = n0 // phases, n1 // phases
        step, r0 = conv.band_rows(), 0
        while r0 < shape[2]:
            r1 = conv.aligned(min(shape[2], r0 + step))
            conv.rows_into(r0, r1, out[:, m0:m1, r0:r1], None if residual is None else residual[:, m0:m1, r0:r1])
            if dtype == np.float16:
                _check_range(out[:, m0:m1, r0:r1])
            r0 = r1
        del w, conv, source   # before the next block is read
    return out


CALIBRATING = False   # set by fp16_range.py while it measures ranges: kept rows are float32, nothing is checked


def _check_range(band: np.ndarray) -> None:
    """Float16 storage never turns an overflow into inf/NaN silently (fp16_range.py scales what calibration saw)."""
    if not CALIBRATING and not np.isfinite(band).all():
        raise FloatingPointError("activations stored as float16 overflowed (|x| > 65504): the input is far outside "
                                 "what the model was calibrated on; convert it again with calibration inputs like "
                                 "this one (onnxstream.convert(..., calibration=[feeds]))")


def _empty_small_pages(shape, dtype) -> np.ndarray:
    """np.empty whose pages become resident only as bands are written. numpy advises huge pages for big arrays,
    and the first band, written across every channel plane, would touch every 2 MB page: the whole output would
    be resident before the rows it replaces (the kept head) are freed."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        return np.empty(shape, dtype)
    previous = _set_madvise_hugepage(False)
    try:
        return np.empty(shape, dtype)
    finally:
        _set_madvise_hugepage(previous)


def _output(X, residual, inplace, shape, dtype, conv, src, progressive=False):
    if residual is not None and tuple(residual.shape) != shape:
        raise ValueError(f"FusedConv residual of shape {residual.shape} does not match the output {shape}")
    if inplace == "residual":
        out = residual
    elif inplace == "input":
        out = X
        if src or X.shape != shape or conv.s != 1 or conv.strides != [1, 1] or conv.pe[0] < 0:
            raise ValueError("FusedConv inplace='input' needs a stored input shaped like the output, stride 1")
    else:
        out = _empty_small_pages(shape, dtype) if progressive else np.empty(shape, dtype)
    if out.dtype != dtype or tuple(out.shape) != shape:
        raise ValueError(f"FusedConv inplace={inplace!r}: the buffer reused is {out.dtype} {out.shape}, "
                         f"the output {dtype} {shape}")
    return out


def FusedGroupNormScale(X, scale, bias, src_W=None, src_B=None, src_norm=None, num_groups=1, epsilon=1e-5,
                        src=None, keep_bytes=0):
    """GroupNorm of X as per-channel (a, b): [N, 2, C] with a*x + b the normalized x. X may be recomputed (src);
    with keep_bytes, its first rows are also returned, as float16 chunks (an object array of (r0, r1, rows)), for
    the next reader to use instead of recomputing them."""
    source = _source(X, None, "", _whole(src_W), src_B, src_norm, src)
    N, C, H, Wd = source.shape
    groups = int(num_groups)
    gamma = contiguous(np.broadcast_to(np.asarray(scale, np.float32).reshape(-1), (C,)))
    beta = contiguous(np.broadcast_to(np.asarray(bias, np.float32).reshape(-1), (C,)))
    shift = np.zeros((N, groups), np.float32)
    sums = np.zeros((N, groups, 2), np.float64)
    head, kept = [], 0
    if src:
        step, rows = source.conv.band_rows(), _Rolling(source)
        r0, keeping = 0, keep_bytes > 0
        while r0 < H:
            r1 = source.aligned(min(H, r0 + step))
            band = rows.rows(r0, r1)
            _core.group_norm_stats(band, groups, r0 == 0, shift, sums)
            keeping = keeping and kept + band.size * 2 <= keep_bytes
            if keeping:
                chunk = np.empty(band.shape, np.float32 if CALIBRATING else np.float16)
                _core.conv_band_epilogue(band, None, 1, 0, 0, [0], [0], chunk)
                _check_range(chunk)
                head.append((r0, r1, chunk))
                kept += chunk.nbytes
            r0 = r1
    else:
        _core.group_norm_stats(X, groups, True, shift, sums)
    out = np.empty((N, 2, C), np.float32)
    _core.group_norm_scale_shift(sums, shift, float(C // groups * H * Wd), gamma, beta, float(epsilon), out)
    if not keep_bytes:
        return out
    chunks = np.empty(len(head), object)
    for i, chunk in enumerate(head):
        chunks[i] = chunk
    return out, chunks
