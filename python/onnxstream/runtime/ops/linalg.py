"""MatMul, Gemm and Einsum: numpy arranges views into batched [B, M, K] @ [B, K, N] problems for the C++ matmul.
Float16 weights (either operand) are passed to the kernel as they are, never converted as a whole."""
from __future__ import annotations

import math

import numpy as np

from ... import _core
from ..panels import PACKED, Panels
from .common import binary, broadcast_shapes, broadcast_to, cast, contiguous

INT_TYPES = (np.dtype(np.int32), np.dtype(np.int64))


def _batched(a: np.ndarray, w: np.ndarray, bias=None) -> np.ndarray:
    """a [B, M, K] @ w [B, K, N] (+ bias [N]) -> [B, M, N]. One float16 operand is allowed on either side."""
    B, M, N = a.shape[0], a.shape[1], w.shape[2]
    if a.dtype in INT_TYPES or w.dtype in INT_TYPES:
        if a.dtype != w.dtype:
            raise ValueError(f"MatMul operands have different integer types {a.dtype} and {w.dtype}")
        y = np.empty((B, M, N), a.dtype)
        _core.matmul_int(a, w, y)
        return y
    if a.dtype == np.float16 and w.dtype == np.float16:
        a = cast(a, np.float32)
    if a.dtype == np.float16:
        # The kernel takes float16 only as its second operand: compute (w^T @ a^T)^T.
        if bias is not None:
            raise ValueError("internal: bias with a float16 left operand")
        return _batched(w.transpose(0, 2, 1), a.transpose(0, 2, 1)).transpose(0, 2, 1)
    for t in (a, w):
        if t.dtype not in (np.float32, np.float16):
            raise ValueError(f"MatMul supports float32, float16 weights, int32 and int64, got {t.dtype}")
    y = np.empty((B, M, N), np.float32)
    _core.matmul(a, w, bias, y)
    return y


def _packed(a: np.ndarray, B, bias=None) -> np.ndarray:
    """a [..., M, K] @ the pre-packed constant B [K, N] (+ bias [N]) -> [..., M, N], one GEMM per column block."""
    if a.shape[-1] != B.k:
        raise ValueError(f"MatMul shapes {a.shape} and ({B.k}, {B.n}) do not line up")
    a = cast(a, np.float32) if a.dtype == np.float16 else a
    if a.dtype != np.float32:
        raise ValueError(f"MatMul with a float weight needs a float input, got {a.dtype}")
    a3 = a.reshape(1, -1, B.k)
    y = np.empty(a3.shape[:2] + (B.n,), np.float32)
    if type(B) is Panels:  # one block: no slicing (a voice model's 128x128 Gemm costs less than the views)
        _core.matmul_packed(a3, B.data, B.k, B.n, bias, y)
        return y.reshape(a.shape[:-1] + (B.n,))
    for n0, n1, panels in B.blocks():
        _core.matmul_packed(a3, panels, B.k, n1 - n0, None if bias is None else bias[n0:n1], y[:, :, n0:n1])
        del panels  # before the next block is read
    return y.reshape(a.shape[:-1] + (B.n,))


def matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """numpy.matmul semantics: 1-D operands and broadcast batch axes."""
    if isinstance(B, PACKED):
        return _packed(A[None, :], B)[0] if A.ndim == 1 else _packed(A, B)
    if A.ndim == 0 or B.ndim == 0:
        raise ValueError("MatMul operands must have at least one axis")
    a = A[None, :] if A.ndim == 1 else A
    b = B[:, None] if B.ndim == 1 else B
    M, K = a.shape[-2:]
    if b.shape[-2] != K:
        raise ValueError(f"MatMul shapes {A.shape} and {B.shape} do not line up")
    N = b.shape[-1]
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if b.ndim == 2 and a.ndim > 2:
        # Weights without batch axes: fold the batch into M (one big GEMM instead of many small ones).
        y = _batched(a.reshape(1, -1, K), b[None]).reshape(batch + (M, N))
    else:
        nb = math.prod(batch)
        a3 = broadcast_to(a, batch + (M, K)).reshape(nb, M, K)
        b3 = broadcast_to(b, batch + (K, N)).reshape(nb, K, N)
        y = _batched(a3, b3).reshape(batch + (M, N))
    if A.ndim == 1:
        y = y[..., 0, :]
    if B.ndim == 1:
        y = y[..., 0]
    return y


def MatMul(A, B): return matmul(A, B)


def Gemm(A, B, C=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    return prepare_gemm(alpha, beta, transA, transB)(A, B, C)


def prepare_gemm(alpha=1.0, beta=1.0, transA=0, transB=0):
    """Gemm with its attributes resolved once per node and its bias kept while C stays the same (constant) array:
    a wake-word head's 128x128 Gemm costs less than working those out again."""
    last_bias = [None, None]   # (C, the [N] float32 bias the kernel adds, or None when C is added afterwards)

    def gemm(A, B, C=None):
        a = A.T if transA else A
        packed = isinstance(B, PACKED)  # a constant weight packed at convert time: B.k x B.n whatever transB
        b = None if packed else B.T if transB else B
        K, N = (B.k, B.n) if packed else b.shape if b.ndim == 2 else (None, None)
        if a.ndim != 2 or a.shape[1] != K:
            raise ValueError(f"Gemm shapes {A.shape} and {B.shape} (transA={transA}, transB={transB}) do not line up")
        M = a.shape[0]
        bias = None
        if C is not None and beta != 0:
            if C is last_bias[0] and last_bias[1] is not None and last_bias[1].size == N:
                bias, C = last_bias[1], None
            else:
                C = cast(C, np.float32) if C.dtype == np.float16 else C
                # A [N] float32 bias with beta 1 goes straight into the kernel; anything else is added afterwards.
                if beta == 1.0 and C.dtype == np.float32 and C.size == N and (C.ndim == 1 or C.shape == (1, N)) \
                        and A.dtype != np.float16:
                    last_bias[:] = C, contiguous(C.reshape(N))
                    bias, C = last_bias[1], None
        y = _packed(a, B, bias) if packed else _batched(a[None], b[None], bias)[0]
        if alpha != 1.0:
            y = binary("mul", y, np.array(alpha, y.dtype))
        if C is not None and beta != 0:
            if beta != 1.0:
                C = binary("mul", C, np.array(beta, C.dtype))
            y = binary("add", y, broadcast_to(C, (M, N)))
        return y
    return gemm


Gemm.prepare = prepare_gemm


def Det(X):
    """Determinant of the last two axes (LU in float64: small matrices only ever reach this op)."""
    if X.dtype != np.float32:
        raise ValueError(f"Det supports float32, got {X.dtype}")
    return np.linalg.det(X.astype(np.float64)).astype(np.float32)


# ---------------------------------------------------------------- Einsum

def _parse(equation: str, operands) -> tuple[list[list[str]], list[str]]:
    """Terms as lists of one-letter labels; '...' expands to labels '0', '1', ... (right-aligned per operand)."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"Einsum equation {equation!r} has {len(terms)} inputs, got {len(operands)} operands")
    def ell_dims(term, x):
        n = x.ndim - len(term.replace("...", "")) if "..." in term else 0
        if n < 0 or ("..." not in term and len(term) != x.ndim):
            raise ValueError(f"Einsum term {term!r} does not match an operand of rank {x.ndim}")
        return n

    ell_rank = max([ell_dims(t, x) for t, x in zip(terms, operands)] + [0])
    parsed = []
    for term, x in zip(terms, operands):
        head, _, tail = term.partition("...")
        n = ell_dims(term, x)
        parsed.append(list(head) + [str(ell_rank - n + i) for i in range(n)] + list(tail))
    ell = [str(i) for i in range(ell_rank)]
    if arrow:
        head, dots, tail = rhs.partition("...")
        out = list(head) + (ell if dots else []) + list(tail)
    else:
        counts = {}
        for t in parsed:
            for c in t:
                if not c.isdigit():
                    counts[c] = counts.get(c, 0) + 1
        out = ell + sorted(c for c, k in counts.items() if k == 1)
    return parsed, out


def _diagonal(x: np.ndarray, labels: list[str]):
    """Repeated labels in one term take the diagonal (a strided view)."""
    while len(set(labels)) != len(labels):
        c = next(c for c in labels if labels.count(c) > 1)
        i = labels.index(c)
        j = labels.index(c, i + 1)
        x = np.diagonal(x, axis1=i, axis2=j)  # the diagonal axis moves to the end
        labels = [l for k, l in enumerate(labels) if k not in (i, j)] + [c]
    return x, labels


def _sum_out(x: np.ndarray, labels: list[str], drop: set) -> tuple[np.ndarray, list[str]]:
    """Sum over the labels in `drop` as a matmul with a ones vector."""
    axes = [i for i, l in enumerate(labels) if l in drop]
    if not axes:
        return x, labels
    keep = [i for i in range(x.ndim) if i not in axes]
    shape = [x.shape[i] for i in keep]
    S = math.prod(x.shape[i] for i in axes)
    t = x.transpose(keep + axes).reshape(1, -1, S)
    dtype = x.dtype if x.dtype in INT_TYPES else np.float32
    ones = np.ones((1, S, 1), dtype)
    return _batched(t, ones).reshape(shape), [labels[i] for i in keep]


def _contract(x, xl, y, yl, keep: set):
    """Contract two labelled operands; labels in `keep` survive (batch if in both, else free)."""
    batch = [l for l in xl if l in yl and l in keep]
    inner = [l for l in xl if l in yl and l not in keep]
    xf = [l for l in xl if l not in yl]
    yf = [l for l in yl if l not in xl]
    size = {}
    for t, ls in ((x, xl), (y, yl)):
        for d, l in zip(t.shape, ls):
            size[l] = max(size.get(l, 1), d)  # broadcast (ellipsis) axes of size 1
    xt = x.transpose([xl.index(l) for l in batch + xf + inner])
    yt = y.transpose([yl.index(l) for l in batch + inner + yf])
    bshape = [size[l] for l in batch]
    xt = np.broadcast_to(xt, bshape + list(xt.shape[len(batch):]))
    yt = np.broadcast_to(yt, bshape + list(yt.shape[len(batch):]))
    nb, m = math.prod(bshape), math.prod(size[l] for l in xf)
    k, n = math.prod(size[l] for l in inner), math.prod(size[l] for l in yf)
    r = _batched(xt.reshape(nb, m, k), yt.reshape(nb, k, n))
    return r.reshape(bshape + [size[l] for l in xf] + [size[l] for l in yf]), batch + xf + yf


def Einsum(*Inputs, equation):
    terms, out = _parse(equation, Inputs)
    ops = []
    for x, labels in zip(Inputs, terms):
        if x.dtype == np.float16:
            x = cast(x, np.float32)
        ops.append(_diagonal(x, labels))
    # Labels no other operand and not the output use are summed first; then operands contract left to right.
    for i, (x, labels) in enumerate(ops):
        others = set(out).union(*(set(l) for j, (_, l) in enumerate(ops) if j != i))
        ops[i] = _sum_out(x, labels, {l for l in labels if l not in others})
    x, labels = ops[0]
    for i in range(1, len(ops)):
        y, yl = ops[i]
        keep = set(out).union(*(set(l) for _, l in ops[i + 1:]))
        x, labels = _contract(x, labels, y, yl, keep)
        x, labels = _sum_out(x, labels, {l for l in labels if l not in keep})
    if sorted(labels) != sorted(out):
        raise ValueError(f"Einsum {equation!r}: output labels {out} do not match the operands")
    return x.transpose([labels.index(l) for l in out]).copy()  # (ascontiguousarray would make a scalar 1-D)
