#!/usr/bin/env bash
# toolchains/test-qemu.sh [aarch64|armv7|armv6|all]: build the wheels (build-wheels.sh), then test them under QEMU
# user mode with the real CPU models (qemu called directly; no binfmt needed):
#   1. the C++ kernel tests (tests/kernels/test_*.cc, every binary CMake built) on the target CPU; armv6 runs a
#      static musl build under `-cpu arm1176`, which faults on any armv7/NEON instruction;
#   2. the wheel: platform tag, NEEDED libraries and glibc symbol versions (auditwheel show too if installed),
#      and for armv6 the ELF CPU attributes plus a disassembly scan for armv7/NEON instructions;
#   3. the wheel installed (pip --target, checked against the target platform tag) next to Debian bookworm's
#      python3 + numpy for that architecture, running tests/cross/smoke.py: a small model converted on this
#      machine must give this machine's results within 1e-5. The armv6 wheel runs on the armhf Python under
#      `-cpu cortex-a7` (Debian's armhf Python is armv7 code; the arm1176 proof is step 1 + 2).
# SKIP_BUILD=1 tests the wheels already in dist/. Every prerequisite is checked before anything runs.
source "$(dirname "${BASH_SOURCE[0]}")/targets.sh"
start=$SECONDS
targets=$(expand_targets "$@")
for t in $targets; do target_vars "$t"; done  # unknown names fail here
need_python
if [ -z "${SKIP_BUILD:-}" ]; then need_build_tools $targets; fi
need_py numpy numpy
need_py onnx onnx
need_py pybind11 "'pybind11>=2.12'"
need_cmd cmake "apt-get install cmake (or pip install cmake)"
need_cmd ninja "apt-get install ninja-build (or pip install ninja)"
need_cmd readelf "apt-get install binutils"
for t in $targets; do
  target_vars "$t"
  need_sysroot_tools "$debarch"
  need_cmd "${qemu%% *}" "apt-get install qemu-user"
  if [ "$t" = armv6 ]; then
    need_cmd arm-linux-gnueabihf-objcopy "apt-get install binutils-arm-linux-gnueabihf"
    need_cmd arm-linux-gnueabihf-objdump "apt-get install binutils-arm-linux-gnueabihf"
  fi
done
check_prerequisites
python_version
pybind11_dir=$("$PYTHON" -m pybind11 --cmakedir)
[ -n "${SKIP_BUILD:-}" ] || "$repo/toolchains/build-wheels.sh" $targets
summary=()
fail() { echo "FAIL: $*" >&2; exit 1; }

kernel_tests() {  # run every test_* executable in $1 under qemu with sysroot $2 (empty for static binaries)
  local dir=$1 sysroot=$2 bin out passed=0 total=0
  for bin in "$dir"/test_*; do
    [ -x "$bin" ] && [ -f "$bin" ] || continue
    echo "-- $qemu $(basename "$bin")" >&2
    out=$($qemu ${sysroot:+-L "$sysroot"} "$bin") || { echo "$out" >&2; fail "$(basename "$bin") on $t"; }
    echo "$out" | grep -v '^PASS' >&2 || true
    passed=$((passed + $(echo "$out" | grep -c '^PASS'))); total=$((total + $(echo "$out" | grep -c -E '^(PASS|FAIL)')))
  done
  [ "$total" -gt 0 ] || fail "no kernel test binaries in $dir"
  echo "$passed/$total"
}

armv6_musl_tests_dir() {  # static musl build of the kernel tests with the armv6 toolchain (same flags and sources)
  local dir=$repo/build/cross/armv6-musl-tests inc python tests
  inc=$(python_headers armhf)
  python=$(command -v "$PYTHON")
  cmake -S "$repo" -B "$dir" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DONNXSTREAM_ZIG_LIBC=musl \
    -DONNXSTREAM_BUILD_TESTS=ON -DSKBUILD_PROJECT_NAME=onnxstream -DSKBUILD_PROJECT_VERSION=0.1.0 \
    -Dpybind11_DIR="$pybind11_dir" -DPython_EXECUTABLE="$python" \
    -DPython_INCLUDE_DIR="$inc" -DPython_SOABI=cpython-${pyver/./}-$triplet >&2
  tests=$(ninja -C "$dir" -t targets all | sed -n 's/^\(test_[A-Za-z0-9_]*\): .*/\1/p')
  [ -n "$tests" ] || fail "no kernel test targets in $dir"
  ninja -C "$dir" $tests >&2
  echo "$dir"
}

check_elf() {  # $1 = _core*.so of target $t
  local so=$1 needed bad maxglibc
  needed=$(readelf -d "$so" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
  bad=$(echo "$needed" | tr ' ' '\n' | grep -v -E '^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux.*|)$' || true)
  [ -z "$bad" ] || fail "$t: _core links non-system libraries: $bad"
  maxglibc=$(readelf -V "$so" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
  [ "$(printf '%s\n2.28\n' "$maxglibc" | sort -V | tail -1)" = 2.28 ] || fail "$t: needs GLIBC_$maxglibc > 2.28"
  echo "   NEEDED: $needed| newest glibc symbol: GLIBC_$maxglibc" >&2
  if [ "$t" = armv6 ]; then
    local attrs insns
    attrs=$(readelf -A "$so")
    # LLVM writes v6 (+ TrustZone) for arm1176jzf-s, binutils v6KZ: anything v6 without T2 is fine
    echo "$attrs" | grep -q -E 'Tag_CPU_arch: v6(KZ|K)?$' || fail "armv6: Tag_CPU_arch is not v6/v6K/v6KZ"
    ! echo "$attrs" | grep -q 'Tag_Advanced_SIMD_arch' || fail "armv6: NEON attribute present"
    echo "$attrs" | grep -q 'Tag_FP_arch: VFPv2' || fail "armv6: Tag_FP_arch is not VFPv2"
    ! echo "$attrs" | grep -q 'Tag_THUMB_ISA_use: Thumb-2' || fail "armv6: Thumb-2 code"
    # armv7-only or NEON instructions: movw/movt, dmb/dsb/isb, bitfield ops, mls, rbit, divides, q/d16+ regs.
    # Scanned in the unstripped module of the build dir (its mapping symbols keep literal pools from being read
    # as code) after checking its .text is the wheel's. Allowed: libunwind's save/restoreVFPv3, which only run
    # when unwind info names d16-d31, which VFPv2 code cannot.
    local unstripped=$builddir/$(basename "$so")
    arm-linux-gnueabihf-objcopy -O binary --only-section=.text "$so" "$so.text"
    arm-linux-gnueabihf-objcopy -O binary --only-section=.text "$unstripped" "$so.text2"
    cmp -s "$so.text" "$so.text2" || fail "armv6: $unstripped is not the module in the wheel"
    insns=$(arm-linux-gnueabihf-objdump -d --no-show-raw-insn "$unstripped" |
            awk '/^[0-9a-f]+ <.*>:$/ {f = $2} {print f "\t" $0}' |
            grep -E -w 'movw|movt|dmb|dsb|isb|ubfx|sbfx|bfi|bfc|mls|rbit|udiv|sdiv|vld1[^ ]*|vst1[^ ]*|q[0-9]+|d(1[6-9]|2[0-9]|3[01])' |
            grep -v -E '^<_ZN9libunwind13Registers_arm(12restore|9save)VFPv3EPv>' | head -5 || true)
    [ -z "$insns" ] || fail "armv6: armv7/NEON instructions in _core: $insns"
    echo "   armv6: $(echo "$attrs" | grep -o 'Tag_CPU_arch: v6[A-Z]*'), VFPv2, no NEON/Thumb-2 attributes; no armv7/NEON instructions in the disassembly" >&2
  fi
}

smoke() {  # install wheel $1 for platform $plat and run the smoke model on the target Python
  local whl=$1 sysroot site
  sysroot=$("$repo/toolchains/sysroot.sh" "$debarch")
  site=$cache/site/$t
  rm -rf "$site"
  "$PYTHON" -m pip install --quiet --root-user-action=ignore --no-deps --target "$site" --platform "$plat" --python-version "$pyver" \
    --implementation cp --abi "$pytag" --only-binary=:all: "$whl" >&2
  local cpu=$qemu
  [ "$t" = armv6 ] && cpu="qemu-arm -cpu cortex-a7"
  echo "-- $cpu python$pyver tests/cross/smoke.py ($(basename "$whl"))" >&2
  PYTHONPATH=$site PYTHONNOUSERSITE=1 $cpu -L "$sysroot" "$sysroot/usr/bin/python$pyver" \
    "$repo/tests/cross/smoke.py" check "$smoke_dir" >&2 || fail "smoke test of $t wheel"
}

# The reference run on this machine needs the native module next to the sources: build it there if missing.
if ! PYTHONPATH=$repo/python "$PYTHON" -c "import onnxstream._core" 2>/dev/null; then
  echo "-- building the native module in place for the reference run" >&2
  { cmake -S "$repo" -B "$repo/build" -G Ninja -DONNXSTREAM_INPLACE=ON -DSKBUILD_PROJECT_NAME=onnxstream \
      -DSKBUILD_PROJECT_VERSION=0.1.0 -Dpybind11_DIR="$pybind11_dir" >&2 && ninja -C "$repo/build" _core >&2; } ||
    fail "building the native module in place"
fi
# The smoke model is made afresh every run, in a temp dir renamed into place.
smoke_dir=$cache/smoke
mkdir -p "$cache"
rm -rf "$smoke_dir".tmp.*
smoke_tmp=$(mktemp -d "$smoke_dir.tmp.XXXXXX")
PYTHONPATH=$repo/python "$PYTHON" "$repo/tests/cross/smoke.py" make "$smoke_tmp" >&2 ||
  fail "smoke model on the build machine"
rm -rf "$smoke_dir"
mv "$smoke_tmp" "$smoke_dir"

for t in $targets; do
  target_vars "$t"
  wheels=("$repo"/dist/onnxstream-*-"$pytag"-"$pytag"-"$plat".whl)
  [ -e "${wheels[0]}" ] || fail "$t: no $plat wheel in $repo/dist (run without SKIP_BUILD)"
  whl=${wheels[0]}
  echo "== $t: $(basename "$whl")" >&2
  if [ "$t" = armv6 ]; then
    tests_dir=$(armv6_musl_tests_dir)
    sysroot=
  else
    tests_dir=$builddir
    sysroot=$("$repo/toolchains/sysroot.sh" "$debarch")
  fi
  counts=$(kernel_tests "$tests_dir" "$sysroot")
  tmp=$(mktemp -d)
  "$PYTHON" -m zipfile -e "$whl" "$tmp"
  modules=("$tmp"/onnxstream/_core.cpython-*-"$triplet".so)
  [ -e "${modules[0]}" ] || fail "$t: no _core.cpython-*-$triplet.so in the wheel"
  so=${modules[0]}
  [ "$(find "$tmp" -name '*.so' | wc -l)" = 1 ] || fail "$t: more than one .so in the wheel (a stray native build?)"
  check_elf "$so"
  rm -rf "$tmp"
  auditwheel=$(command -v auditwheel || echo "$cache/tools/bin/auditwheel")
  if [ "$t" = aarch64 ] && [ -x "$auditwheel" ]; then  # (pip install auditwheel; it reads foreign-arch wheels)
    aw=$("$auditwheel" show "$whl") || fail "auditwheel show $whl"
    awtag=$(echo "$aw" | tr '\n' ' ' | grep -o 'consistent *with the following platform tag: *"[^"]*"' |
            grep -o 'manylinux_[0-9_]*aarch64') || fail "auditwheel show $whl: no manylinux aarch64 tag in: $aw"
    awglibc=$(echo "$awtag" | sed 's/manylinux_\([0-9]*\)_\([0-9]*\)_.*/\1.\2/')
    [ "$(printf '%s\n2.28\n' "$awglibc" | sort -V | tail -1)" = 2.28 ] || fail "auditwheel: $awtag is newer than $plat"
    echo "   auditwheel show: consistent with $awtag (tagged $plat)" >&2
  fi
  smoke "$whl"
  summary+=("$t: $(basename "$whl") $(du -k "$whl" | cut -f1) KiB, kernel tests $counts passed under ${qemu#* }, smoke OK")
done
printf '%s\n' "${summary[@]}"
echo "total $((SECONDS - start)) s"
