# armv7: Pi 2/3/Zero 2 on a 32-bit OS. armv7-a, NEON-VFPv4, hard float (Cortex-A7 is the oldest such core).
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(ONNXSTREAM_ZIG_ARCH arm)
set(ONNXSTREAM_ZIG_CPU cortex_a7)  # armv7-a + neon-vfpv4; zig's cpu models the Pi 2 core exactly
include(${CMAKE_CURRENT_LIST_DIR}/zig-common.cmake)
