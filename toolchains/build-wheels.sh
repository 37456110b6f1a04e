#!/usr/bin/env bash
# toolchains/build-wheels.sh [aarch64|armv7|armv6|all]: cross-build the onnxstream wheels for Raspberry Pi-class
# boards on an x86-64 Linux PC into dist/. Same scikit-build-core/CMake path as `pip install .`, with
#   - the compiler from toolchains/TARGET.cmake (zig c++, libc++ linked statically, glibc 2.28 symbols),
#   - the target's Python headers from Debian bookworm's arm64/armhf packages (toolchains/sysroot.sh),
#   - the target's extension suffix and wheel platform tag.
# Needs: python3 with pip, scikit-build-core, pybind11, wheel and ziglang; cmake and ninja; debootstrap (first
# run only, as root). All are checked before anything is written; the first missing ones are listed at once.
source "$(dirname "${BASH_SOURCE[0]}")/targets.sh"
targets=$(expand_targets "$@")
for t in $targets; do target_vars "$t"; done  # unknown names fail here
need_python
need_build_tools $targets
check_prerequisites
python_version
[ "$pyver" = 3.11 ] || echo "warning: building for CPython $pyver; Debian bookworm/Raspberry Pi OS ship 3.11" >&2

# A build dir whose last build did not finish may hold a CMake cache from a failed configure: configure afresh
# (ninja still reuses every object it finished). .complete is written after a wheel was built.
fresh_build_dir() {
  if [ -d "$builddir" ] && [ ! -e "$builddir/.complete" ]; then rm -f "$builddir/CMakeCache.txt"; fi
  rm -f "$builddir/.complete"
}

build_wheel() {
  target_vars "$1"
  local inc soabi
  inc=$(python_headers "$debarch")
  soabi=cpython-${pyver/./}-$triplet
  # The previous wheels of this target go only now, once the build can start.
  rm -f "$repo"/dist/onnxstream-*-"$pytag"-*-"$plat".whl "$repo"/dist/onnxstream-*-"$pytag"-*-"$buildplat".whl
  echo "== $1: $plat, $soabi, $(basename "$toolchain")" >&2
  fresh_build_dir
  # The C++ kernel tests go into the same build dir (not the wheel); test-qemu.sh runs them.
  SETUPTOOLS_EXT_SUFFIX=.$soabi.so _PYTHON_HOST_PLATFORM=$buildplat \
  "$PYTHON" -m pip wheel "$repo" --no-build-isolation --no-deps --wheel-dir "$repo/dist" \
    -C build-dir="$builddir" \
    -C cmake.define.CMAKE_TOOLCHAIN_FILE="$toolchain" \
    -C cmake.define.Python_INCLUDE_DIR="$inc" -C cmake.define.Python3_INCLUDE_DIR="$inc" \
    -C cmake.define.Python_SOABI="$soabi" -C cmake.define.Python3_SOABI="$soabi" \
    -C cmake.define.ONNXSTREAM_BUILD_TESTS=ON >&2
  if [ "$buildplat" != "$plat" ]; then
    # manylinux: the module links only glibc <= 2.28 (zig's target; test-qemu.sh checks it), so retag.
    "$PYTHON" -m wheel tags --remove --platform-tag "$plat" "$repo"/dist/onnxstream-*-"$pytag"-"$pytag"-"$buildplat".whl >&2
  fi
  local whl=("$repo"/dist/onnxstream-*-"$pytag"-"$pytag"-"$plat".whl)
  if [ ! -e "${whl[0]}" ]; then echo "error: $1: no $plat wheel in $repo/dist" >&2; exit 1; fi
  touch "$builddir/.complete"
  echo "${whl[0]}"
}

mkdir -p "$repo/dist"
for t in $targets; do
  build_wheel "$t"
done
