// Tests every f32-vbinary kernel in the .inc list compiled for this target against a double-precision reference:
// both operands as arrays and either one as a broadcast value, lengths below, at and above every vector width,
// signed zeros, infinities and NaN (max and min must propagate it), in place. Division may be 2 ulp off (armv7
// refines a reciprocal estimate); the rest must be exact. Kernels whose ISA the CPU lacks are reported as skipped.
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu.h"
#include "kernel_report.h"
#include "kernels/microkernels.h"

using namespace onnxstream;

struct VBinaryKernel { const char* name; uint32_t isa; VBinaryOp op; VBinaryUkernel fn; };

static const VBinaryKernel kKernels[] = {
#define VBINARY_UKERNEL(isa, op, fn) ONNXSTREAM_IF_##isa(VBinaryKernel{#fn, ONNXSTREAM_ISA_##isa, op, fn},)
#include "kernels/f32-vbinary/f32-vbinary.inc"
#undef VBINARY_UKERNEL
};

static double reference(VBinaryOp op, double a, double b) {
  switch (op) {
    case kVAdd: return a + b;
    case kVSub: return a - b;
    case kVMul: return a * b;
    case kVDiv: return a / b;
    case kVMax: return a != a || b != b ? NAN : std::fmax(a, b);
    case kVMin: return a != a || b != b ? NAN : std::fmin(a, b);
    default: return NAN;
  }
}

static bool close(VBinaryOp op, float got, double want) {
  const float w = (float)want;
  if (w != w) return got != got;
  if (std::isinf(w) || op != kVDiv) return got == w || (w == 0 && got == 0);  // (max/min of +0 and -0: either)
  return std::fabs(got - want) <= 2 * FLT_EPSILON * std::fabs(want) + 0x1p-126;
}

static bool test(const VBinaryKernel& uk) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-10.0f, 10.0f);
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-30f, 3.0f};
  for (int mode = 0; mode < 3; mode++)   // 0: both arrays, 1: a broadcast, 2: b broadcast
    for (size_t n = 0; n <= 67; n++)
      for (bool in_place : {false, true}) {
        std::vector<float> a(n + 1, 1.0f), b(n + 1, 2.0f), y(n + 1, 12345.0f);
        for (size_t i = 0; i < n; i++) {
          a[i] = i % 4 == 3 ? specials[i % 7] : u(rng);
          b[i] = i % 5 == 2 ? specials[(i + 3) % 7] : u(rng);
        }
        const std::vector<float> a0 = a, b0 = b;
        float* out = in_place && mode != 1 ? a.data() : y.data();
        uk.fn(n, a.data(), mode == 1, b.data(), mode == 2, out);
        for (size_t i = 0; i < n; i++) {
          const double want = reference(uk.op, mode == 1 ? a0[0] : a0[i], mode == 2 ? b0[0] : b0[i]);
          if (!close(uk.op, out[i], want)) {
            std::printf("  %s mode=%d n=%zu i=%zu: %.9g, want %.9g\n", uk.name, mode, n, i, out[i], want);
            return false;
          }
        }
        if (out[n] != (out == y.data() ? 12345.0f : 1.0f)) {
          std::printf("  %s n=%zu: wrote past the end\n", uk.name, n);
          return false;
        }
      }
  return true;
}

int main() {
  KernelReport report;
  for (const VBinaryKernel& uk : kKernels) report.run(uk.name, uk.isa, [&] { return test(uk); });
  return report.finish();
}
