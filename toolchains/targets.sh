# Sourced by build-wheels.sh and test-qemu.sh: per-target settings. target_vars NAME sets the variables below.
# Python: the target's CPython must be the build machine's version (3.11 = Debian bookworm / Raspberry Pi OS).
target_vars() {
  buildplat=
  case $1 in
    aarch64) debarch=arm64 triplet=aarch64-linux-gnu plat=manylinux_2_28_aarch64 buildplat=linux_aarch64 qemu="qemu-aarch64 -cpu cortex-a53" ;;
    armv7) debarch=armhf triplet=arm-linux-gnueabihf plat=linux_armv7l qemu="qemu-arm -cpu cortex-a7" ;;
    armv6) debarch=armhf triplet=arm-linux-gnueabihf plat=linux_armv6l qemu="qemu-arm -cpu arm1176" ;;
    *) echo "unknown target '$1' (aarch64, armv7, armv6 or all)" >&2; return 2 ;;
  esac
  buildplat=${buildplat:-$plat}
  toolchain=$repo/toolchains/$1.cmake
  builddir=$repo/build/cross/$1
}

expand_targets() {
  if [ $# -eq 0 ] || [ "$1" = all ]; then echo aarch64 armv7 armv6; else echo "$@"; fi
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ONNXSTREAM_CACHE:-$HOME/.cache/onnxstream}
PYTHON=${PYTHON:-python3}
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pytag=cp${pyver/./}
