// Kernel choice: the only reader of the CPU bits (cpu.h). Ops ask for a config and never test the CPU themselves.
#pragma once
#include <cstddef>

#include "kernels/microkernels.h"

namespace onnxstream {

struct GemmConfig {
  const char* isa;           // ISA token of the chosen kernels, e.g. "avx512f"
  size_t mr, nr;             // output tile of the microkernels (nr is a multiple of kPanelWidth)
  GemmUkernel f32w;          // float32 weights
  GemmUkernel f16w;          // float16 weights, widened in registers
  GemmQc8wUkernel qc8w;      // int8 weights with per-column scales, widened in registers
  PackwUkernel pack_f32w;    // 32-bit weights -> panels
  PackwUkernel pack_f16w;    // 16-bit weights -> panels
  size_t kc, nc;             // cache blocks: kc rows of k by nc columns of packed weights per step
  // The same kernels for a single row (a recurrent step, one token), which an MR-row kernel computes MR times.
  GemmUkernel f32w_1row = nullptr, f16w_1row = nullptr;
  GemmQc8wUkernel qc8w_1row = nullptr;
};

const GemmConfig& gemm_config();  // for the CPU (narrowed by ONNXSTREAM_ISA), chosen once

struct SoftmaxConfig {
  const char* isa;
  RmaxUkernel rmax;                                  // row maximum
  RaddstoreexpminusmaxUkernel raddstoreexpminusmax;  // exp(x - max) stored, summed
};

const SoftmaxConfig& softmax_config();

struct ConvBandConfig {
  const char* isa;
  VScaleShiftUkernel scaleshift;  // normalize (+ SiLU) an input row
  VAddStoreUkernel addstore;      // add the residual, store float32 or fp16
  RSumSqUkernel rsumsq;           // GroupNorm statistics of a row
};

const ConvBandConfig& convband_config();

struct VUnaryConfig {
  const char* isa;
  VUnaryUkernel ukernel[kVUnaryOps];  // indexed by VUnaryOp
};

const VUnaryConfig& vunary_config();

struct VBinaryConfig {
  const char* isa;
  VBinaryUkernel ukernel[kVBinaryOps];  // indexed by VBinaryOp
};

const VBinaryConfig& vbinary_config();

struct DwconvConfig {
  const char* isa;
  DwconvUkernel taps9, taps25, any;  // 3x3, 5x5, any window
};

const DwconvConfig& dwconv_config();

}  // namespace onnxstream
