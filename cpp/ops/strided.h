// Walks several same-shaped strided tensors row by row (the innermost axis), splitting rows across threads.
// Elementwise ops build on this: they only write the loop over one row.
#pragma once
#include <algorithm>
#include <array>

#include "parallel.h"
#include "tensor.h"

namespace onnxstream {

template <int N>
struct RowWalk {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t strides[N][kMaxDims];

  // All tensors must have `ref`'s shape (broadcast inputs arrive with zero strides).
  explicit RowWalk(const std::array<const Tensor*, N>& ts) {
    const Tensor& ref = *ts[0];
    for (int k = 0; k < N; k++) {
      check(ts[k]->ndim == ref.ndim, "internal: strided walk over tensors of different rank");
      for (int i = 0; i < ref.ndim; i++) check(ts[k]->shape[i] == ref.shape[i], "internal: shape mismatch in strided walk");
    }
    // Drop size-1 axes, then merge axes that are contiguous with each other in every tensor.
    for (int i = 0; i < ref.ndim; i++) {
      if (ref.shape[i] == 1) continue;
      bool merge = ndim > 0;
      for (int k = 0; k < N && merge; k++) merge = strides[k][ndim - 1] == ts[k]->strides[i] * ref.shape[i];
      if (merge) {
        shape[ndim - 1] *= ref.shape[i];
        for (int k = 0; k < N; k++) strides[k][ndim - 1] = ts[k]->strides[i];
      } else {
        shape[ndim] = ref.shape[i];
        for (int k = 0; k < N; k++) strides[k][ndim] = ts[k]->strides[i];
        ndim++;
      }
    }
    if (ndim == 0) {
      shape[0] = 1;
      for (int k = 0; k < N; k++) strides[k][0] = 0;
      ndim = 1;
    }
  }

  // row(ptrs, inner_strides, n) for every row; rows are split across threads, and so are long rows (a contiguous
  // tensor is one row): pieces of at least kPiece elements each.
  template <typename F>
  void run(const std::array<const Tensor*, N>& ts, F row) const {
    constexpr int64_t kPiece = 16384;
    int64_t inner = shape[ndim - 1], rows = 1;
    for (int i = 0; i < ndim - 1; i++) rows *= shape[i];
    std::array<int64_t, N> inner_strides;
    for (int k = 0; k < N; k++) inner_strides[k] = strides[k][ndim - 1];
    const int64_t threads = num_threads();
    const int64_t pieces = rows >= 4 * threads ? 1 : std::max<int64_t>(1, std::min(inner / kPiece, 4 * threads));
    const int64_t piece = (inner + pieces - 1) / pieces;
    int64_t grain = std::max<int64_t>(1, kPiece / std::max<int64_t>(std::min(inner, piece), 1));
    parallel_for(rows * pieces, grain, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) {
        const int64_t r = t / pieces, i0 = t % pieces * piece, i1 = std::min(inner, i0 + piece);
        if (i0 >= i1) continue;
        std::array<char*, N> p;
        for (int k = 0; k < N; k++) p[k] = static_cast<char*>(ts[k]->data) + i0 * inner_strides[k];
        int64_t rem = r;
        for (int i = ndim - 2; i >= 0; i--) {
          int64_t idx = rem % shape[i];
          rem /= shape[i];
          for (int k = 0; k < N; k++) p[k] += idx * strides[k][i];
        }
        row(p, inner_strides, i1 - i0);
      }
    });
  }
};

}  // namespace onnxstream
