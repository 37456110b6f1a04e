// CPU feature detection: one bit per kernel ISA token. Only dispatch.cc and the kernel tests read these bits.
#pragma once
#include <cstdint>

namespace onnxstream {

enum Isa : uint32_t {
  kIsaScalar = 1u << 0,           // every CPU (armv6 included)
  kIsaNeon = 1u << 1,             // armv7 NEON + VFPv4 (fma, fp16 conversion)
  kIsaAarch64Neonfma = 1u << 2,   // aarch64 Advanced SIMD
  kIsaAvx2Fma = 1u << 3,          // x86 AVX2 + FMA3 + F16C
  kIsaAvx512f = 1u << 4,          // x86 AVX-512F (+ F16C, FMA)
};

// Detected ISA bits, narrowed by ONNXSTREAM_ISA=scalar|neon|aarch64-neonfma|avx2|avx512 (a forced ISA the CPU
// lacks is an error). Computed once.
uint32_t cpu_isa();
inline bool cpu_has(uint32_t isa) { return (cpu_isa() & isa) == isa; }
const char* isa_name(uint32_t isa);

}  // namespace onnxstream
