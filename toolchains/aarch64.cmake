# aarch64: Pi Zero 2 W and Pi 3/4/5 on a 64-bit OS. armv8-a (NEON is baseline), tuned for Cortex-A53.
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(ONNXSTREAM_ZIG_ARCH aarch64)
set(ONNXSTREAM_ZIG_CPU cortex_a53)
include(${CMAKE_CURRENT_LIST_DIR}/zig-common.cmake)
