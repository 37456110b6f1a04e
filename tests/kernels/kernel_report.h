// The PASS/FAIL/SKIP lines and the closing count every kernel test binary prints. A kernel whose ISA the CPU
// lacks is reported as skipped, never counted as passed. finish() is main's exit code: 0 when nothing failed.
#pragma once
#include <cstdint>
#include <cstdio>

#include "cpu.h"

struct KernelReport {
  int passed = 0, failed = 0, skipped = 0;

  template <typename Test>
  void run(const char* name, uint32_t isa, Test test) {
    if (!onnxstream::cpu_has(isa)) {
      std::printf("SKIP %s (CPU lacks %s)\n", name, onnxstream::isa_name(isa));
      skipped++;
      return;
    }
    bool ok = test();
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", name);
    (ok ? passed : failed)++;
  }

  int finish() const {
    std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
  }
};
