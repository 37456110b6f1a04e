// Work counted per microkernel family, for projecting a board's speed (bench/unet_work.py). Off unless
// ONNXSTREAM_COUNT_KERNELS=1 is set when the first kernel config is chosen: then dispatch.cc hands out counting
// trampolines that add up calls, FLOP and bytes and call the chosen kernel. Off, nothing is wrapped: zero cost.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dispatch.h"

namespace onnxstream {

struct KernelCount {
  std::string family;       // "f32w", "f16w", "qc8w", "rmax", "raddstoreexpminusmax", "vscaleshift", ...
  uint64_t calls, flop;     // GEMM: 2 * mr * nc * kc; row kernels: elements
  uint64_t weight_bytes;    // GEMM: packed weight bytes read (kc x panel columns x element size)
  uint64_t a_bytes;         // GEMM: activation bytes read (mr x kc x 4); row kernels: bytes read
  uint64_t tile_rows;       // GEMM: sum of mr over calls (with calls * MR: how full the row tiles are)
  uint64_t tile_cols;       // GEMM: sum of nc over calls
};

bool counting_kernels();  // ONNXSTREAM_COUNT_KERNELS=1 at start-up
void count_gemm_kernels(GemmConfig& cfg);
void count_softmax_kernels(SoftmaxConfig& cfg);
void count_convband_kernels(ConvBandConfig& cfg);
std::vector<KernelCount> kernel_counts();
void reset_kernel_counts();

}  // namespace onnxstream
