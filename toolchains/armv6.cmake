# armv6: Pi Zero W / Pi 1 (ARM1176JZF-S) on 32-bit Raspberry Pi OS. armv6kz, VFPv2, hard float, NO NEON.
# The kernels must select their scalar paths: __ARM_NEON is not defined here.
set(CMAKE_SYSTEM_PROCESSOR armv6l)
set(ONNXSTREAM_ZIG_ARCH arm)
set(ONNXSTREAM_ZIG_CPU arm1176jzf_s)
include(${CMAKE_CURRENT_LIST_DIR}/zig-common.cmake)
