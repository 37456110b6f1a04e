// Tests every f32-vunary kernel in the .inc list compiled for this target against a double-precision reference:
// lengths below, at and above every vector width, inputs spanning each op's range, signed zeros, infinities and
// NaN, in place and not. Kernels whose ISA the CPU lacks are reported as skipped. Exit code: 0 when none failed.
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu.h"
#include "kernel_report.h"
#include "kernels/microkernels.h"

using namespace onnxstream;

struct VUnaryKernel { const char* name; uint32_t isa; VUnaryOp op; VUnaryUkernel fn; };

static const VUnaryKernel kKernels[] = {
#define VUNARY_UKERNEL(isa, op, fn) ONNXSTREAM_IF_##isa(VUnaryKernel{#fn, ONNXSTREAM_ISA_##isa, op, fn},)
#include "kernels/f32-vunary/f32-vunary.inc"
#undef VUNARY_UKERNEL
};

static double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

static double reference(VUnaryOp op, double v, const VUnaryParams& p) {
  switch (op) {
    case kVClamp: return v != v ? v : std::fmin(p.beta, std::fmax(p.alpha, v));
    case kVLeakyRelu: return std::signbit(v) ? v * p.alpha : v;
    case kVHardSigmoid: return v != v ? v : std::fmin(1.0, std::fmax(0.0, v * p.alpha + p.beta));
    case kVHardSwish: return v != v ? v : v * std::fmin(1.0, std::fmax(0.0, v / 6 + 0.5));
    case kVSigmoid: return sigmoid(v);
    case kVSilu: return v * sigmoid(v);
    case kVTanh: return std::tanh(v);
    case kVExp: return std::exp(v);
    case kVErf: return std::erf(v);
    case kVGelu: return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    case kVSqrt: return std::sqrt(v);
    case kVAbs: return std::fabs(v);
    case kVNeg: return -v;
    default: return NAN;
  }
}

// Allowed error: `ulps` float ulps of the result's scale: the result itself, or where float evaluation cancels
// (alpha * x + beta of the hard ops, x * (1 + erf) of GELU for large negative x) the terms' magnitude.
static bool close(VUnaryOp op, float x, float got, double want, const VUnaryParams& p) {
  // GELU(-inf) is -inf * (1 + erf(-inf)) in ONNX's formula: NaN, or -inf where erf's last ulp misses -1.
  if (op == kVGelu && std::isinf(x)) return true;
  if (want != want) return got != got;
  if (std::isinf((float)want)) return got == (float)want;  // overflows in float32
  const double ulps = op == kVExp || op == kVSigmoid || op == kVSilu || op == kVTanh || op == kVErf || op == kVGelu ? 8 : 2;
  double scale = std::fabs(want);
  if (op == kVHardSigmoid) scale = std::fmax(scale, std::fabs(x * p.alpha) + std::fabs(p.beta));
  if (op == kVHardSwish) scale = std::fmax(scale, std::fabs(x) * (std::fabs(x / 6) + 0.5));
  if (op == kVGelu) scale = std::fmax(scale, std::fabs(x));
  // exp(-|x|) flushes to 0 below 2^-126, where sigmoid and SiLU are below 2^-110 in magnitude.
  const double floor = op == kVSigmoid || op == kVSilu ? 0x1p-110 : 0x1p-126;
  return std::fabs(got - want) <= ulps * FLT_EPSILON * scale + floor;
}

static float spread(VUnaryOp op) {
  switch (op) {
    case kVExp: return 90.0f;         // past overflow and (negative) past underflow to 0
    case kVSigmoid: case kVSilu: return 100.0f;
    case kVSqrt: return 1000.0f;
    default: return 10.0f;
  }
}

static bool test(const VUnaryKernel& uk) {
  std::mt19937 rng(7);
  const VUnaryParams params = uk.op == kVClamp ? VUnaryParams{-1.5f, 6.0f}
                              : uk.op == kVHardSigmoid ? VUnaryParams{0.2f, 0.5f} : VUnaryParams{0.1f, 0.0f};
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-20f, -1e-20f, 3.0f, -3.0f, 0.5f};
  std::uniform_real_distribution<float> u(uk.op == kVSqrt ? 0.0f : -spread(uk.op), spread(uk.op));
  bool ok = true;
  for (size_t n = 0; n <= 67; n++)
    for (bool in_place : {false, true}) {
      std::vector<float> x(n + 1, 12345.0f), y(n + 1, 12345.0f);
      for (size_t i = 0; i < n; i++) x[i] = i % 5 == 4 ? specials[(i / 5) % 10] : u(rng);
      if (uk.op == kVSqrt)
        for (size_t i = 0; i < n; i++) x[i] = x[i] != x[i] ? x[i] : std::fabs(x[i]);  // sqrt of a negative: NaN either way
      std::vector<float> x0 = x;
      float* out = in_place ? x.data() : y.data();
      uk.fn(n, x.data(), out, &params);
      for (size_t i = 0; i < n; i++) {
        const double want = reference(uk.op, x0[i], params);
        if (!close(uk.op, x0[i], out[i], want, params)) {
          std::printf("  %s n=%zu x=%.9g: %.9g, want %.9g\n", uk.name, n, x0[i], out[i], want);
          ok = false;
          break;
        }
      }
      if (out[n] != 12345.0f) {
        std::printf("  %s n=%zu: wrote past the end\n", uk.name, n);
        ok = false;
      }
      if (!ok) return false;
    }
  // A dense sweep of the range where the approximations switch regimes.
  std::vector<float> x(4001), y(4001);
  for (size_t i = 0; i < x.size(); i++) x[i] = (uk.op == kVSqrt ? 0.0f : -spread(uk.op)) + spread(uk.op) * (uk.op == kVSqrt ? 1 : 2) * i / 4000.0f;
  uk.fn(x.size(), x.data(), y.data(), &params);
  for (size_t i = 0; i < x.size(); i++)
    if (!close(uk.op, x[i], y[i], reference(uk.op, x[i], params), params)) {
      std::printf("  %s x=%.9g: %.9g, want %.9g\n", uk.name, x[i], y[i], reference(uk.op, x[i], params));
      return false;
    }
  return ok;
}

int main() {
  KernelReport report;
  for (const VUnaryKernel& uk : kKernels) report.run(uk.name, uk.isa, [&] { return test(uk); });
  return report.finish();
}
