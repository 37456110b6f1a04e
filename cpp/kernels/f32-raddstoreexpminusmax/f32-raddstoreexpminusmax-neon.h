// Template for the NEON f32-raddstoreexpminusmax kernels (armv7 neon-vfpv4 and aarch64, both with vfmaq_f32):
// y[i] = exp(x[i] - max), returns the sum; 4 lanes, tail through a zero-padded copy.
// Included only by *-neon.cc and *-aarch64-neonfma.cc files.
#pragma once
#include <arm_neon.h>

#include <cstddef>
#include <cstring>

#include "kernels/f32-raddstoreexpminusmax/f32-raddstoreexpminusmax-constants.h"

namespace onnxstream {

inline float32x4_t exp_rr2_p5_neon(float32x4_t t) {
  const float32x4_t magic = vdupq_n_f32(kExpMagicBias);
  float32x4_t n = vfmaq_f32(magic, t, vdupq_n_f32(kExpLog2e));
  const float32x4_t s = vreinterpretq_f32_s32(vshlq_n_s32(vreinterpretq_s32_f32(n), 23));  // 2^n
  n = vsubq_f32(n, magic);
  float32x4_t r = vfmaq_f32(t, n, vdupq_n_f32(kExpMinusLn2Hi));
  r = vfmaq_f32(r, n, vdupq_n_f32(kExpMinusLn2Lo));
  float32x4_t p = vfmaq_f32(vdupq_n_f32(kExpC4), vdupq_n_f32(kExpC5), r);
  p = vfmaq_f32(vdupq_n_f32(kExpC3), p, r);
  p = vfmaq_f32(vdupq_n_f32(kExpC2), p, r);
  p = vfmaq_f32(vdupq_n_f32(kExpC1), p, r);
  r = vmulq_f32(r, s);
  const float32x4_t f = vfmaq_f32(s, r, p);
  const uint32x4_t underflow = vcltq_f32(t, vdupq_n_f32(kExpCutoff));
  return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(f), underflow));
}

inline float raddstoreexpminusmax_neon(size_t n, const float* x, float max, float* y) {
  const float32x4_t vmax = vdupq_n_f32(max);
  float32x4_t sum0 = vdupq_n_f32(0.0f), sum1 = vdupq_n_f32(0.0f);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float32x4_t e0 = exp_rr2_p5_neon(vsubq_f32(vld1q_f32(x + i), vmax));
    const float32x4_t e1 = exp_rr2_p5_neon(vsubq_f32(vld1q_f32(x + i + 4), vmax));
    vst1q_f32(y + i, e0);
    vst1q_f32(y + i + 4, e1);
    sum0 = vaddq_f32(sum0, e0);
    sum1 = vaddq_f32(sum1, e1);
  }
  for (; i < n; i += 4) {
    const size_t rest = n - i < 4 ? n - i : 4;
    float tmp[4] = {max, max, max, max};  // padding lanes give exp(0) = 1, cleared before the sum
    std::memcpy(tmp, x + i, rest * 4);
    float32x4_t e = exp_rr2_p5_neon(vsubq_f32(vld1q_f32(tmp), vmax));
    vst1q_f32(tmp, e);
    std::memcpy(y + i, tmp, rest * 4);
    for (size_t j = rest; j < 4; j++) tmp[j] = 0.0f;
    sum0 = vaddq_f32(sum0, vld1q_f32(tmp));
  }
  const float32x4_t sum = vaddq_f32(sum0, sum1);
  const float32x2_t s2 = vadd_f32(vget_low_f32(sum), vget_high_f32(sum));
  return vget_lane_f32(vpadd_f32(s2, s2), 0);
}

}  // namespace onnxstream
