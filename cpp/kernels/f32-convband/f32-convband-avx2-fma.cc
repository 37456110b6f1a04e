// f32-convband AVX2+FMA+F16C: 8 lanes, fp16 widened/narrowed with vcvtph2ps/vcvtps2ph (round to nearest even),
// SiLU from the f32-vunary kernels (silu8); tails through the scalar kernels.
#include <immintrin.h>

#include <cstdint>

#include "kernels/f32-vunary/f32-vunary-avx2-fma.h"  // silu8: the one AVX2 SiLU
#include "kernels/microkernels.h"

namespace onnxstream {

static inline __m256 load8(const void* x, int x_f16, size_t i) {
  return x_f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(static_cast<const uint16_t*>(x) + i)))
               : _mm256_loadu_ps(static_cast<const float*>(x) + i);
}

void f32_vscaleshift_ukernel__avx2_fma(size_t n, const void* x, int x_f16, float a, float b, int act, float* y) {
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_fmadd_ps(load8(x, x_f16, i), va, vb);
    _mm256_storeu_ps(y + i, act ? silu8(v) : v);
  }
  if (i < n) {
    const size_t es = x_f16 ? 2 : 4;
    f32_vscaleshift_ukernel__scalar(n - i, static_cast<const char*>(x) + i * es, x_f16, a, b, act, y + i);
  }
}

void f32_vaddstore_ukernel__avx2_fma(size_t n, const float* z, const void* r, int r_f16, void* y, int y_f16) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(z + i);
    if (r) v = _mm256_add_ps(v, load8(r, r_f16, i));
    if (y_f16) {
      _mm_storeu_si128((__m128i*)(static_cast<uint16_t*>(y) + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    } else {
      _mm256_storeu_ps(static_cast<float*>(y) + i, v);
    }
  }
  if (i < n)
    f32_vaddstore_ukernel__scalar(n - i, z + i, r ? static_cast<const char*>(r) + i * (r_f16 ? 2 : 4) : nullptr,
                                  r_f16, static_cast<char*>(y) + i * (y_f16 ? 2 : 4), y_f16);
}

void f32_rsumsq_ukernel__avx2_fma(size_t n, const void* x, int x_f16, float shift, float* sums) {
  const __m256 vs = _mm256_set1_ps(shift);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, q0 = s0, q1 = s0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 v0 = _mm256_sub_ps(load8(x, x_f16, i), vs), v1 = _mm256_sub_ps(load8(x, x_f16, i + 8), vs);
    s0 = _mm256_add_ps(s0, v0), s1 = _mm256_add_ps(s1, v1);
    q0 = _mm256_fmadd_ps(v0, v0, q0), q1 = _mm256_fmadd_ps(v1, v1, q1);
  }
  float lanes_s[8], lanes_q[8];
  _mm256_storeu_ps(lanes_s, _mm256_add_ps(s0, s1));
  _mm256_storeu_ps(lanes_q, _mm256_add_ps(q0, q1));
  float s = 0.0f, q = 0.0f;
  for (int l = 0; l < 8; l++) s += lanes_s[l], q += lanes_q[l];
  sums[0] += s;
  sums[1] += q;
  if (i < n) f32_rsumsq_ukernel__scalar(n - i, static_cast<const char*>(x) + i * (x_f16 ? 2 : 4), x_f16, shift, sums);
}

}  // namespace onnxstream
