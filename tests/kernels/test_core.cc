// Kernel test for the core kernels that are not GEMM: elementwise ops, fp16 conversion, XXH64, plain matmul.
// Each kernel path is compared against a scalar reference written here. Built per target (ONNXSTREAM_BUILD_TESTS)
// and run natively or under QEMU (`qemu-arm -cpu arm1176` proves the armv6 build has no armv7/NEON instruction).
// Prints one line per case and exits non-zero if any case fails.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "half.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "parallel.h"
#include "stream/hash.h"
#include "tensor.h"

using namespace onnxstream;

namespace {

int g_cases = 0, g_failed = 0;

void run_case(const char* name, const std::function<bool()>& body) {
  g_cases++;
  bool ok = false;
  try {
    ok = body();
  } catch (const std::exception& e) {
    std::printf("  exception: %s\n", e.what());
  }
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", name);
  if (!ok) g_failed++;
}

// Contiguous tensor over `data` with the given shape.
Tensor view(DType dt, std::vector<int64_t> shape, void* data) {
  Tensor t;
  t.dtype = dt;
  t.ndim = (int)shape.size();
  int64_t s = (int64_t)dtype_size(dt);
  for (int i = t.ndim - 1; i >= 0; i--) {
    t.shape[i] = shape[i];
    t.strides[i] = s;
    s *= shape[i];
  }
  t.data = data;
  return t;
}

// Deterministic pseudo-random floats in [lo, hi) (xorshift; identical on every target).
std::vector<float> randoms(size_t n, float lo, float hi, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& f : v) {
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    f = lo + (hi - lo) * (float)(x >> 8) / 16777216.0f;
  }
  return v;
}

bool close(double got, double want, double rtol, double atol, const char* what, size_t i) {
  if (std::isnan(want) && std::isnan(got)) return true;
  if (std::fabs(got - want) <= atol + rtol * std::fabs(want)) return true;
  std::printf("  %s[%zu]: got %.9g want %.9g\n", what, i, got, want);
  return false;
}

// ---- elementwise ----

bool check_unary(const char* op, double (*ref)(double), float lo, float hi) {
  const size_t n = 1037;  // odd length: exercises vector bodies and scalar tails
  auto x = randoms(n, lo, hi, 7);
  std::vector<float> y(n);
  unary((UnaryOp)unary_code(op), view(DType::f32, {(int64_t)n}, x.data()), view(DType::f32, {(int64_t)n}, y.data()), 0.0f,
        0.0f);
  for (size_t i = 0; i < n; i++)
    if (!close(y[i], ref(x[i]), 2e-6, 1e-6, op, i)) return false;
  return true;
}

double ref_relu(double x) { return x > 0 ? x : 0; }
double ref_sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
double ref_silu(double x) { return x / (1 + std::exp(-x)); }
double ref_neg(double x) { return -x; }
double ref_abs(double x) { return std::fabs(x); }
double ref_sqrt(double x) { return std::sqrt(x); }
double ref_exp(double x) { return std::exp(x); }
double ref_tanh(double x) { return std::tanh(x); }
double ref_erf(double x) { return std::erf(x); }
double ref_gelu(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }

// y[i, j] = a[i, j] op b[j]: contiguous a, broadcast row b (stride 0 on axis 0), and a transposed (strided) a.
bool check_binary(const char* op, double (*ref)(double, double)) {
  const int64_t R = 13, C = 67;
  auto a = randoms(R * C, -3, 3, 11), b = randoms(C, 0.5f, 2.5f, 12);
  std::vector<float> y(R * C);
  Tensor ta = view(DType::f32, {R, C}, a.data()), tb = view(DType::f32, {R, C}, b.data());
  tb.strides[0] = 0;
  binary((BinaryOp)binary_code(op), ta, tb, view(DType::f32, {R, C}, y.data()));
  for (int64_t i = 0; i < R * C; i++)
    if (!close(y[i], ref(a[i], b[i % C]), 1e-6, 1e-7, op, i)) return false;
  // transposed view of a as [C, R]: every row is strided; b broadcast along axis 1 and scalar-like
  Tensor at = view(DType::f32, {C, R}, a.data());
  at.strides[0] = 4;
  at.strides[1] = C * 4;
  Tensor bs = view(DType::f32, {C, R}, b.data());
  bs.strides[0] = 4;
  bs.strides[1] = 0;
  binary((BinaryOp)binary_code(op), at, bs, view(DType::f32, {C, R}, y.data()));
  for (int64_t c = 0; c < C; c++)
    for (int64_t r = 0; r < R; r++)
      if (!close(y[c * R + r], ref(a[r * C + c], b[c]), 1e-6, 1e-7, op, c * R + r)) return false;
  return true;
}

double ref_add(double a, double b) { return (float)a + (float)b; }
double ref_sub(double a, double b) { return (float)a - (float)b; }
double ref_mul(double a, double b) { return (float)a * (float)b; }
double ref_div(double a, double b) { return (float)a / (float)b; }
double ref_max(double a, double b) { return a > b ? a : b; }
double ref_pow(double a, double b) { return std::pow(a, b); }

// ---- fp16 ----

#if defined(__FLT16_MAX__)
// The compiler's own conversion (hardware on aarch64/armv7 with fp16, compiler-rt's software routine on armv6).
float ref_h2f(uint16_t h) { _Float16 v; std::memcpy(&v, &h, 2); return (float)v; }
uint16_t ref_f2h(float f) { _Float16 v = (_Float16)f; uint16_t h; std::memcpy(&h, &v, 2); return h; }
#define HAVE_REF_HALF 1
#endif

bool check_half_to_float() {
  for (uint32_t h = 0; h < 65536; h++) {
    float f = half_to_float((uint16_t)h);
    uint16_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f && man) {
      if (!std::isnan(f)) { std::printf("  half 0x%04x: NaN expected\n", h); return false; }
      continue;
    }
#ifdef HAVE_REF_HALF
    float want = ref_h2f((uint16_t)h);
#else
    double m = exp ? 1.0 + man / 1024.0 : man / 1024.0;
    float want = (float)((h & 0x8000 ? -1 : 1) * (exp == 0x1f ? INFINITY : std::ldexp(m, exp ? exp - 15 : -14)));
#endif
    if (std::memcmp(&f, &want, 4) != 0) {
      std::printf("  half 0x%04x: got %.9g want %.9g\n", h, f, want);
      return false;
    }
  }
  return true;
}

bool check_float_to_half() {
  // every half boundary region: the exact halves, their midpoints (ties to even) and neighbours, plus random floats
  std::vector<float> xs = randoms(20000, -70000, 70000, 3);
  auto small = randoms(20000, -1e-4f, 1e-4f, 4);  // subnormal halves
  xs.insert(xs.end(), small.begin(), small.end());
  for (uint32_t h = 0; h < 0x7c00; h++) {
    float f = half_to_float((uint16_t)h), g = half_to_float((uint16_t)(h + 1));
    float mid = (f + g) / 2;
    for (float v : {f, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)}) {
      xs.push_back(v);
      xs.push_back(-v);
    }
  }
  xs.push_back(INFINITY);
  xs.push_back(-INFINITY);
  xs.push_back(1e30f);
  for (size_t i = 0; i < xs.size(); i++) {
    uint16_t got = float_to_half(xs[i]);
#ifdef HAVE_REF_HALF
    uint16_t want = ref_f2h(xs[i]);
#else
    uint16_t want = got;
    if (xs[i] == half_to_float(got) || std::isinf(xs[i])) want = got;
#endif
    if (got != want) {
      std::printf("  float %.9g: got 0x%04x want 0x%04x\n", xs[i], got, want);
      return false;
    }
  }
  return std::isnan(half_to_float(float_to_half(NAN)));
}

// ---- xxh64: byte-by-byte reference after the spec (github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md) ----

uint64_t le64(const uint8_t* p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }
uint64_t le32(const uint8_t* p) { uint64_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
uint64_t rol(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t ref_xxh64(const uint8_t* p, size_t len, uint64_t seed) {
  const uint64_t P1 = 0x9E3779B185EBCA87ULL, P2 = 0xC2B2AE3D27D4EB4FULL, P3 = 0x165667B19E3779F9ULL,
                 P4 = 0x85EBCA77C2B2AE63ULL, P5 = 0x27D4EB2F165667C5ULL;
  auto rnd = [&](uint64_t acc, uint64_t lane) { return rol(acc + lane * P2, 31) * P1; };
  size_t i = 0;
  uint64_t acc;
  if (len >= 32) {
    uint64_t v[4] = {seed + P1 + P2, seed + P2, seed, seed - P1};
    for (; i + 32 <= len; i += 32)
      for (int l = 0; l < 4; l++) v[l] = rnd(v[l], le64(p + i + 8 * l));
    acc = rol(v[0], 1) + rol(v[1], 7) + rol(v[2], 12) + rol(v[3], 18);
    for (int l = 0; l < 4; l++) acc = (acc ^ rnd(0, v[l])) * P1 + P4;
  } else {
    acc = seed + P5;
  }
  acc += len;
  for (; i + 8 <= len; i += 8) acc = rol(acc ^ rnd(0, le64(p + i)), 27) * P1 + P4;
  for (; i + 4 <= len; i += 4) acc = rol(acc ^ (le32(p + i) * P1), 23) * P2 + P3;
  for (; i < len; i++) acc = rol(acc ^ (p[i] * P5), 11) * P1;
  acc ^= acc >> 33; acc *= P2; acc ^= acc >> 29; acc *= P3; acc ^= acc >> 32;
  return acc;
}

bool check_xxh64() {
  if (xxh64("", 0, 0) != 0xEF46DB3751D8E999ULL) { std::printf("  empty-input vector from the spec\n"); return false; }
  std::vector<uint8_t> buf(1000 + 8);
  uint32_t x = 1;
  for (auto& b : buf) { x = x * 1103515245u + 12345u; b = (uint8_t)(x >> 16); }
  for (size_t off = 0; off < 8; off++)  // unaligned starts
    for (size_t len = 0; len <= 1000; len += (len < 80 ? 1 : 37))
      for (uint64_t seed : {0ULL, 0x9E3779B97F4A7C15ULL}) {
        uint64_t got = xxh64(buf.data() + off, len, seed), want = ref_xxh64(buf.data() + off, len, seed);
        if (got != want) {
          std::printf("  off %zu len %zu: got %016llx want %016llx\n", off, len, (unsigned long long)got,
                      (unsigned long long)want);
          return false;
        }
      }
  return true;
}

// ---- matmul ----

bool check_matmul(DType wdt, bool broadcast_w, bool with_bias) {
  const int64_t B = 2, M = 5, K = 37, N = 19;
  auto a = randoms(B * M * K, -1, 1, 21), wf = randoms(B * K * N, -1, 1, 22), bias = randoms(N, -1, 1, 23);
  std::vector<uint16_t> wh(wf.size());
  for (size_t i = 0; i < wf.size(); i++) {
    wh[i] = float_to_half(wf[i]);
    if (wdt == DType::f16) wf[i] = half_to_float(wh[i]);  // the reference sees the same rounded weights
  }
  std::vector<float> y(B * M * N);
  Tensor tw = view(wdt, {B, K, N}, wdt == DType::f16 ? (void*)wh.data() : (void*)wf.data());
  if (broadcast_w) tw.strides[0] = 0;
  Tensor tb = view(DType::f32, {N}, bias.data());
  matmul(view(DType::f32, {B, M, K}, a.data()), tw, with_bias ? &tb : nullptr, view(DType::f32, {B, M, N}, y.data()));
  for (int64_t b = 0; b < B; b++)
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double s = with_bias ? bias[n] : 0;
        for (int64_t k = 0; k < K; k++) s += (double)a[(b * M + m) * K + k] * wf[((broadcast_w ? 0 : b) * K + k) * N + n];
        if (!close(y[(b * M + m) * N + n], s, 1e-5, 1e-5, "matmul", (b * M + m) * N + n)) return false;
      }
  return true;
}

}  // namespace

int main() {
  set_num_threads(2);
  run_case("unary relu", [] { return check_unary("relu", ref_relu, -5, 5); });
  run_case("unary sigmoid", [] { return check_unary("sigmoid", ref_sigmoid, -10, 10); });
  run_case("unary silu", [] { return check_unary("silu", ref_silu, -10, 10); });
  run_case("unary neg", [] { return check_unary("neg", ref_neg, -5, 5); });
  run_case("unary abs", [] { return check_unary("abs", ref_abs, -5, 5); });
  run_case("unary sqrt", [] { return check_unary("sqrt", ref_sqrt, 0, 100); });
  run_case("unary exp", [] { return check_unary("exp", ref_exp, -20, 20); });
  run_case("unary tanh", [] { return check_unary("tanh", ref_tanh, -5, 5); });
  run_case("unary erf", [] { return check_unary("erf", ref_erf, -4, 4); });
  run_case("unary gelu", [] { return check_unary("gelu", ref_gelu, -6, 6); });
  run_case("binary add", [] { return check_binary("add", ref_add); });
  run_case("binary sub", [] { return check_binary("sub", ref_sub); });
  run_case("binary mul", [] { return check_binary("mul", ref_mul); });
  run_case("binary div", [] { return check_binary("div", ref_div); });
  run_case("binary max", [] { return check_binary("max", ref_max); });
  run_case("binary pow", [] { return check_binary("pow", ref_pow); });
  run_case("half_to_float (all 65536)", check_half_to_float);
  run_case("float_to_half (ties, subnormals, random)", check_float_to_half);
  run_case("xxh64 (lengths 0..1000, unaligned, seeds)", check_xxh64);
  run_case("matmul f32", [] { return check_matmul(DType::f32, false, false); });
  run_case("matmul f32 + bias, broadcast weights", [] { return check_matmul(DType::f32, true, true); });
  run_case("matmul f16 weights + bias", [] { return check_matmul(DType::f16, false, true); });
  std::printf("test_core: %d/%d cases passed\n", g_cases - g_failed, g_cases);
  return g_failed ? 1 : 0;
}
