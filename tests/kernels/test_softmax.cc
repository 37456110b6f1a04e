// Tests every f32-rmax and f32-raddstoreexpminusmax kernel in the .inc lists compiled for this target against a
// double-precision reference: lengths below, at and above every vector width, inputs spanning the whole range
// exp handles (down to underflow), -inf entries (masked keys), and in-place use. Kernels whose ISA the CPU lacks
// are reported as skipped. Exit code: 0 when nothing failed.
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu.h"
#include "kernel_report.h"
#include "kernels/microkernels.h"

using namespace onnxstream;

struct RmaxKernel { const char* name; uint32_t isa; RmaxUkernel fn; };
struct ExpKernel { const char* name; uint32_t isa; RaddstoreexpminusmaxUkernel fn; };

static const RmaxKernel kRmaxKernels[] = {
#define RMAX_UKERNEL(isa, fn) ONNXSTREAM_IF_##isa(RmaxKernel{#fn, ONNXSTREAM_ISA_##isa, fn},)
#include "kernels/f32-rmax/f32-rmax.inc"
#undef RMAX_UKERNEL
};
static const ExpKernel kExpKernels[] = {
#define RADDSTOREEXPMINUSMAX_UKERNEL(isa, fn) ONNXSTREAM_IF_##isa(ExpKernel{#fn, ONNXSTREAM_ISA_##isa, fn},)
#include "kernels/f32-raddstoreexpminusmax/f32-raddstoreexpminusmax.inc"
#undef RADDSTOREEXPMINUSMAX_UKERNEL
};

// n random inputs in [-spread, 0] + offset, with every 7th entry -inf when `masked`.
static std::vector<float> inputs(size_t n, float spread, bool masked, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-spread, 0.0f);
  std::vector<float> x(n + 1, 12345.0f);  // one guard element past n must stay untouched
  for (size_t i = 0; i < n; i++) x[i] = masked && i % 7 == 3 ? -INFINITY : u(rng) + 3.0f;
  return x;
}

static bool test_rmax(const RmaxKernel& uk) {
  std::mt19937 rng(1);
  bool ok = uk.fn(0, nullptr) == -INFINITY;
  for (size_t n = 1; n <= 100; n++)
    for (bool masked : {false, true}) {
      std::vector<float> x = inputs(n, 50.0f, masked, rng);
      float want = -INFINITY;
      for (size_t i = 0; i < n; i++) want = std::fmax(want, x[i]);
      if (uk.fn(n, x.data()) != want) {
        std::printf("  %s n=%zu masked=%d: wrong max\n", uk.name, n, (int)masked);
        ok = false;
      }
    }
  return ok;
}

static bool test_exp(const ExpKernel& uk) {
  std::mt19937 rng(2);
  bool ok = true;
  for (size_t n = 0; n <= 100; n++)
    for (float spread : {1.0f, 30.0f, 120.0f})  // 120 reaches past the underflow cutoff
      for (bool masked : {false, true})
        for (bool in_place : {false, true}) {
          std::vector<float> x = inputs(n, spread, masked, rng), y(n + 1, 12345.0f);
          const float max = 3.0f;
          std::vector<float> x0 = x;
          float* out = in_place ? x.data() : y.data();
          const float sum = uk.fn(n, x.data(), max, out);
          double want_sum = 0;
          bool reported = false;
          for (size_t i = 0; i < n; i++) {
            const double want = std::exp((double)x0[i] - max);
            want_sum += want;
            // 4 ulp relative, or 2^-125 absolute near underflow: results below 2^-126 are flushed to 0, and
            // armv7 NEON flushes the denormal product r * 2^n inside the kernel too.
            if (!(std::fabs(out[i] - want) <= 4 * FLT_EPSILON * want + 0x1p-125) && !reported) {
              std::printf("  %s n=%zu x=%g: %g, want %g\n", uk.name, n, x0[i], out[i], want);
              ok = false;
              reported = true;
            }
          }
          if (out[n] != 12345.0f) {
            std::printf("  %s n=%zu: wrote past the end\n", uk.name, n);
            ok = false;
          }
          if (!(std::fabs(sum - want_sum) <= 4 * FLT_EPSILON * (want_sum + 1) * (1 + n / 16.0))) {
            std::printf("  %s n=%zu: sum %g, want %g\n", uk.name, n, sum, want_sum);
            ok = false;
          }
        }
  return ok;
}

int main() {
  KernelReport report;
  for (const RmaxKernel& uk : kRmaxKernels) report.run(uk.name, uk.isa, [&] { return test_rmax(uk); });
  for (const ExpKernel& uk : kExpKernels) report.run(uk.name, uk.isa, [&] { return test_exp(uk); });
  return report.finish();
}
