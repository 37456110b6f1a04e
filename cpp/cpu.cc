// CPU feature detection (cpuid/xgetbv on x86, getauxval on ARM) -> Isa bits; nothing else.
#include "cpu.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "tensor.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__arm__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace onnxstream {
namespace {

uint32_t detect() {
  uint32_t bits = kIsaScalar;
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return bits;
  bool fma = ecx & (1u << 12), osxsave = ecx & (1u << 27), avx = ecx & (1u << 28), f16c = ecx & (1u << 29);
  if (!osxsave || !avx) return bits;
  unsigned xcr0_lo, xcr0_hi;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));  // which registers the OS saves
  bool ymm_os = (xcr0_lo & 0x6) == 0x6, zmm_os = (xcr0_lo & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return bits;
  bool avx2 = ebx & (1u << 5), avx512f = ebx & (1u << 16);
  if (ymm_os && avx2 && fma && f16c) bits |= kIsaAvx2Fma;
  if (zmm_os && avx512f && fma && f16c) bits |= kIsaAvx512f;
#elif defined(__aarch64__)
  bits |= kIsaAarch64Neonfma;  // Advanced SIMD with fma and fp16 conversion is mandatory on aarch64
#elif defined(__arm__) && defined(__linux__)
  unsigned long hwcap = getauxval(AT_HWCAP);
  if ((hwcap & HWCAP_NEON) && (hwcap & HWCAP_VFPv4)) bits |= kIsaNeon;
#endif
  return bits;
}

// The ISA named by ONNXSTREAM_ISA and every ISA below it on the same architecture.
uint32_t forced(const char* name, uint32_t detected) {
  std::string s(name);
  uint32_t want;
  if (s == "scalar") want = kIsaScalar;
  else if (s == "neon") want = kIsaScalar | kIsaNeon;
  else if (s == "aarch64-neonfma" || s == "neonfma") want = kIsaScalar | kIsaAarch64Neonfma;
  else if (s == "avx2" || s == "avx2-fma") want = kIsaScalar | kIsaAvx2Fma;
  else if (s == "avx512" || s == "avx512f") want = kIsaScalar | kIsaAvx2Fma | kIsaAvx512f;
  else throw Error("ONNXSTREAM_ISA=" + s + " is not one of scalar, neon, aarch64-neonfma, avx2, avx512");
  check((detected & want) == want, "ONNXSTREAM_ISA=" + s + ": this CPU does not support it");
  return want;
}

}  // namespace

uint32_t cpu_isa() {
  static const uint32_t bits = [] {
    uint32_t d = detect();
    const char* env = std::getenv("ONNXSTREAM_ISA");
    return env && *env ? forced(env, d) : d;
  }();
  return bits;
}

const char* isa_name(uint32_t isa) {
  switch (isa) {
    case kIsaScalar: return "scalar";
    case kIsaNeon: return "neon";
    case kIsaAarch64Neonfma: return "aarch64-neonfma";
    case kIsaAvx2Fma: return "avx2-fma";
    case kIsaAvx512f: return "avx512f";
    default: return "unknown";
  }
}

}  // namespace onnxstream
