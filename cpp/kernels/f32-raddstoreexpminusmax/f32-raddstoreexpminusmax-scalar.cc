// f32-raddstoreexpminusmax scalar: y[i] = exp(x[i] - max), returns the sum; no FMA needed (armv6 and every CPU).
#include <cstdint>
#include <cstring>

#include "kernels/f32-raddstoreexpminusmax/f32-raddstoreexpminusmax-constants.h"
#include "kernels/microkernels.h"

namespace onnxstream {

static inline float exp_rr2_p5(float t) {
  float n = t * kExpLog2e + kExpMagicBias;  // the add rounds to an integer
  uint32_t bits;
  std::memcpy(&bits, &n, 4);
  bits <<= 23;  // low bits of n (n + 127) become the exponent field: s = 2^n
  float s;
  std::memcpy(&s, &bits, 4);
  n -= kExpMagicBias;
  float r = n * kExpMinusLn2Hi + t;
  r = n * kExpMinusLn2Lo + r;
  float p = kExpC5 * r + kExpC4;
  p = p * r + kExpC3;
  p = p * r + kExpC2;
  p = p * r + kExpC1;
  r *= s;
  const float f = r * p + s;
  return t < kExpCutoff ? 0.0f : f;
}

float f32_raddstoreexpminusmax_ukernel__scalar(size_t n, const float* x, float max, float* y) {
  float sum0 = 0.0f, sum1 = 0.0f;  // two chains: the adds do not wait on each other
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    const float e0 = exp_rr2_p5(x[i] - max), e1 = exp_rr2_p5(x[i + 1] - max);
    y[i] = e0;
    y[i + 1] = e1;
    sum0 += e0;
    sum1 += e1;
  }
  if (i < n) {
    y[i] = exp_rr2_p5(x[i] - max);
    sum0 += y[i];
  }
  return sum0 + sum1;
}

}  // namespace onnxstream
