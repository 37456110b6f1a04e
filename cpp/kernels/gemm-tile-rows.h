// Row pointers of an MR-row GEMM microkernel tile, shared by every ISA's kernel templates.
#pragma once
#include <cstddef>

namespace onnxstream {

// Rows past mr alias the last real row: they compute and store the same values, so no branches in the k loop.
template <int MR>
inline void gemm_tile_rows(size_t mr, const float* a, size_t a_stride, float* c, size_t c_stride, const float** ar,
                           float** cr) {
  ar[0] = a;
  cr[0] = c;
#pragma GCC unroll 16
  for (int i = 1; i < MR; i++) {
    bool real = (size_t)i < mr;
    ar[i] = real ? (const float*)((const char*)ar[i - 1] + a_stride) : ar[i - 1];
    cr[i] = real ? (float*)((char*)cr[i - 1] + c_stride) : cr[i - 1];
  }
}

}  // namespace onnxstream
