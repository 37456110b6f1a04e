// Tester for GEMM microkernels and weight packers: random inputs from a fixed seed, the reference packer, a naive
// double-accumulating loop over unpacked (dequantized) weights, and a relative tolerance.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "half.h"
#include "kernels/microkernels.h"

namespace onnxstream {

struct GemmKernel {
  const char* name;
  uint32_t isa;
  GemmUkernel fn;
  size_t mr, nr;
  bool f16_weights;
};

struct Qc8wGemmKernel {
  const char* name;
  uint32_t isa;
  GemmQc8wUkernel fn;
  size_t mr, nr;
};

struct PackwKernel {
  const char* name;
  uint32_t isa;
  PackwUkernel fn;
  size_t elem_size;  // 4 for x32, 2 for x16
};

// Reference packer: element (k, n) of w goes to panel n / 16, row k, lane n % 16; missing columns are zero.
inline void reference_packw(size_t kc, size_t nc, const char* w, ptrdiff_t k_stride, ptrdiff_t n_stride,
                            size_t elem, char* packed) {
  const size_t panels = (nc + 15) / 16;
  std::memset(packed, 0, panels * kc * 16 * elem);
  for (size_t k = 0; k < kc; k++)
    for (size_t n = 0; n < nc; n++)
      std::memcpy(packed + ((n / 16 * kc + k) * 16 + n % 16) * elem, w + k * k_stride + n * n_stride, elem);
}

class GemmTester {
 public:
  GemmTester& m(size_t v) { m_ = v; return *this; }
  GemmTester& n(size_t v) { n_ = v; return *this; }
  GemmTester& k(size_t v) { k_ = v; return *this; }
  GemmTester& a_stride(size_t v) { a_stride_ = v; return *this; }  // in floats; 0 = k
  GemmTester& c_stride(size_t v) { c_stride_ = v; return *this; }  // in floats; 0 = n
  GemmTester& bias(bool v) { bias_ = v; return *this; }
  GemmTester& accumulate(bool v) { accumulate_ = v; return *this; }

  // int8 weights with per-column scales: random int8 panels and scales; the reference sums over the dequantized
  // weights q * scale. Returns false (after printing what failed) when an output is off.
  bool check(const Qc8wGemmKernel& uk) const {
    const size_t as = a_stride_ ? a_stride_ : k_, cs = c_stride_ ? c_stride_ : n_;
    std::mt19937 rng(54321 + m_ * 1000003 + n_ * 1009 + k_);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::uniform_int_distribution<int> qdist(-127, 127);
    std::vector<float> a(m_ * as + 1), bias(n_), c((m_ - 1) * cs + n_ + 32), scale(n_);
    for (auto& v : a) v = dist(rng);
    for (auto& v : bias) v = dist(rng);
    for (auto& v : c) v = dist(rng);
    for (auto& v : scale) v = std::ldexp(1.0f + dist(rng) * 0.5f, -7);
    std::vector<int8_t> q(k_ * n_);
    for (auto& v : q) v = (int8_t)qdist(rng);
    std::vector<char> packed(((n_ + 15) / 16) * k_ * 16 + 64);
    reference_packw(k_, n_, (const char*)q.data(), n_, 1, 1, packed.data());
    std::vector<float> w(k_ * n_);
    for (size_t i = 0; i < w.size(); i++) w[i] = (float)q[i] * scale[i % n_];
    return run_and_compare(uk.name, a, as, w, bias, c, cs, [&](float* cp) {
      uk.fn(m_, n_, k_, a.data(), as * 4, packed.data(), scale.data(), cp, cs * 4, bias_ ? bias.data() : nullptr,
            accumulate_);
    });
  }

  // Returns false (after printing what failed) when an output is off.
  bool check(const GemmKernel& uk) const {
    const size_t as = a_stride_ ? a_stride_ : k_, cs = c_stride_ ? c_stride_ : n_, elem = uk.f16_weights ? 2 : 4;
    std::mt19937 rng(12345 + m_ * 1000003 + n_ * 1009 + k_);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> a(m_ * as + 1), w(k_ * n_), bias(n_), c((m_ - 1) * cs + n_ + 32);
    for (auto& v : a) v = dist(rng);
    for (auto& v : bias) v = dist(rng);
    for (auto& v : c) v = dist(rng);
    std::vector<uint16_t> wh(k_ * n_);
    for (size_t i = 0; i < w.size(); i++) {
      w[i] = dist(rng);
      if (uk.f16_weights) {  // the reference uses the dequantized weights
        wh[i] = float_to_half(w[i]);
        w[i] = half_to_float(wh[i]);
      }
    }
    const char* wsrc = uk.f16_weights ? (const char*)wh.data() : (const char*)w.data();
    std::vector<char> packed(((n_ + 15) / 16) * k_ * 16 * elem + 64);
    reference_packw(k_, n_, wsrc, n_ * elem, elem, elem, packed.data());

    return run_and_compare(uk.name, a, as, w, bias, c, cs, [&](float* cp) {
      uk.fn(m_, n_, k_, a.data(), as * 4, packed.data(), cp, cs * 4, bias_ ? bias.data() : nullptr, accumulate_);
    });
  }

 private:
  // Runs the kernel (run(c)) on c and compares with a double-accumulating loop over w [k][n] (dequantized).
  template <typename Run>
  bool run_and_compare(const char* name, const std::vector<float>& a, size_t as, const std::vector<float>& w,
                       const std::vector<float>& bias, std::vector<float> c, size_t cs, Run run) const {
    std::vector<float> expect(c);
    std::vector<double> scale(c.size(), 0.0);  // per output: sum of |terms|, the scale of its rounding error
    for (size_t i = 0; i < m_; i++)
      for (size_t j = 0; j < n_; j++) {
        double sum = accumulate_ ? c[i * cs + j] : bias_ ? bias[j] : 0.0, mag = std::fabs(sum);
        for (size_t kk = 0; kk < k_; kk++) {
          sum += (double)a[i * as + kk] * w[kk * n_ + j];
          mag += std::fabs((double)a[i * as + kk] * w[kk * n_ + j]);
        }
        expect[i * cs + j] = (float)sum;
        scale[i * cs + j] = mag;
      }
    run(c.data());
    for (size_t idx = 0; idx < c.size(); idx++) {
      const size_t i = idx / cs, j = idx % cs;
      const bool inside = i < m_ && j < n_;
      const double tol = inside ? 4.0 * (k_ + 1) * 1.1920929e-7 * scale[idx] + 1e-30 : 0.0;
      if (!(std::fabs((double)c[idx] - expect[idx]) <= tol)) {
        std::printf("FAIL %s m=%zu n=%zu k=%zu a_stride=%zu c_stride=%zu bias=%d acc=%d: c[%zu][%zu] = %g, "
                    "want %g%s\n",
                    name, m_, n_, k_, as, cs, (int)bias_, (int)accumulate_, i, j, c[idx], expect[idx],
                    inside ? "" : " (outside the tile: must be untouched)");
        return false;
      }
    }
    return true;
  }

  size_t m_ = 1, n_ = 16, k_ = 1, a_stride_ = 0, c_stride_ = 0;
  bool bias_ = true, accumulate_ = false;
};

// Packs a random [k, n] matrix (optionally column-strided) with uk and with the reference; compares bytes.
inline bool check_packw(const PackwKernel& uk, size_t k, size_t n, size_t n_step) {
  const size_t elem = uk.elem_size, row = n * n_step + 3;  // row length in elements, padded to odd
  std::vector<char> w(k * row * elem);
  std::mt19937 rng(7 + k * 131 + n);
  for (auto& b : w) b = (char)rng();
  const size_t bytes = ((n + 15) / 16) * k * 16 * elem;
  std::vector<char> got(bytes + 16, (char)0x5a), want(bytes + 16, (char)0x5a);
  uk.fn(k, n, w.data(), row * elem, n_step * elem, got.data());
  reference_packw(k, n, w.data(), row * elem, n_step * elem, elem, want.data());
  if (got != want) {
    std::printf("FAIL %s k=%zu n=%zu n_step=%zu: packed bytes differ from the reference packer\n", uk.name, k, n,
                n_step);
    return false;
  }
  return true;
}

}  // namespace onnxstream
