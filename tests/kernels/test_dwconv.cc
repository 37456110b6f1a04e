// Tests every f32-dwconv kernel in the .inc list compiled for this target against a double-precision reference:
// tap counts 9 and 25 (and 1..27 for the any-tap kernels), output lengths below, at and above every vector width,
// rows at odd offsets (readable up to n rounded up to 16, as the kernels may read), with and without a clamp. Accepts |y - ref| <= 4 * taps * FLT_EPSILON * sum|w * x|.
// Kernels whose ISA the CPU lacks are reported as skipped. Exit code: 0 when nothing failed.
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu.h"
#include "kernel_report.h"
#include "kernels/microkernels.h"

using namespace onnxstream;

struct DwconvKernel { const char* name; uint32_t isa; DwconvUkernel fn; size_t taps; };

static const DwconvKernel kKernels[] = {
#define DWCONV_UKERNEL(isa, fn, taps) ONNXSTREAM_IF_##isa(DwconvKernel{#fn, ONNXSTREAM_ISA_##isa, fn, taps},)
#include "kernels/f32-dwconv/f32-dwconv.inc"
#undef DWCONV_UKERNEL
};

static bool check(const DwconvKernel& uk, size_t taps, size_t n, float lo, float hi, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<std::vector<float>> data(taps);
  std::vector<const float*> rows(taps);
  for (size_t t = 0; t < taps; t++) {
    data[t].resize((n + 15) / 16 * 16 + 3);  // readable up to n rounded up to 16, from an odd start
    for (float& v : data[t]) v = d(rng);
    rows[t] = data[t].data() + t % 3;  // unaligned starts
  }
  std::vector<float> w(taps), y(n + 1, 12345.0f);
  for (float& v : w) v = d(rng);
  const float bias = d(rng);
  uk.fn(n, taps, rows.data(), w.data(), bias, y.data(), lo, hi);
  for (size_t i = 0; i < n; i++) {
    double ref = bias, mag = std::fabs(bias);
    for (size_t t = 0; t < taps; t++) ref += (double)w[t] * rows[t][i], mag += std::fabs((double)w[t] * rows[t][i]);
    const double want = std::fmin(hi, std::fmax(lo, ref));
    if (!(std::fabs(y[i] - want) <= 4 * taps * FLT_EPSILON * mag)) {
      std::printf("  %s taps=%zu n=%zu i=%zu: %g, want %g\n", uk.name, taps, n, i, y[i], want);
      return false;
    }
  }
  if (y[n] != 12345.0f) {
    std::printf("  %s taps=%zu n=%zu: wrote past the end\n", uk.name, taps, n);
    return false;
  }
  return true;
}

static bool test(const DwconvKernel& uk) {
  std::mt19937 rng(3);
  bool ok = true;
  std::vector<size_t> tap_counts;
  if (uk.taps) tap_counts.push_back(uk.taps);
  else for (size_t t = 1; t <= 27; t++) tap_counts.push_back(t);
  for (size_t taps : tap_counts)
    for (size_t n = 1; n <= 70; n++) {
      ok = ok && check(uk, taps, n, -INFINITY, INFINITY, rng);
      ok = ok && check(uk, taps, n, 0.0f, 6.0f, rng);   // Relu6
    }
  return ok;
}

int main() {
  KernelReport report;
  for (const DwconvKernel& uk : kKernels) report.run(uk.name, uk.isa, [&] { return test(uk); });
  return report.finish();
}
