# Sourced by build-wheels.sh, test-qemu.sh and sysroot.sh: per-target settings, the prerequisite check and the
# cached target Python headers. target_vars NAME sets the variables below.
# Python: the target's CPython must be the build machine's version (3.11 = Debian bookworm / Raspberry Pi OS).
# Caches under $cache are written into a temp dir and renamed into place, or carry a completion marker written
# last: an interrupted or failed run leaves nothing a later run trusts.
set -euo pipefail
shopt -s inherit_errexit  # a failing command inside $(...) fails the substitution too

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

# ---------------------------------------------------------------- prerequisites: collect all, then report once

missing=()
need_cmd() {  # need_cmd COMMAND WHAT-TO-INSTALL
  command -v "$1" >/dev/null 2>&1 || missing+=("$1: $2")
}
need_py() {  # need_py MODULE PIP-NAME (imported from /: the repo's cmake/ folder is not the cmake module)
  if [ -n "${python_ok:-}" ] && ! (cd / && "$python_ok" -c "import $1") >/dev/null 2>&1; then
    missing+=("python module $1 ($PYTHON): pip install $2")
  fi
}
need_python() {
  python_ok=
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    missing+=("$PYTHON: a Python 3 (set PYTHON=/path/to/python3)")
  else
    python_ok=$(command -v "$PYTHON")
  fi
}
need_sysroot_tools() {  # what sysroot.sh needs to build the sysroot of $1, unless it is cached
  [ -e "$cache/sysroots/$1/.complete" ] && return 0
  need_cmd debootstrap "apt-get install debootstrap (the Debian $1 sysroot with the target's Python headers)"
  need_cmd dpkg-deb "apt-get install dpkg"
  [ "$(id -u)" = 0 ] || missing+=("root: debootstrap must run as root (sudo -E $0 ...)")
}
need_build_tools() {  # what build-wheels.sh needs for targets "$@"
  need_py pip pip
  need_py scikit_build_core "'scikit-build-core>=0.10'"
  need_py pybind11 "'pybind11>=2.12'"
  need_py wheel wheel
  [ -n "${ZIG:-}" ] || need_py ziglang ziglang
  command -v cmake >/dev/null 2>&1 || need_py cmake "cmake (or apt-get install cmake)"
  command -v ninja >/dev/null 2>&1 || need_py ninja "ninja (or apt-get install ninja-build)"
  local t
  for t in "$@"; do target_vars "$t"; need_sysroot_tools "$debarch"; done
}
check_prerequisites() {  # exits with one message listing everything missing
  [ ${#missing[@]} -eq 0 ] && return 0
  {
    echo "error: $(basename "$0") cannot start; install first:"
    printf '  - %s\n' "${missing[@]}" | awk '!seen[$0]++'  # (armv7 and armv6 share a sysroot)
  } >&2
  exit 1
}
python_version() {  # after check_prerequisites: pyver (3.11) and pytag (cp311) of $PYTHON
  pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  pytag=cp${pyver/./}
}

# ---------------------------------------------------------------- the target's Python headers (cached)

python_headers() {  # $1 = debarch; prints a Python.h dir holding the target's own pyconfig.h
  local dst=$cache/pyheaders/$1/python$pyver sysroot tmp
  if [ -e "$dst/.complete" ]; then echo "$dst"; return 0; fi
  sysroot=$("$repo/toolchains/sysroot.sh" "$1")
  # Debian keeps pyconfig.h per triplet; the generic one only #includes it, so copy the target's over it.
  local target_config=$sysroot/usr/include/$triplet/python$pyver/pyconfig.h
  if [ ! -e "$sysroot/usr/include/python$pyver/Python.h" ] || [ ! -e "$target_config" ]; then
    echo "error: $sysroot has no Python $pyver headers (usr/include/python$pyver, $triplet pyconfig.h);" \
         "delete it and run again" >&2
    return 1
  fi
  mkdir -p "$(dirname "$dst")"
  rm -rf "$dst".tmp.*  # left by an interrupted run
  tmp=$(mktemp -d "$dst.tmp.XXXXXX")
  cp -r "$sysroot/usr/include/python$pyver/." "$tmp/"
  cp "$target_config" "$tmp/pyconfig.h"
  touch "$tmp/.complete"
  rm -rf "$dst"
  mv "$tmp" "$dst"
  echo "$dst"
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ONNXSTREAM_CACHE:-$HOME/.cache/onnxstream}
PYTHON=${PYTHON:-python3}
