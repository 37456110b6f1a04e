"""Convolution and pooling ops. The C++ kernels work on 3 spatial axes: 1-D and 2-D problems get leading unit axes
here, and all window arithmetic (auto_pad, ceil_mode, output sizes) is resolved here into explicit pads."""
from __future__ import annotations

import math

import numpy as np

from ... import _core
from ..panels import PACKED, Panels
from .common import cast, contiguous, unary_code


def _float(x: np.ndarray, what: str) -> np.ndarray:
    if x.dtype == np.float32:
        return x
    if x.dtype == np.float16:
        return cast(x, np.float32)  # small tensors only (biases, activations stored as float16)
    raise ValueError(f"{what} must be float32, got {x.dtype}")


def _spatial(x: np.ndarray, op: str) -> int:
    n = x.ndim - 2
    if not 1 <= n <= 3:
        raise ValueError(f"{op} supports 1 to 3 spatial axes, got an input of shape {x.shape}")
    return n


def _to5d(x: np.ndarray) -> np.ndarray:
    """[N, C, *spatial] -> [N, C, D, H, W] with leading unit spatial axes."""
    return x.reshape(x.shape[:2] + (1,) * (5 - x.ndim) + x.shape[2:])


def _three(values, fill: int) -> list[int]:
    values = [int(v) for v in values]
    return [fill] * (3 - len(values)) + values


def _ints(value, n: int, default: int, name: str) -> list[int]:
    if value is None or len(value) == 0:
        return [default] * n
    value = [int(v) for v in value]
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} values, expected {n}")
    return value


def _pads(pads, n: int) -> tuple[list[int], list[int]]:
    pads = _ints(pads, 2 * n, 0, "pads")
    return pads[:n], pads[n:]


def _same_pads(auto_pad: str, inp, out, kernel, strides, dilations):
    """Pads that make the output ceil(input / stride) long; SAME_UPPER puts the odd one at the end."""
    begin, end = [], []
    for i, o, k, s, d in zip(inp, out, kernel, strides, dilations):
        total = max(0, (o - 1) * s + (k - 1) * d + 1 - i)
        small = total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else total - small)
        end.append(total - small if auto_pad == "SAME_UPPER" else small)
    return begin, end


def _window(auto_pad: str, inp, kernel, strides, dilations, pads, ceil_mode: bool = False):
    """(pads_begin, pads_end, output sizes) for a conv or pool window."""
    n = len(inp)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-i // s) for i, s in zip(inp, strides)]
        begin, end = _same_pads(auto_pad, inp, out, kernel, strides, dilations)
        return begin, end, out
    if auto_pad == "VALID":
        begin, end = [0] * n, [0] * n
    elif auto_pad in ("NOTSET", "", None):
        begin, end = _pads(pads, n)
    else:
        raise ValueError(f"auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got {auto_pad!r}")
    out = []
    for i, k, s, d, b, e in zip(inp, kernel, strides, dilations, begin, end):
        span = i + b + e - ((k - 1) * d + 1)
        if span < 0:
            raise ValueError(f"window of kernel {k} (dilation {d}) does not fit an input of {i} with pads {b}, {e}")
        if ceil_mode:
            o = -(-span // s) + 1
            if (o - 1) * s >= i + b:  # the last window must start inside the input or its begin padding
                o -= 1
        else:
            o = span // s + 1
        out.append(o)
    return begin, end, out


def _kernel(kernel_shape, w_shape, n: int) -> list[int]:
    """kernel_shape, or the weight's spatial shape when the attribute is absent (w_shape None: required)."""
    if kernel_shape is not None and len(kernel_shape):
        return _ints(kernel_shape, n, 1, "kernel_shape")
    if w_shape is None:
        raise ValueError("kernel_shape is required")
    return [int(k) for k in w_shape[2:]]


# ---------------------------------------------------------------- convolution

_GEOMETRIES: dict = {}  # Conv's checked output shape and C++ window per (shapes, attributes): resolved once


def _conv_geometry(x_shape, w_shape, auto_pad, dilations, group, kernel_shape, pads, strides):
    key = (x_shape, w_shape, auto_pad, group, *(None if v is None else tuple(v)
                                              for v in (dilations, kernel_shape, pads, strides)))
    hit = _GEOMETRIES.get(key)
    if hit is not None:
        return hit
    n = len(x_shape) - 2
    if not 1 <= n <= 3:
        raise ValueError(f"Conv supports 1 to 3 spatial axes, got an input of shape {x_shape}")
    if len(w_shape) != len(x_shape):
        raise ValueError(f"Conv weight of shape {w_shape} does not match input of shape {x_shape}")
    kernel = _kernel(kernel_shape, w_shape, n)
    if list(w_shape[2:]) != kernel:
        raise ValueError(f"kernel_shape {kernel} differs from the weight's {list(w_shape[2:])}")
    strides, dilations = _ints(strides, n, 1, "strides"), _ints(dilations, n, 1, "dilations")
    begin, end, out = _window(auto_pad, x_shape[2:], kernel, strides, dilations, pads)
    if x_shape[1] != w_shape[1] * group:
        raise ValueError(f"Conv input has {x_shape[1]} channels, weight expects {w_shape[1]} x group {group}")
    window = (_three(kernel, 1), _three(strides, 1), _three(begin, 0), _three(end, 0), _three(dilations, 1))
    if len(_GEOMETRIES) > 4096:  # (a model fed many input sizes)
        _GEOMETRIES.clear()
    hit = _GEOMETRIES[key] = ((x_shape[0], w_shape[0], *out), window)
    return hit


def Conv(X, W, B=None, slope=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
         strides=None, activation="", activation_alpha=0.0, activation_beta=0.0):
    """ONNX Conv; `activation` (with its alpha/beta, and `slope`, a 4th input, for prelu) is the epilogue that the
    converter's fuse_activation pass folds in: relu, clip, leaky_relu, hard_sigmoid, hard_swish, sigmoid, silu."""
    return prepare_conv(auto_pad, dilations, group, kernel_shape, pads, strides, activation, activation_alpha,
                        activation_beta)(X, W, B, slope)


def prepare_conv(auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None,
                 activation="", activation_alpha=0.0, activation_beta=0.0):
    """Conv with its attributes resolved once (the executor prepares one per node): the call then costs a shape
    lookup and the kernel, which is most of the time of a conv over a few audio frames."""
    group, alpha, beta = int(group), float(activation_alpha), float(activation_beta)
    shapes: dict = {}   # (X.shape, W.shape) -> (output shape, window, 5-D input shape, 5-D output shape)
    last_bias = [None, None]  # (B, its [M] float32 view)

    def conv(X, W, B=None, slope=None):
        X = _float(X, "Conv input")
        if W.dtype not in (np.float32, np.float16) and not (isinstance(W, PACKED) and W.dtype == np.int8):
            raise ValueError(f"Conv weight must be float32 or float16, got {W.dtype}")
        geometry = shapes.get((X.shape, W.shape))
        if geometry is None:
            out_shape, window = _conv_geometry(X.shape, W.shape, auto_pad, dilations, group, kernel_shape, pads,
                                               strides)
            to5 = lambda s: s[:2] + (1,) * (5 - len(s)) + s[2:]  # noqa: E731 (leading unit spatial axes)
            if len(shapes) > 64:  # (a model fed many input sizes)
                shapes.clear()
            geometry = shapes[(X.shape, W.shape)] = (out_shape, window, to5(X.shape), to5(out_shape))
        out_shape, window, x5_shape, y5_shape = geometry
        y = np.empty(out_shape, np.float32)
        if B is None:
            bias = None
        elif B is last_bias[0]:   # (a constant: the same array every run)
            bias = last_bias[1]
        else:
            bias = contiguous(_float(B, "Conv bias")).reshape(-1)
            last_bias[:] = B, bias
        if slope is not None:
            slope = contiguous(_float(slope, "Conv slope")).reshape(-1)
            if slope.size != W.shape[0]:
                raise ValueError(f"Conv prelu slope must have one value per output channel, got {slope.size}")
        x5, y5 = X.reshape(x5_shape), y.reshape(y5_shape)
        if group == X.shape[1] == W.shape[0] and X.ndim <= 4 and not isinstance(W, PACKED):  # depthwise
            w = contiguous(_float(W, "Conv weight")).reshape(W.shape[0], -1)
            _core.dwconv(x5 if x5.strides[-1] == 4 else contiguous(x5), w, bias, *window, y5, activation, alpha,
                         beta, slope)
        elif type(W) is Panels:  # a constant weight packed at convert time
            _core.conv_packed(x5, W.data, W.shape[0], bias, *window, group, y5, activation, alpha, beta, slope)
        elif isinstance(W, PACKED):  # the same, read in column blocks
            for n0, n1, panels in W.blocks():  # columns per group; only single-group weights come in several blocks
                m0, m1 = n0 * group, n1 * group
                _core.conv_packed(x5, panels, m1 - m0, None if bias is None else bias[m0:m1], *window, group,
                                  y5[:, m0:m1], activation, alpha, beta, None if slope is None else slope[m0:m1])
                del panels  # before the next block is read
        else:
            _core.conv(x5, _to5d(contiguous(W)), bias, *window, group, y5, activation, alpha, beta, slope)
        return y
    return conv


Conv.prepare = prepare_conv


def ConvTranspose(X, W, B=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, output_padding=None,
                  output_shape=None, pads=None, strides=None):
    n = _spatial(X, "ConvTranspose")
    X = contiguous(_float(X, "ConvTranspose input"))
    if W.ndim != X.ndim or W.shape[0] != X.shape[1]:
        raise ValueError(f"ConvTranspose weight of shape {W.shape} does not match input of shape {X.shape}")
    kernel = _kernel(kernel_shape, W.shape, n)
    strides, dilations = _ints(strides, n, 1, "strides"), _ints(dilations, n, 1, "dilations")
    out_pad = _ints(output_padding, n, 0, "output_padding")
    inp = X.shape[2:]
    natural = [s * (i - 1) + op + (k - 1) * d + 1 for i, s, op, k, d in zip(inp, strides, out_pad, kernel, dilations)]
    if output_shape is not None and len(output_shape) or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # The pads follow from the requested size; SAME_UPPER puts the odd one at the end.
        if output_shape is not None and len(output_shape):
            out = [int(v) for v in output_shape][-n:]
        else:
            out = [i * s for i, s in zip(inp, strides)]
        total = [nat - o for nat, o in zip(natural, out)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
    else:
        begin, end = _pads(None if auto_pad == "VALID" else pads, n)
        out = [nat - b - e for nat, b, e in zip(natural, begin, end)]
    if min(out) < 0:
        raise ValueError(f"ConvTranspose output size {out} is negative")
    M = W.shape[1] * group
    y = np.empty((X.shape[0], M, *out), np.float32)
    bias = None if B is None else contiguous(_float(B, "ConvTranspose bias")).reshape(-1)
    _core.conv_transpose(_to5d(X), _to5d(contiguous(W)), bias, _three(kernel, 1), _three(strides, 1),
                         _three(begin, 0), _three(dilations, 1), int(group), _to5d(y))
    return y


# ---------------------------------------------------------------- pooling

def _pool(op: str, X, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides, count_include_pad=0, p=2,
          want_indices=False):
    n = _spatial(X, op)
    X = _float(X, f"{op} input")
    kernel = _kernel(kernel_shape, None, n)
    strides, dilations = _ints(strides, n, 1, "strides"), _ints(dilations, n, 1, "dilations")
    begin, end, out = _window(auto_pad, X.shape[2:], kernel, strides, dilations, pads, bool(ceil_mode))
    y = np.empty(X.shape[:2] + tuple(out), np.float32)
    indices = np.empty(y.shape, np.int64) if want_indices else None
    kind = {"MaxPool": "max", "AveragePool": "avg", "LpPool": "lp"}[op]
    _core.pool(kind, _to5d(X), _three(kernel, 1), _three(strides, 1), _three(begin, 0), _three(end, 0),
               _three(dilations, 1), bool(count_include_pad), float(p), _to5d(y),
               None if indices is None else _to5d(indices))
    return y, indices


def MaxPool(X, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None, storage_order=0,
            strides=None, _num_results=2):
    if X.dtype in (np.uint8, np.int8):  # QOperator models pool 8-bit values: exact in float32
        result = MaxPool(X.astype(np.float32), auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order,
                         strides, _num_results)
        return (result[0].astype(X.dtype), result[1]) if isinstance(result, tuple) else result.astype(X.dtype)
    want = _num_results > 1   # the indices only when the node has that output (passes/unused_outputs.py)
    y, indices = _pool("MaxPool", X, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides, want_indices=want)
    if not want:
        return y
    if storage_order == 1:
        # Column-major index within each image plane, as ONNX defines it: h + w*H (+ d*H*W for 3-D).
        spatial = X.shape[2:]
        plane = math.prod(spatial)
        nc, rest = np.divmod(indices, plane)
        coords = np.unravel_index(rest, spatial)
        if len(spatial) == 1:
            flat = coords[0]
        elif len(spatial) == 2:
            flat = coords[0] + coords[1] * spatial[0]
        else:
            flat = coords[1] + coords[2] * spatial[1] + coords[0] * spatial[1] * spatial[2]
        indices = nc * plane + flat
    return y, indices


def AveragePool(X, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None, kernel_shape=None,
                pads=None, strides=None):
    return _pool("AveragePool", X, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides, count_include_pad)[0]


def LpPool(X, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, p=2, pads=None, strides=None):
    return _pool("LpPool", X, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides, 1, p)[0]


def _global(op: str, X, p=2):
    return _pool(op, X, "VALID", 0, None, X.shape[2:], None, None, 0, p)[0]


def _global_reduce(op: str, X):
    """Mean / max over each channel's plane: a row reduction of the contiguous [N * C, pixels] view."""
    X = contiguous(_float(X, f"Global{op} input"))
    _spatial(X, f"Global{op}")
    y = np.empty(X.shape[:2] + (1,) * (X.ndim - 2), np.float32)
    _core.reduce("mean" if op == "AveragePool" else "max", X.reshape(X.shape[0] * X.shape[1], -1, 1), y.reshape(-1, 1))
    return y


def GlobalAveragePool(X): return _global_reduce("AveragePool", X)
def GlobalMaxPool(X): return _global_reduce("MaxPool", X)
def GlobalLpPool(X, p=2): return _global("LpPool", X, p)


def MaxUnpool(X, I, output_shape=None, kernel_shape=None, pads=None, strides=None):
    """Each X value written at its MaxPool index (flat, into the pooled input's size inferred from the window);
    that tensor is placed at the start of output_shape when one is given, as ONNX's reference and cases do."""
    n = _spatial(X, "MaxUnpool")
    kernel = _kernel(kernel_shape, None, n)
    strides = _ints(strides, n, 1, "strides")
    begin, end = _pads(pads, n)
    inferred = list(X.shape[:2]) + [(i - 1) * s - b - e + k for i, s, b, e, k in
                                    zip(X.shape[2:], strides, begin, end, kernel)]
    y = np.zeros(math.prod(inferred), X.dtype)
    y[np.asarray(I).reshape(-1)] = X.reshape(-1)
    y = y.reshape(inferred)
    if output_shape is None or not len(output_shape):
        return y
    out = np.zeros([int(d) for d in np.asarray(output_shape).reshape(-1)], X.dtype)
    out[tuple(slice(0, d) for d in inferred)] = y
    return out


def CausalConvWithState(input, weight, bias=None, past_state=None, activation="none"):
    """Depthwise causal conv1d over [B, C, L] continuing from past_state (the last k - 1 inputs of the previous
    call, zeros if omitted); returns (output, present_state)."""
    if activation not in ("none", "silu", "swish"):
        raise ValueError(f"CausalConvWithState: unknown activation '{activation}'")
    b, c, _ = input.shape
    k = weight.shape[2]
    past = np.zeros((b, c, k - 1), input.dtype) if past_state is None else past_state
    padded = np.concatenate([past, input], axis=2)
    y = Conv(padded, weight, bias, group=c)
    if activation != "none":
        _core.unary(unary_code("silu"), y, y, 0.0, 0.0)
    return y, contiguous(padded[:, :, padded.shape[2] - (k - 1):])


def Col2Im(input, image_shape, block_shape, dilations=None, pads=None, strides=None):
    """[N, C * prod(block), L] column blocks summed back into [N, C, *image] (the inverse of im2col)."""
    image, block = [int(v) for v in np.asarray(image_shape).ravel()], [int(v) for v in np.asarray(block_shape).ravel()]
    n = len(image)
    strides, dilations = _ints(strides, n, 1, "strides"), _ints(dilations, n, 1, "dilations")
    begin, end = _pads(pads, n)
    counts = [(i + b + e - (k - 1) * d - 1) // s + 1 for i, b, e, k, d, s in
              zip(image, begin, end, block, dilations, strides)]  # block positions per axis
    batch, cols, length = input.shape
    c = cols // math.prod(block)
    if c * math.prod(block) != cols or math.prod(counts) != length:
        raise ValueError(f"Col2Im: input of shape {input.shape} does not hold blocks {block} over image {image}")
    # Padded-image coordinate of each (kernel tap, block position) pair, per axis; then one flat index.
    index = np.zeros((math.prod(block), length), np.int64)
    padded = [i + b + e for i, b, e in zip(image, begin, end)]
    taps = np.indices(block).reshape(n, -1)        # [n, taps]
    where = np.indices(counts).reshape(n, -1)      # [n, L]
    for a in range(n):
        coord = taps[a][:, None] * dilations[a] + where[a][None, :] * strides[a]
        index = index * padded[a] + coord
    out = np.zeros((batch, c, math.prod(padded)), np.float64)
    np.add.at(out, (slice(None), slice(None), index), input.reshape(batch, c, math.prod(block), length))
    out = out.reshape((batch, c, *padded))[(slice(None), slice(None)) +
                                           tuple(slice(b, b + i) for b, i in zip(begin, image))]
    return contiguous(out.astype(input.dtype))


def DeformConv(X, W, offset, B=None, mask=None, dilations=None, group=1, kernel_shape=None, offset_group=1, pads=None,
               strides=None):
    """2-D deformable conv: each kernel tap reads X bilinearly (zeros outside) at its place plus its learned offset,
    times the optional mask; the sampled columns then meet the weights in one matmul per group."""
    if X.ndim != 4:
        raise NotImplementedError(f"DeformConv supports 2-D inputs, got shape {X.shape}")
    X = _float(X, "DeformConv input")
    n, c, h, w = X.shape
    oc = W.shape[0]
    kh, kw = _kernel(kernel_shape, W.shape, 2)
    (sh, sw), (dh, dw) = _ints(strides, 2, 1, "strides"), _ints(dilations, 2, 1, "dilations")
    begin, _ = _pads(pads, 2)
    oh, ow = offset.shape[2:]
    taps = kh * kw
    off = offset.reshape(n, offset_group, kh, kw, 2, oh, ow).astype(np.float32)
    # Sampling place of tap (i, j) at output (y, x): y * stride - pad + i * dilation + offset.
    ys = (np.arange(oh) * sh - begin[0])[None, None, None, :, None] + (np.arange(kh) * dh)[None, :, None, None, None]
    xs = (np.arange(ow) * sw - begin[1])[None, None, None, None, :] + (np.arange(kw) * dw)[None, None, :, None, None]
    y = ys + off[:, :, :, :, 0]  # [N, G, kh, kw, oh, ow]
    x = xs + off[:, :, :, :, 1]
    # The C++ GridSample (bilinear, zeros padding, align_corners: -1 and 1 are the first and last pixels).
    grid = np.stack([x / max(w - 1, 1) * 2 - 1, y / max(h - 1, 1) * 2 - 1], axis=-1).astype(np.float32)
    per = c // offset_group
    cols = np.empty((n, c, taps, oh * ow), np.float32)
    for g in range(offset_group):
        sampled = np.empty((n, per, taps * oh, ow), np.float32)
        _core.grid_sample(contiguous(X[:, g * per:(g + 1) * per]), contiguous(grid[:, g].reshape(n, taps * oh, ow, 2)),
                          "linear", "zeros", True, sampled)
        cols[:, g * per:(g + 1) * per] = sampled.reshape(n, per, taps, oh * ow)
    if mask is not None:
        m = mask.reshape(n, offset_group, 1, taps, oh * ow).astype(np.float32)
        cols = (cols.reshape(n, offset_group, per, taps, oh * ow) * m).reshape(n, c, taps, oh * ow)
    icg, ocg = c // group, oc // group
    y_out = np.empty((n, oc, oh * ow), np.float32)
    for g in range(group):
        wg = contiguous(_float(W[g * ocg:(g + 1) * ocg], "DeformConv weight").reshape(1, ocg, icg * taps))
        for b in range(n):
            colsg = contiguous(cols[b, g * icg:(g + 1) * icg].reshape(1, icg * taps, oh * ow))
            out = np.empty((1, ocg, oh * ow), np.float32)
            _core.matmul(wg, colsg, None, out)
            y_out[b, g * ocg:(g + 1) * ocg] = out[0]
    if B is not None:
        y_out += _float(B, "DeformConv bias").reshape(1, -1, 1)
    return y_out.reshape(n, oc, oh, ow)
