"""Text features: TfIdfVectorizer over integer token ids (n-gram counts, vectorized per gram length and skip)."""
from __future__ import annotations

import numpy as np


def TfIdfVectorizer(X, max_gram_length, max_skip_count, min_gram_length, mode, ngram_counts, ngram_indexes,
                    pool_int64s=None, pool_strings=None, weights=None):
    """[C] or [B, C] token ids -> [out] or [B, out] float32: how often each pool n-gram occurs (n in
    [min_gram_length, max_gram_length], its tokens skip-1 apart for every skip up to max_skip_count; unigrams
    counted once), weighted by mode (TF: counts, IDF: weight if present, TFIDF: weight * count)."""
    if pool_int64s is None:
        raise NotImplementedError("TfIdfVectorizer: string pools are not supported (onnxstream has no strings)")
    pool = np.asarray(pool_int64s, np.int64)
    rows = X.reshape(1, -1) if X.ndim <= 1 else X
    width = rows.shape[1]
    out_size = max(ngram_indexes) + 1
    counts = np.zeros((rows.shape[0], out_size), np.int64)
    starts = list(ngram_counts) + [pool.size]
    gram_id = 0  # n-grams are numbered in pool order; ngram_indexes maps that number to an output column
    for n in range(1, len(ngram_counts) + 1):
        grams = pool[starts[n - 1]:starts[n]].reshape(-1, n)  # [G, n]
        columns = np.asarray(ngram_indexes[gram_id:gram_id + len(grams)], np.int64)
        gram_id += len(grams)
        if not (min_gram_length <= n <= max_gram_length) or not len(grams):
            continue
        for skip in range(1, (max_skip_count + 1 if n > 1 else 1) + 1):
            span = (n - 1) * skip
            if span >= width:
                break
            positions = np.arange(width - span)[:, None] + np.arange(n)[None, :] * skip  # [P, n]
            windows = rows[:, positions]                                               # [B, P, n]
            hits = (windows[:, :, None, :] == grams[None, None, :, :]).all(axis=-1).sum(axis=1)  # [B, G]
            np.add.at(counts, (slice(None), columns), hits)
    w = np.ones(out_size) if weights is None or not len(weights) else np.asarray(weights, np.float64)
    if mode == "TF":
        y = counts
    elif mode == "IDF":
        y = np.where(counts > 0, w, 0.0)
    elif mode == "TFIDF":
        y = counts * w
    else:
        raise ValueError(f"TfIdfVectorizer: unknown mode '{mode}'")
    y = y.astype(np.float32)
    return y[0] if X.ndim <= 1 else y
