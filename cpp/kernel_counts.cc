#include "kernel_counts.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace onnxstream {
namespace {

enum Family { kF32w, kF16w, kQc8w, kRmax, kExp, kScaleShift, kAddStore, kRSumSq, kFamilies };
const char* const kNames[kFamilies] = {"f32w", "f16w", "qc8w", "rmax", "raddstoreexpminusmax", "vscaleshift",
                                        "vaddstore", "rsumsq"};

struct Counter {
  std::atomic<uint64_t> calls{0}, flop{0}, weight_bytes{0}, a_bytes{0}, tile_rows{0}, tile_cols{0};
};
Counter g_counts[kFamilies];

// The kernels the trampolines forward to (one config per process, chosen once).
GemmUkernel g_f32w, g_f16w, g_f32w_1row, g_f16w_1row;
GemmQc8wUkernel g_qc8w, g_qc8w_1row;
RmaxUkernel g_rmax;
RaddstoreexpminusmaxUkernel g_exp;
VScaleShiftUkernel g_scaleshift;
VAddStoreUkernel g_addstore;
RSumSqUkernel g_rsumsq;

void add(Family f, uint64_t flop, uint64_t wbytes, uint64_t abytes, uint64_t rows, uint64_t cols) {
  Counter& c = g_counts[f];
  c.calls.fetch_add(1, std::memory_order_relaxed);
  c.flop.fetch_add(flop, std::memory_order_relaxed);
  c.weight_bytes.fetch_add(wbytes, std::memory_order_relaxed);
  c.a_bytes.fetch_add(abytes, std::memory_order_relaxed);
  c.tile_rows.fetch_add(rows, std::memory_order_relaxed);
  c.tile_cols.fetch_add(cols, std::memory_order_relaxed);
}

uint64_t panel_cols(size_t nc) { return (nc + kPanelWidth - 1) / kPanelWidth * kPanelWidth; }

// One trampoline per (family, weight element size, kernel slot); the 1-row kernels count in their GEMM's family.
template <Family F, uint64_t kWeightSize, GemmUkernel* kKernel>
void gemm_counted(size_t mr, size_t nc, size_t kc, const float* a, size_t as, const void* w, float* c, size_t cs,
                  const float* bias, int acc) {
  add(F, 2ull * mr * nc * kc, kc * panel_cols(nc) * kWeightSize, mr * kc * 4, mr, nc);
  (*kKernel)(mr, nc, kc, a, as, w, c, cs, bias, acc);
}
template <GemmQc8wUkernel* kKernel>
void gemm_qc8w_counted(size_t mr, size_t nc, size_t kc, const float* a, size_t as, const void* w, const float* scale,
                       float* c, size_t cs, const float* bias, int acc) {
  add(kQc8w, 2ull * mr * nc * kc, kc * panel_cols(nc), mr * kc * 4, mr, nc);
  (*kKernel)(mr, nc, kc, a, as, w, scale, c, cs, bias, acc);
}
float rmax(size_t n, const float* x) {
  add(kRmax, n, 0, n * 4, 0, 0);
  return g_rmax(n, x);
}
float expminusmax(size_t n, const float* x, float max, float* y) {
  add(kExp, n, 0, n * 4, 0, 0);
  return g_exp(n, x, max, y);
}
void scaleshift(size_t n, const void* x, int x_f16, float a, float b, int act, float* y) {
  add(kScaleShift, n, 0, n * (x_f16 ? 2 : 4), 0, 0);
  g_scaleshift(n, x, x_f16, a, b, act, y);
}
void addstore(size_t n, const float* z, const void* r, int r_f16, void* y, int y_f16) {
  add(kAddStore, n, 0, n * 4 + (r ? n * (r_f16 ? 2 : 4) : 0), 0, 0);
  g_addstore(n, z, r, r_f16, y, y_f16);
}
void rsumsq(size_t n, const void* x, int x_f16, float shift, float* sums) {
  add(kRSumSq, n, 0, n * (x_f16 ? 2 : 4), 0, 0);
  g_rsumsq(n, x, x_f16, shift, sums);
}

}  // namespace

bool counting_kernels() {
  static const bool on = [] {
    const char* v = std::getenv("ONNXSTREAM_COUNT_KERNELS");
    return v && std::strcmp(v, "0") != 0 && *v;
  }();
  return on;
}

void count_gemm_kernels(GemmConfig& cfg) {
  g_f32w = cfg.f32w, g_f16w = cfg.f16w, g_qc8w = cfg.qc8w;
  cfg.f32w = gemm_counted<kF32w, 4, &g_f32w>, cfg.f16w = gemm_counted<kF16w, 2, &g_f16w>;
  cfg.qc8w = gemm_qc8w_counted<&g_qc8w>;
  g_f32w_1row = cfg.f32w_1row, g_f16w_1row = cfg.f16w_1row, g_qc8w_1row = cfg.qc8w_1row;
  cfg.f32w_1row = gemm_counted<kF32w, 4, &g_f32w_1row>, cfg.f16w_1row = gemm_counted<kF16w, 2, &g_f16w_1row>;
  cfg.qc8w_1row = gemm_qc8w_counted<&g_qc8w_1row>;
}

void count_softmax_kernels(SoftmaxConfig& cfg) {
  g_rmax = cfg.rmax, g_exp = cfg.raddstoreexpminusmax;
  cfg.rmax = rmax, cfg.raddstoreexpminusmax = expminusmax;
}

void count_convband_kernels(ConvBandConfig& cfg) {
  g_scaleshift = cfg.scaleshift, g_addstore = cfg.addstore, g_rsumsq = cfg.rsumsq;
  cfg.scaleshift = scaleshift, cfg.addstore = addstore, cfg.rsumsq = rsumsq;
}

std::vector<KernelCount> kernel_counts() {
  std::vector<KernelCount> out;
  for (int f = 0; f < kFamilies; f++) {
    const Counter& c = g_counts[f];
    out.push_back({kNames[f], c.calls.load(), c.flop.load(), c.weight_bytes.load(), c.a_bytes.load(),
                   c.tile_rows.load(), c.tile_cols.load()});
  }
  return out;
}

void reset_kernel_counts() {
  for (Counter& c : g_counts) {
    c.calls = 0, c.flop = 0, c.weight_bytes = 0, c.a_bytes = 0, c.tile_rows = 0, c.tile_cols = 0;
  }
}

}  // namespace onnxstream
