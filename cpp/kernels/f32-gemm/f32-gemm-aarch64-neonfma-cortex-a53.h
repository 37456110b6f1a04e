// Scaffolding of the 8x16 Cortex-A53 GEMM microkernels (f32-gemm, f32-f16w-gemm, f32-qc8w-gemm; contract:
// microkernels.h): two passes of 8 rows x 8 columns over the 16-column panel, each pass's k loop run 4 k at a time
// by the file's generated inline-asm main loop (16 q accumulators + 8 A rows + 8 B vectors = all 32 registers, so
// nothing spills), the k % 4 tail, bias / accumulate / qc8w scale and the stores here.
// Included only by the generated *-8x16-aarch64-neonfma-cortex-a53.cc files.
#pragma once
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/f32-gemm/f32-gemm-neon.h"  // neon_store_tile
#include "kernels/gemm-tile-rows.h"

namespace onnxstream {

enum class A53Weights { f32, f16, qc8 };

template <A53Weights W>
constexpr size_t a53_weight_bytes() { return W == A53Weights::f32 ? 4 : W == A53Weights::f16 ? 2 : 1; }

// Columns 0-7 of one panel row as floats (the tail's loads; the main loop has its own).
template <A53Weights W>
inline void a53_load_b(const char* p, float32x4_t* b) {
  if constexpr (W == A53Weights::f32) {
    b[0] = vld1q_f32(reinterpret_cast<const float*>(p));
    b[1] = vld1q_f32(reinterpret_cast<const float*>(p) + 4);
  } else if constexpr (W == A53Weights::f16) {
    const uint16x8_t h = vld1q_u16(reinterpret_cast<const uint16_t*>(p));
    b[0] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h)));
    b[1] = vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h)));
  } else {
    const int16x8_t v = vmovl_s8(vld1_s8(reinterpret_cast<const int8_t*>(p)));
    b[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(v)));
    b[1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(v)));
  }
}

// main_loop(acc, ar, w, n), n >= 1: acc[i][h] += sum_{k < 4n} ar[i][k] * row k of w, columns 4h..4h+3, where w
// points at column 0 of this pass in panel row 0 and advances by 4n rows.
using A53MainLoop = void (*)(float32x4_t (&acc)[8][2], const float* const* ar, const char*& w, size_t n);

template <A53Weights W, A53MainLoop main_loop>
inline void gemm_8x16_a53(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w,
                          const float* scale, float* c, size_t c_stride, const float* bias, int accumulate) {
  constexpr size_t E = a53_weight_bytes<W>(), kRow = 16 * E;  // bytes per weight, per panel row
  const float* ar[8];
  float* cr[8];
  gemm_tile_rows<8>(mr, a, a_stride, c, c_stride, ar, cr);
  for (size_t j0 = 0; j0 < nc; j0 += 8) {
    const size_t cols = nc - j0 < 8 ? nc - j0 : 8;
    float tmp[8] = {};  // partial column groups go through here
    float32x4_t acc[8][2], init[2];
    // qc8w sums the raw products and applies scale and init at the end; the others start from init.
    if (bias && W != A53Weights::qc8) std::memcpy(tmp, bias + j0, cols * 4);
    for (int h = 0; h < 2; h++) init[h] = bias && W != A53Weights::qc8 ? vld1q_f32(tmp + 4 * h) : vdupq_n_f32(0.0f);
    for (int i = 0; i < 8; i++) {
      const float* src = cr[i] + j0;
      if (W != A53Weights::qc8 && accumulate && cols < 8) {
        std::memcpy(tmp, src, cols * 4);
        src = tmp;
      }
      for (int h = 0; h < 2; h++)
        acc[i][h] = W != A53Weights::qc8 && accumulate ? vld1q_f32(src + 4 * h) : init[h];
    }
    const char* wp = static_cast<const char*>(w) + j0 * E;
    const size_t k4 = kc / 4;
    if (k4) main_loop(acc, ar, wp, k4);
    for (size_t k = 4 * k4; k < kc; k++, wp += kRow) {
      float32x4_t b[2];
      a53_load_b<W>(wp, b);
      for (int i = 0; i < 8; i++) {
        const float32x4_t av = vld1q_dup_f32(ar[i] + k);
        for (int h = 0; h < 2; h++) acc[i][h] = vfmaq_f32(acc[i][h], b[h], av);
      }
    }
    if constexpr (W == A53Weights::qc8) {
      // c = init + scale * acc, init = c (accumulate), bias or 0. All rows' c are read before any is written:
      // rows past mr alias the last real row.
      float32x4_t s[2];
      std::memcpy(tmp, scale + j0, cols * 4);
      for (int h = 0; h < 2; h++) s[h] = vld1q_f32(tmp + 4 * h);
      if (bias) std::memcpy(tmp, bias + j0, cols * 4);
      for (int h = 0; h < 2; h++) init[h] = bias ? vld1q_f32(tmp + 4 * h) : vdupq_n_f32(0.0f);
      for (int i = 0; i < 8; i++) {
        if (accumulate) std::memcpy(tmp, cr[i] + j0, cols * 4);
        for (int h = 0; h < 2; h++)
          acc[i][h] = vfmaq_f32(accumulate ? vld1q_f32(tmp + 4 * h) : init[h], acc[i][h], s[h]);
      }
    }
    neon_store_tile<8, 8>(cr, acc, j0, cols, tmp);
  }
}

}  // namespace onnxstream
