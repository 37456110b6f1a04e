// Template of the NEON f32-dwconv kernels (armv7 neon-vfpv4 and aarch64, both with vfmaq_f32): 8 outputs per
// iteration in two accumulators, taps unrolled for 9 and 25, bias first, clamp in the epilogue, the tail in vectors
// too (rows are readable past n). Included only by *-neon.cc and *-aarch64-neonfma.cc files.
#pragma once
#include <arm_neon.h>

#include <cstddef>

namespace onnxstream {

template <size_t T>
inline void dwconv_neon(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y, float lo,
                        float hi) {
  const size_t t_n = T ? T : taps;
  const float32x4_t vb = vdupq_n_f32(bias), vlo = vdupq_n_f32(lo), vhi = vdupq_n_f32(hi);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    float32x4_t a0 = vb, a1 = vb;
    for (size_t t = 0; t < t_n; t++) {
      const float32x4_t wt = vdupq_n_f32(w[t]);
      a0 = vfmaq_f32(a0, vld1q_f32(rows[t] + i), wt);
      a1 = vfmaq_f32(a1, vld1q_f32(rows[t] + i + 4), wt);
    }
    vst1q_f32(y + i, vminq_f32(vhi, vmaxq_f32(vlo, a0)));
    vst1q_f32(y + i + 4, vminq_f32(vhi, vmaxq_f32(vlo, a1)));
  }
  for (; i < n; i += 4) {  // rows are readable past n (microkernels.h); only the outputs below n are stored
    float32x4_t a = vb;
    for (size_t t = 0; t < t_n; t++) a = vfmaq_f32(a, vld1q_f32(rows[t] + i), vdupq_n_f32(w[t]));
    float tmp[4];
    vst1q_f32(tmp, vminq_f32(vhi, vmaxq_f32(vlo, a)));
    for (size_t j = 0; j < 4 && i + j < n; j++) y[i + j] = tmp[j];
  }
}

}  // namespace onnxstream

#define ONNXSTREAM_NEON_DWCONV_KERNELS(isa)                                                                        \
  void f32_dwconv_ukernel_9p__##isa(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y, \
                                    float lo, float hi) { dwconv_neon<9>(n, taps, rows, w, bias, y, lo, hi); }       \
  void f32_dwconv_ukernel_25p__##isa(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y, \
                                     float lo, float hi) { dwconv_neon<25>(n, taps, rows, w, bias, y, lo, hi); }      \
  void f32_dwconv_ukernel_up__##isa(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y, \
                                    float lo, float hi) { dwconv_neon<0>(n, taps, rows, w, bias, y, lo, hi); }
