// Template for the NEON f32-rmax kernels (armv7 and aarch64): the largest of x[0..n), -inf for n = 0.
// Included only by *-neon.cc and *-aarch64-neonfma.cc files.
#pragma once
#include <arm_neon.h>

#include <cmath>
#include <cstddef>

namespace onnxstream {

inline float rmax_neon(size_t n, const float* x) {
  float32x4_t m0 = vdupq_n_f32(-INFINITY), m1 = m0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    m0 = vmaxq_f32(m0, vld1q_f32(x + i));
    m1 = vmaxq_f32(m1, vld1q_f32(x + i + 4));
  }
  for (; i + 4 <= n; i += 4) m0 = vmaxq_f32(m0, vld1q_f32(x + i));
  m0 = vmaxq_f32(m0, m1);
  float32x2_t m = vpmax_f32(vget_low_f32(m0), vget_high_f32(m0));
  float r = vget_lane_f32(vpmax_f32(m, m), 0);
  for (; i < n; i++) r = x[i] > r ? x[i] : r;
  return r;
}

}  // namespace onnxstream
