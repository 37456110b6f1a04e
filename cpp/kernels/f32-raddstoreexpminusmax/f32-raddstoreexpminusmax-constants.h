// exp(t) for t <= 0 as XNNPACK's rr2-p5 scheme does it: n = round(t / ln2), t' = t - n*ln2 in two parts
// (Cody-Waite; ln2_hi has trailing zero bits so n*ln2_hi is exact), exp(t') by a degree-5 minimax polynomial,
// 2^n built in the exponent bits. Max error about 2 ulp; inputs below kExpCutoff (exp underflows) give 0.
// Shared by every ISA's f32-raddstoreexpminusmax kernel so they agree bit for bit where FMA rounding allows.
#pragma once

namespace onnxstream {

constexpr float kExpLog2e = 0x1.715476p+0f;
constexpr float kExpMagicBias = 0x1.8000FEp23f;  // 1.5 * 2^23 + 127: rounds t*log2e and adds the exponent bias
constexpr float kExpMinusLn2Hi = -0x1.62E400p-1f;
constexpr float kExpMinusLn2Lo = -0x1.7F7D1Cp-20f;
constexpr float kExpC5 = 0x1.0F9F9Cp-7f;
constexpr float kExpC4 = 0x1.573A1Ap-5f;
constexpr float kExpC3 = 0x1.555A80p-3f;
constexpr float kExpC2 = 0x1.FFFDC6p-2f;
constexpr float kExpC1 = 0x1.FFFFF6p-1f;
constexpr float kExpCutoff = -0x1.5D589Ep6f;  // ln(2^-126): smaller t would need a denormal 2^n

}  // namespace onnxstream
