"""Conv, ConvTranspose, pooling, MatMul, Gemm and Einsum against PyTorch / numpy.einsum on SD-like shapes."""
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from onnxstream.runtime.ops import conv, linalg

rng = np.random.default_rng(0)


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def rel_l2(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)


def torch_conv(x, w, b, **kw):
    w = torch.from_numpy(w.astype(np.float32))  # float16 weights: torch runs with the fp16-rounded values
    b = None if b is None else torch.from_numpy(b)
    fn = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[x.ndim]
    return fn(torch.from_numpy(x).double(), w.double(), None if b is None else b.double(), **kw).numpy()


@pytest.mark.parametrize("name, x_shape, w_shape, stride, pad, dilation, groups", [
    ("3x3 pad 1", (2, 64, 32, 32), (64, 64, 3, 3), 1, 1, 1, 1),
    ("3x3 stride 2", (1, 64, 32, 32), (128, 64, 3, 3), 2, 1, 1, 1),
    ("1x1", (2, 320, 16, 16), (640, 320, 1, 1), 1, 0, 1, 1),
    ("grouped", (1, 32, 17, 19), (48, 8, 3, 3), 1, 1, 1, 4),
    ("depthwise dilated", (1, 16, 20, 20), (16, 1, 3, 3), 1, 2, 2, 16),
    ("1-D", (2, 8, 50), (12, 8, 5), 2, 2, 1, 1),
    ("3-D", (1, 4, 6, 7, 8), (6, 4, 3, 3, 3), 1, 1, 1, 1),
])
@pytest.mark.parametrize("wdtype", [np.float32, np.float16])
def test_conv(name, x_shape, w_shape, stride, pad, dilation, groups, wdtype):
    x, w, b = randn(*x_shape), randn(*w_shape, dtype=wdtype) * 0.1, randn(w_shape[0])
    n = x.ndim - 2
    got = conv.Conv(x, w, b, group=groups, strides=[stride] * n, pads=[pad] * 2 * n, dilations=[dilation] * n)
    want = torch_conv(x, w, b, stride=stride, padding=pad, dilation=dilation, groups=groups)
    assert rel_l2(got, want) < 1e-5, name


@pytest.mark.parametrize("k, stride, pad", [(3, 2, 0), (3, 2, 1), (5, 2, 2), (3, 3, 1), (3, 1, 1), (5, 1, 2)])
@pytest.mark.parametrize("width", [7, 16, 29, 56])
def test_depthwise_conv(k, stride, pad, width):
    # The depthwise path splits input rows into stride phases (vectorized for stride 2, from odd and even pads)
    # and runs the f32-dwconv kernels: widths below, at and past the vector widths.
    x, w, b = randn(1, 24, 11, width), randn(24, 1, k, k), randn(24)
    got = conv.Conv(x, w, b, group=24, kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4)
    assert rel_l2(got, torch_conv(x, w, b, stride=stride, padding=pad, groups=24)) < 1e-5


def test_conv_large_tile_count():
    # Enough pixels for several output tiles per group.
    x, w = randn(1, 8, 90, 90), randn(4, 8, 3, 3)
    got = conv.Conv(x, w, None, pads=[1, 1, 1, 1])
    assert rel_l2(got, torch_conv(x, w, None, padding=1)) < 1e-5


@pytest.mark.parametrize("stride, pad, out_pad, groups", [(2, 1, 1, 1), (1, 0, 0, 2), (3, 2, 0, 1)])
def test_conv_transpose(stride, pad, out_pad, groups):
    x, w, b = randn(2, 8, 9, 11), randn(8, 6 // groups * 2, 3, 3), randn(6 // groups * 2 * groups)
    got = conv.ConvTranspose(x, w, b, group=groups, strides=[stride] * 2, pads=[pad] * 4,
                             output_padding=[out_pad] * 2)
    want = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride,
                              padding=pad, output_padding=out_pad, groups=groups).numpy()
    assert rel_l2(got, want) < 1e-5


def test_pools():
    x = randn(2, 16, 33, 31)
    t = torch.from_numpy(x)
    got, idx = conv.MaxPool(x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    want, widx = F.max_pool2d(t, 3, 2, 1, ceil_mode=True, return_indices=True)
    assert rel_l2(got, want.numpy()) == 0
    plane = 33 * 31
    assert np.array_equal(idx % plane, widx.numpy())
    got = conv.AveragePool(x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    assert rel_l2(got, F.avg_pool2d(t, 3, 2, 1, count_include_pad=True).numpy()) < 1e-6
    got = conv.AveragePool(x, kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    want = F.avg_pool2d(t, 2, 2, 1, ceil_mode=True, count_include_pad=False).numpy()
    assert rel_l2(got, want) < 1e-6
    assert rel_l2(conv.GlobalAveragePool(x), t.mean((2, 3), keepdim=True).numpy()) < 1e-6
    assert rel_l2(conv.LpPool(x, kernel_shape=[2, 2], strides=[2, 2], p=2),
                  F.lp_pool2d(t, 2, 2, 2).numpy()) < 1e-5


@pytest.mark.parametrize("k, stride, pad, ceil", [(3, 2, 1, 0), (3, 2, 1, 1), (2, 2, 0, 0), (3, 1, 1, 0),
                                                  (5, 1, 2, 0), (3, 3, 0, 1), (2, 1, 0, 0)])
@pytest.mark.parametrize("shape", [(2, 5, 17, 23), (1, 3, 64, 64), (1, 2, 5, 9)])
def test_max_pool_without_indices(k, stride, pad, ceil, shape):
    # MaxPool whose indices output is unused takes the separable vectorized path: values and NaN propagation
    # (a NaN in the first column, inside, and in the last vector lanes) must match torch, which propagates NaN.
    x = randn(*shape)
    x[0, 0, 1, 0] = x[0, 1, 2, 5] = x[-1, -1, -1, -1] = np.nan
    got = conv.MaxPool(x, kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4, ceil_mode=ceil, _num_results=1)
    want = F.max_pool2d(torch.from_numpy(x), k, stride, pad, ceil_mode=bool(ceil)).numpy()
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.nan_to_num(got), np.nan_to_num(want))


@pytest.mark.parametrize("a_shape, b_shape", [((2, 77, 768), (768, 320)), ((2, 8, 64, 40), (2, 8, 40, 64)),
                                              ((5,), (5, 3)), ((4, 5), (5,)), ((5,), (5,)), ((3, 1, 4, 5), (2, 5, 6))])
@pytest.mark.parametrize("bdtype", [np.float32, np.float16, np.int64])
def test_matmul(a_shape, b_shape, bdtype):
    if bdtype == np.int64:
        a, b = rng.integers(-9, 9, a_shape), rng.integers(-9, 9, b_shape)
        assert np.array_equal(linalg.MatMul(a, b), np.matmul(a, b))
        return
    a, b = randn(*a_shape), randn(*b_shape, dtype=bdtype)
    assert rel_l2(linalg.MatMul(a, b), np.matmul(a.astype(np.float64), b.astype(np.float64))) < 1e-5
    # A float16 weight as the left operand: b^T @ a^T.
    t = lambda v: v.swapaxes(-1, -2) if v.ndim >= 2 else v
    assert rel_l2(linalg.MatMul(t(b), t(a)), np.matmul(t(b).astype(np.float64), t(a))) < 1e-5


@pytest.mark.parametrize("c_shape, alpha, beta", [((320,), 1.0, 1.0), ((7, 320), 0.5, 2.0), ((7, 1), 1.0, 0.25)])
def test_gemm_float16_weight(c_shape, alpha, beta):
    a, w, c = randn(7, 768), randn(320, 768, dtype=np.float16), randn(*c_shape)
    got = linalg.Gemm(a, w, c, alpha=alpha, beta=beta, transB=1)
    want = alpha * a.astype(np.float64) @ w.astype(np.float64).T + beta * c
    assert rel_l2(got, want) < 1e-5


@pytest.mark.parametrize("equation, shapes", [
    ("ij->ji", [(3, 4)]), ("ij->", [(3, 4)]), ("ii->i", [(4, 4)]), ("...ii->...i", [(2, 3, 4, 4)]),
    ("i,i", [(5,), (5,)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("bhqd,bhkd->bhqk", [(2, 3, 6, 8), (2, 3, 7, 8)]),
    ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]), ("...j,j->...", [(2, 3, 4), (4,)]), ("ij,kl->ijkl", [(2, 3), (4, 5)]),
    ("abc,cd", [(2, 3, 4), (4, 5)]), ("i,i->", [(6,), (6,)]), ("...ij,...jk", [(1, 2, 3), (4, 3, 2)]),
])
def test_einsum(equation, shapes):
    xs = [randn(*s) for s in shapes]
    want = np.einsum(equation, *[x.astype(np.float64) for x in xs])
    got = linalg.Einsum(*xs, equation=equation)
    assert got.shape == want.shape
    assert rel_l2(got, want) < 1e-5


def test_conv_timing_3x3_320():
    x, w, b = randn(1, 320, 64, 64), randn(320, 320, 3, 3) * 0.05, randn(320)
    start = time.perf_counter()
    y = conv.Conv(x, w, b, pads=[1, 1, 1, 1])
    seconds = time.perf_counter() - start
    print(f"\n3x3 conv [1,320,64,64] -> 320 (plain matmul): {seconds:.2f} s")
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1).numpy()
    assert rel_l2(y, want) < 1e-5
