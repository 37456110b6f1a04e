// Tests every f32-convband kernel (scale/shift + SiLU, add + store, row sums) compiled for this target against a
// double-precision reference: float32 and fp16 operands, lengths below, at and above every vector width (tails).
// fp16 stores must round exactly like half.h (nearest even). Exit code: 0 when nothing failed.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "half.h"
#include "kernel_report.h"
#include "kernels/microkernels.h"

using namespace onnxstream;

struct BandKernels { const char* name; uint32_t isa; VScaleShiftUkernel scaleshift; VAddStoreUkernel addstore;
                     RSumSqUkernel rsumsq; };

static const BandKernels kKernels[] = {
#define CONVBAND_UKERNELS(isa, a, b, c) ONNXSTREAM_IF_##isa(BandKernels{#a, ONNXSTREAM_ISA_##isa, a, b, c},)
#include "kernels/f32-convband/f32-convband.inc"
#undef CONVBAND_UKERNELS
};

// n values of x as float32 and as fp16 bits, with vf the fp16 values widened (what both forms hold).
struct Row {
  std::vector<float> f;
  std::vector<uint16_t> h;
  std::vector<float> hf;
};

static Row row(size_t n, std::mt19937& rng, float spread) {
  std::normal_distribution<float> d(0.0f, spread);
  Row r;
  for (size_t i = 0; i < n; i++) {
    r.f.push_back(d(rng));
    r.h.push_back(float_to_half(r.f.back()));
    r.hf.push_back(half_to_float(r.h.back()));
  }
  r.f.push_back(0), r.h.push_back(0), r.hf.push_back(0);  // a guard element
  return r;
}

static bool test(const BandKernels& k) {
  std::mt19937 rng(3);
  bool ok = true;
  for (size_t n = 0; n <= 70; n++)
    for (int f16 : {0, 1})
      for (int act : {0, 1}) {
        Row x = row(n, rng, 6.0f);
        const float a = 0.7f, b = -0.3f;
        std::vector<float> y(n + 1, 12345.0f);
        k.scaleshift(n, f16 ? (const void*)x.h.data() : x.f.data(), f16, a, b, act, y.data());
        for (size_t i = 0; i < n; i++) {
          const double v = (double)(f16 ? x.hf[i] : x.f[i]) * a + b, want = act ? v / (1 + std::exp(-v)) : v;
          if (!(std::fabs(y[i] - want) <= 4e-6 * (std::fabs(want) + 1))) {
            std::printf("  %s n=%zu f16=%d act=%d: %g, want %g\n", k.name, n, f16, act, y[i], want);
            ok = false;
            break;
          }
        }
        if (y[n] != 12345.0f) std::printf("  %s n=%zu: scaleshift wrote past the end\n", k.name, n), ok = false;
        // add + store: residual none / float32 / fp16 (act picks none vs present), output float32 / fp16 (f16).
        Row z = row(n, rng, 3.0f), r = row(n, rng, 3.0f);
        const int r_f16 = f16 ^ act;
        const void* rp = act ? (r_f16 ? (const void*)r.h.data() : r.f.data()) : nullptr;
        std::vector<uint16_t> yh(n + 1, 777);
        std::vector<float> yf(n + 1, 12345.0f);
        k.addstore(n, z.f.data(), rp, r_f16, f16 ? (void*)yh.data() : yf.data(), f16);
        for (size_t i = 0; i < n; i++) {
          const float sum = z.f[i] + (act ? (r_f16 ? r.hf[i] : r.f[i]) : 0.0f);
          if (f16 ? yh[i] != float_to_half(sum) : yf[i] != sum) {
            std::printf("  %s n=%zu: addstore element %zu wrong\n", k.name, n, i);
            ok = false;
            break;
          }
        }
        if (yh[n] != 777 || yf[n] != 12345.0f) std::printf("  %s: addstore wrote past the end\n", k.name), ok = false;
        float sums[2] = {1.0f, 2.0f};  // accumulated into
        k.rsumsq(n, f16 ? (const void*)x.h.data() : x.f.data(), f16, 0.5f, sums);
        double s = 1, q = 2;
        for (size_t i = 0; i < n; i++) {
          const double v = (f16 ? x.hf[i] : x.f[i]) - 0.5;
          s += v, q += v * v;
        }
        if (!(std::fabs(sums[0] - s) <= 1e-5 * (q + 1) && std::fabs(sums[1] - q) <= 1e-5 * (q + 1))) {
          std::printf("  %s n=%zu: sums %g %g, want %g %g\n", k.name, n, sums[0], sums[1], s, q);
          ok = false;
        }
      }
  return ok;
}

int main() {
  KernelReport report;
  for (const BandKernels& k : kKernels) report.run(k.name, k.isa, [&] { return test(k); });
  return report.finish();
}
