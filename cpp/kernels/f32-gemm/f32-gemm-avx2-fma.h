// Template for the {MR}x16 AVX2+FMA GEMM microkernels (f32-gemm and f32-f16w-gemm): two ymm accumulators per row
// (16 columns = one panel), fp16 panels widened with vcvtph2ps (F16C), A broadcast from memory.
// Included only by *-avx2-fma.cc files, which CMake compiles with -mavx2 -mfma -mf16c.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/gemm-tile-rows.h"

namespace onnxstream {

// Lanes < n of a ymm mask (n <= 8).
inline __m256i avx2_lane_mask(size_t n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lanes);
}

// Stores the tile's rows, the real last row after its aliases (same values either way); masked unless nc >= 16.
template <int MR>
inline void avx2_store_tile(float* const* cr, const __m256* lo, const __m256* hi, size_t nc, __m256i mask_lo,
                            __m256i mask_hi) {
#pragma GCC unroll 16
  for (int i = MR - 1; i >= 0; i--) {
    if (nc >= 16) {
      _mm256_storeu_ps(cr[i], lo[i]);
      _mm256_storeu_ps(cr[i] + 8, hi[i]);
    } else {
      _mm256_maskstore_ps(cr[i], mask_lo, lo[i]);
      _mm256_maskstore_ps(cr[i] + 8, mask_hi, hi[i]);
    }
  }
}

template <int MR, bool kF16Weights>
inline void gemm_avx2_fma(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w, float* c,
                          size_t c_stride, const float* bias, int accumulate) {
  const float* ar[MR];
  float* cr[MR];
  gemm_tile_rows<MR>(mr, a, a_stride, c, c_stride, ar, cr);
  const __m256i mask_lo = avx2_lane_mask(nc < 8 ? nc : 8), mask_hi = avx2_lane_mask(nc > 8 ? nc - 8 : 0);

  __m256 lo[MR], hi[MR];
  const __m256 bias_lo = bias ? _mm256_maskload_ps(bias, mask_lo) : _mm256_setzero_ps();
  const __m256 bias_hi = bias ? _mm256_maskload_ps(bias + 8, mask_hi) : _mm256_setzero_ps();
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) {
    lo[i] = accumulate ? _mm256_maskload_ps(cr[i], mask_lo) : bias_lo;
    hi[i] = accumulate ? _mm256_maskload_ps(cr[i] + 8, mask_hi) : bias_hi;
  }

  auto load_b = [w](size_t k, __m256& b_lo, __m256& b_hi) {
    if (kF16Weights) {
      const uint16_t* wp = static_cast<const uint16_t*>(w) + k * 16;  // [kc][16] fp16
      b_lo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)wp));
      b_hi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(wp + 8)));
    } else {
      const float* wp = static_cast<const float*>(w) + k * 16;  // [kc][16] float32
      b_lo = _mm256_loadu_ps(wp);
      b_hi = _mm256_loadu_ps(wp + 8);
    }
  };
  size_t k = 0;
  if (MR == 1) {  // one row: 4 chains over k hide the FMA latency that MR rows hide otherwise
    __m256 lo_k[3] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}, hi_k[3] = {lo_k[0], lo_k[0], lo_k[0]};
    for (; k + 4 <= kc; k += 4) {
      __m256 b_lo, b_hi;
      load_b(k, b_lo, b_hi);
      lo[0] = _mm256_fmadd_ps(_mm256_broadcast_ss(ar[0] + k), b_lo, lo[0]);
      hi[0] = _mm256_fmadd_ps(_mm256_broadcast_ss(ar[0] + k), b_hi, hi[0]);
#pragma GCC unroll 3
      for (int j = 0; j < 3; j++) {
        load_b(k + 1 + j, b_lo, b_hi);
        lo_k[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(ar[0] + k + 1 + j), b_lo, lo_k[j]);
        hi_k[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(ar[0] + k + 1 + j), b_hi, hi_k[j]);
      }
    }
    lo[0] = _mm256_add_ps(_mm256_add_ps(lo[0], lo_k[0]), _mm256_add_ps(lo_k[1], lo_k[2]));
    hi[0] = _mm256_add_ps(_mm256_add_ps(hi[0], hi_k[0]), _mm256_add_ps(hi_k[1], hi_k[2]));
  }
  for (; k < kc; k++) {
    __m256 b_lo, b_hi;
    load_b(k, b_lo, b_hi);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      const __m256 av = _mm256_broadcast_ss(ar[i] + k);
      lo[i] = _mm256_fmadd_ps(av, b_lo, lo[i]);
      hi[i] = _mm256_fmadd_ps(av, b_hi, hi[i]);
    }
  }

  avx2_store_tile<MR>(cr, lo, hi, nc, mask_lo, mask_hi);
}

}  // namespace onnxstream
