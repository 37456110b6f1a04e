// Turns the CPU bits into kernel configs. Kernel lists compiled for this target are known through
// ONNXSTREAM_IF_<isa> (kernels/microkernels.h); the best compiled kernel the CPU supports wins.
#include "dispatch.h"

#include "cpu.h"
#include "kernel_counts.h"

namespace onnxstream {
namespace {

GemmConfig choose_gemm() {
  // Portable fallback: every CPU, armv6 included.
  GemmConfig cfg{"scalar", 4, 16, f32_gemm_ukernel_4x16__scalar, f32_f16w_gemm_ukernel_4x16__scalar,
                 f32_qc8w_gemm_ukernel_4x16__scalar,
                 x32_packw_ukernel_x16__scalar, x16_packw_ukernel_x16__scalar, 256, 256};
  cfg.f32w_1row = f32_gemm_ukernel_1x16__scalar, cfg.f16w_1row = f32_f16w_gemm_ukernel_1x16__scalar;
  cfg.qc8w_1row = f32_qc8w_gemm_ukernel_1x16__scalar;
  ONNXSTREAM_IF_neon(if (cpu_has(kIsaNeon)) {
    cfg = {"neon", 4, 16, f32_gemm_ukernel_4x16__neon, f32_f16w_gemm_ukernel_4x16__neon,
           f32_qc8w_gemm_ukernel_4x16__neon,
           x32_packw_ukernel_x16__scalar, x16_packw_ukernel_x16__scalar, 256, 256};
    cfg.f32w_1row = f32_gemm_ukernel_1x16__neon, cfg.f16w_1row = f32_f16w_gemm_ukernel_1x16__neon;
    cfg.qc8w_1row = f32_qc8w_gemm_ukernel_1x16__neon;
  })
  ONNXSTREAM_IF_aarch64_neonfma(if (cpu_has(kIsaAarch64Neonfma)) {
    // Scheduled for the Cortex-A53 (Pi Zero 2 W, Pi 3); no spills, so fine on the out-of-order Pi 4/5 cores too.
    cfg = {"aarch64-neonfma", 8, 16, f32_gemm_ukernel_8x16__aarch64_neonfma_cortex_a53,
           f32_f16w_gemm_ukernel_8x16__aarch64_neonfma_cortex_a53,
           f32_qc8w_gemm_ukernel_8x16__aarch64_neonfma_cortex_a53, x32_packw_ukernel_x16__scalar,
           x16_packw_ukernel_x16__scalar, 256, 256};
    cfg.f32w_1row = f32_gemm_ukernel_1x16__aarch64_neonfma;
    cfg.f16w_1row = f32_f16w_gemm_ukernel_1x16__aarch64_neonfma;
    cfg.qc8w_1row = f32_qc8w_gemm_ukernel_1x16__aarch64_neonfma;
  })
  ONNXSTREAM_IF_avx2_fma(if (cpu_has(kIsaAvx2Fma)) {
    cfg = {"avx2-fma", 6, 16, f32_gemm_ukernel_6x16__avx2_fma, f32_f16w_gemm_ukernel_6x16__avx2_fma,
           f32_qc8w_gemm_ukernel_6x16__avx2_fma,
           x32_packw_ukernel_x16__scalar, x16_packw_ukernel_x16__scalar, 512, 512};
    cfg.f32w_1row = f32_gemm_ukernel_1x16__avx2_fma, cfg.f16w_1row = f32_f16w_gemm_ukernel_1x16__avx2_fma;
    cfg.qc8w_1row = f32_qc8w_gemm_ukernel_1x16__avx2_fma;
  })
  // kc x nc = 512 x 512 measured best on Zen 4 (1 MB L2) at UNet shapes, for AVX2 and AVX-512 alike.
  ONNXSTREAM_IF_avx512f(if (cpu_has(kIsaAvx512f)) {
    cfg = {"avx512f", 16, 16, f32_gemm_ukernel_16x16__avx512f, f32_f16w_gemm_ukernel_16x16__avx512f,
           f32_qc8w_gemm_ukernel_16x16__avx512f,
           x32_packw_ukernel_x16__scalar, x16_packw_ukernel_x16__scalar, 512, 512};
    cfg.f32w_1row = f32_gemm_ukernel_1x16__avx512f, cfg.f16w_1row = f32_f16w_gemm_ukernel_1x16__avx512f;
    cfg.qc8w_1row = f32_qc8w_gemm_ukernel_1x16__avx512f;
  })
  return cfg;
}

SoftmaxConfig choose_softmax() {
  SoftmaxConfig cfg{"scalar", f32_rmax_ukernel__scalar, f32_raddstoreexpminusmax_ukernel__scalar};
  ONNXSTREAM_IF_neon(if (cpu_has(kIsaNeon)) {
    cfg = {"neon", f32_rmax_ukernel__neon, f32_raddstoreexpminusmax_ukernel__neon};
  })
  ONNXSTREAM_IF_aarch64_neonfma(if (cpu_has(kIsaAarch64Neonfma)) {
    cfg = {"aarch64-neonfma", f32_rmax_ukernel__aarch64_neonfma, f32_raddstoreexpminusmax_ukernel__aarch64_neonfma};
  })
  ONNXSTREAM_IF_avx2_fma(if (cpu_has(kIsaAvx2Fma)) {
    cfg = {"avx2-fma", f32_rmax_ukernel__avx2_fma, f32_raddstoreexpminusmax_ukernel__avx2_fma};
  })
  ONNXSTREAM_IF_avx512f(if (cpu_has(kIsaAvx512f)) {
    cfg = {"avx512f", f32_rmax_ukernel__avx512f, f32_raddstoreexpminusmax_ukernel__avx512f};
  })
  return cfg;
}

ConvBandConfig choose_convband() {
  ConvBandConfig cfg{"scalar", f32_vscaleshift_ukernel__scalar, f32_vaddstore_ukernel__scalar,
                     f32_rsumsq_ukernel__scalar};
  ONNXSTREAM_IF_avx2_fma(if (cpu_has(kIsaAvx2Fma)) {  // AVX-512 CPUs too: these rows are memory bound
    cfg = {"avx2-fma", f32_vscaleshift_ukernel__avx2_fma, f32_vaddstore_ukernel__avx2_fma,
           f32_rsumsq_ukernel__avx2_fma};
  })
  return cfg;
}

// The best ISA the CPU has among those whose kernel list was compiled; each .inc lists every op for every ISA.
VUnaryConfig choose_vunary() {
  VUnaryConfig cfg{"scalar", {}};
  uint32_t best = kIsaScalar;
  auto consider = [&](uint32_t isa, const char* name, VUnaryOp op, VUnaryUkernel fn) {
    if (!cpu_has(isa) || isa < best) return;
    if (isa > best) best = isa, cfg.isa = name;
    cfg.ukernel[op] = fn;
  };
#define VUNARY_UKERNEL(isa, op, fn) ONNXSTREAM_IF_##isa(consider(ONNXSTREAM_ISA_##isa, #isa, op, fn);)
#include "kernels/f32-vunary/f32-vunary.inc"
#undef VUNARY_UKERNEL
  return cfg;
}

VBinaryConfig choose_vbinary() {
  VBinaryConfig cfg{"scalar", {}};
  uint32_t best = kIsaScalar;
  auto consider = [&](uint32_t isa, const char* name, VBinaryOp op, VBinaryUkernel fn) {
    if (!cpu_has(isa) || isa < best) return;
    if (isa > best) best = isa, cfg.isa = name;
    cfg.ukernel[op] = fn;
  };
#define VBINARY_UKERNEL(isa, op, fn) ONNXSTREAM_IF_##isa(consider(ONNXSTREAM_ISA_##isa, #isa, op, fn);)
#include "kernels/f32-vbinary/f32-vbinary.inc"
#undef VBINARY_UKERNEL
  return cfg;
}

DwconvConfig choose_dwconv() {
  DwconvConfig cfg{"scalar", nullptr, nullptr, nullptr};
  uint32_t best = kIsaScalar;
  auto consider = [&](uint32_t isa, const char* name, DwconvUkernel fn, int taps) {
    if (!cpu_has(isa) || isa < best) return;
    if (isa > best) best = isa, cfg.isa = name;
    (taps == 9 ? cfg.taps9 : taps == 25 ? cfg.taps25 : cfg.any) = fn;
  };
#define DWCONV_UKERNEL(isa, fn, taps) ONNXSTREAM_IF_##isa(consider(ONNXSTREAM_ISA_##isa, #isa, fn, taps);)
#include "kernels/f32-dwconv/f32-dwconv.inc"
#undef DWCONV_UKERNEL
  return cfg;
}

}  // namespace

const VUnaryConfig& vunary_config() {
  static const VUnaryConfig cfg = choose_vunary();
  return cfg;
}

const VBinaryConfig& vbinary_config() {
  static const VBinaryConfig cfg = choose_vbinary();
  return cfg;
}

const DwconvConfig& dwconv_config() {
  static const DwconvConfig cfg = choose_dwconv();
  return cfg;
}

// With ONNXSTREAM_COUNT_KERNELS=1 the configs hand out counting trampolines (kernel_counts.h).
const ConvBandConfig& convband_config() {
  static const ConvBandConfig cfg = [] {
    ConvBandConfig c = choose_convband();
    if (counting_kernels()) count_convband_kernels(c);
    return c;
  }();
  return cfg;
}

const SoftmaxConfig& softmax_config() {
  static const SoftmaxConfig cfg = [] {
    SoftmaxConfig c = choose_softmax();
    if (counting_kernels()) count_softmax_kernels(c);
    return c;
  }();
  return cfg;
}

const GemmConfig& gemm_config() {
  static const GemmConfig cfg = [] {
    GemmConfig c = choose_gemm();
    if (counting_kernels()) count_gemm_kernels(c);
    return c;
  }();
  return cfg;
}

}  // namespace onnxstream
