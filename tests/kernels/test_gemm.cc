// Tests every GEMM microkernel and weight packer in the .inc lists compiled for this target. Kernels whose ISA
// the CPU lacks are reported as skipped, never counted as passed. Exit code: 0 when nothing failed.
#include <cstdio>

#include "cpu.h"
#include "kernel_report.h"
#include "gemm_tester.h"

using namespace onnxstream;

static const GemmKernel kGemmKernels[] = {
#define GEMM_UKERNEL(isa, fn, mr, nr) ONNXSTREAM_IF_##isa(GemmKernel{#fn, ONNXSTREAM_ISA_##isa, fn, mr, nr, false},)
#include "kernels/f32-gemm/f32-gemm.inc"
#undef GEMM_UKERNEL
#define GEMM_UKERNEL(isa, fn, mr, nr) ONNXSTREAM_IF_##isa(GemmKernel{#fn, ONNXSTREAM_ISA_##isa, fn, mr, nr, true},)
#include "kernels/f32-f16w-gemm/f32-f16w-gemm.inc"
#undef GEMM_UKERNEL
};

static const Qc8wGemmKernel kQc8wGemmKernels[] = {
#define QC8W_GEMM_UKERNEL(isa, fn, mr, nr) ONNXSTREAM_IF_##isa(Qc8wGemmKernel{#fn, ONNXSTREAM_ISA_##isa, fn, mr, nr},)
#include "kernels/f32-qc8w-gemm/f32-qc8w-gemm.inc"
#undef QC8W_GEMM_UKERNEL
};

static const PackwKernel kPackwKernels[] = {
#define PACKW_UKERNEL(isa, fn, nr) ONNXSTREAM_IF_##isa(PackwKernel{#fn, ONNXSTREAM_ISA_##isa, fn, 4},)
#include "kernels/x32-packw/x32-packw.inc"
#undef PACKW_UKERNEL
#define PACKW_UKERNEL(isa, fn, nr) ONNXSTREAM_IF_##isa(PackwKernel{#fn, ONNXSTREAM_ISA_##isa, fn, 2},)
#include "kernels/x16-packw/x16-packw.inc"
#undef PACKW_UKERNEL
};

template <typename Kernel>
static bool test_gemm(const Kernel& uk) {
  bool ok = true;
  GemmTester t;
  for (size_t k = 1; k <= 40; k++) ok &= t.m(uk.mr).n(uk.nr).k(k).check(uk);  // k below, at, above any unroll
  for (size_t m = 1; m <= uk.mr; m++)                                           // partial tiles
    for (size_t n = 1; n <= uk.nr; n++) ok &= t.m(m).n(n).k(17).check(uk);
  ok &= t.m(uk.mr).n(uk.nr).k(31).a_stride(37).c_stride(uk.nr + 3).check(uk);  // odd strides
  ok &= t.m(uk.mr - 1 ? uk.mr - 1 : 1).n(uk.nr - 3).k(9).a_stride(11).c_stride(uk.nr + 5).check(uk);
  t.a_stride(0).c_stride(0);
  ok &= t.m(uk.mr).n(uk.nr).k(23).bias(false).check(uk);                        // no bias
  for (size_t n = 1; n <= uk.nr; n += 5)                                        // accumulate into c (k blocks)
    ok &= t.m(uk.mr).n(n).k(19).accumulate(true).check(uk);
  return ok;
}

static bool test_packw(const PackwKernel& uk) {
  bool ok = true;
  for (size_t k : {1, 2, 7, 64})
    for (size_t n : {1, 5, 15, 16, 17, 31, 32, 33, 100})
      for (size_t n_step : {1, 3}) ok &= check_packw(uk, k, n, n_step);
  return ok;
}

int main() {
  KernelReport report;
  for (const GemmKernel& uk : kGemmKernels) report.run(uk.name, uk.isa, [&] { return test_gemm(uk); });
  for (const Qc8wGemmKernel& uk : kQc8wGemmKernels) report.run(uk.name, uk.isa, [&] { return test_gemm(uk); });
  for (const PackwKernel& uk : kPackwKernels) report.run(uk.name, uk.isa, [&] { return test_packw(uk); });
  return report.finish();
}
