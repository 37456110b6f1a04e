"""The cross-build scripts (toolchains/*.sh) on a machine that lacks their tools: one message listing everything to
install, a non-zero exit, nothing written; a failure inside $(...) stops them; a cache an interrupted or failed run
left behind is never trusted, and the next run recovers by itself. (A real cross build is toolchains/test-qemu.sh.)"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLCHAINS = ROOT / "toolchains"
# What any shell script here may use; the tools the scripts check for (debootstrap, zig, cmake, qemu, ...) are
# deliberately absent.
BASE_TOOLS = ["bash", "sh", "env", "cat", "cp", "mv", "rm", "mkdir", "mktemp", "touch", "ls", "ln", "dirname",
              "basename", "id", "awk", "sed", "grep", "tr", "sort", "tail", "head", "printf", "chmod", "test"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="sysroot.sh runs debootstrap, which needs root")


def fake_bin(tmp_path: Path, python_flags: str = "-S", extra: dict | None = None) -> Path:
    """A bin dir with only BASE_TOOLS, a python3 that sees no site-packages (-S: no ziglang, pybind11, ...) unless
    python_flags says otherwise, and the `extra` scripts {name: body}."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in BASE_TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    scripts = {"python3": f'exec {sys.executable} {python_flags} "$@"', **(extra or {})}
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run(script: str, args, bin_dir: Path, cache: Path, **env):
    full_env = {"PATH": str(bin_dir), "HOME": str(cache.parent), "ONNXSTREAM_CACHE": str(cache), **env}
    return subprocess.run([str(bin_dir / "bash"), str(TOOLCHAINS / script), *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


def files_under(path: Path) -> list:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def assert_one_message(r, *listed):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "install first" in lines[0], r.stderr
    assert all(line.startswith("  - ") for line in lines[1:]), r.stderr  # nothing but the list follows
    for what in listed:
        assert what in r.stderr, f"{what!r} not listed in:\n{r.stderr}"


# ---------------------------------------------------------------- missing prerequisites: one message, nothing written

def test_build_wheels_lists_everything_missing(tmp_path):
    bin_dir, cache = fake_bin(tmp_path), tmp_path / "cache"
    dist_before = files_under(ROOT / "dist")
    r = run("build-wheels.sh", ["aarch64"], bin_dir, cache)
    assert_one_message(r, "debootstrap", "dpkg-deb", "ziglang", "scikit_build_core", "pybind11", "wheel", "cmake",
                       "ninja")
    assert not cache.exists()  # no sysroot, no header cache, nothing
    assert files_under(ROOT / "dist") == dist_before


def test_sysroot_lists_what_it_needs(tmp_path):
    bin_dir, cache = fake_bin(tmp_path), tmp_path / "cache"
    r = run("sysroot.sh", ["arm64"], bin_dir, cache)
    assert_one_message(r, "debootstrap", "dpkg-deb")
    assert not cache.exists()


def test_test_qemu_lists_everything_missing(tmp_path):
    bin_dir, cache = fake_bin(tmp_path), tmp_path / "cache"
    r = run("test-qemu.sh", ["armv6"], bin_dir, cache, SKIP_BUILD="1")
    assert_one_message(r, "qemu-arm", "readelf", "arm-linux-gnueabihf-objdump", "debootstrap", "onnx", "cmake")
    assert not cache.exists()


def test_no_python_is_reported_not_crashed_on(tmp_path):
    bin_dir, cache = fake_bin(tmp_path), tmp_path / "cache"
    r = run("build-wheels.sh", ["armv7"], bin_dir, cache, PYTHON="python-that-does-not-exist")
    assert_one_message(r, "python-that-does-not-exist", "debootstrap")
    assert not cache.exists()


def test_unknown_target(tmp_path):
    r = run("build-wheels.sh", ["riscv"], fake_bin(tmp_path), tmp_path / "cache")
    assert r.returncode != 0 and "unknown target 'riscv'" in r.stderr
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- interrupted or failed runs: never trusted

# A stand-in for debootstrap: writes what a real stage 1 leaves (a downloaded .deb holding the Python headers
# and interpreter), or fails half-way.
FAKE_DEB = r'''
set -e
target=$6
mkdir -p "$target/var/cache/apt/archives" "$target/pkg/usr/bin" "$target/pkg/usr/include/python3.11" \
         "$target/pkg/usr/include/aarch64-linux-gnu/python3.11"
touch "$target/half-written-by-debootstrap"
[ -z "$FAIL_DEBOOTSTRAP" ] || { echo "E: Couldn't download packages" >&2; exit 1; }
echo '#include "pyconfig.h"' > "$target/pkg/usr/include/python3.11/Python.h"
echo '#include <aarch64-linux-gnu/python3.11/pyconfig.h>' > "$target/pkg/usr/include/python3.11/pyconfig.h"
[ -n "$NO_PYCONFIG" ] || echo '#define TARGET_PYCONFIG 1' > "$target/pkg/usr/include/aarch64-linux-gnu/python3.11/pyconfig.h"
printf '#!/bin/sh\n' > "$target/pkg/usr/bin/python3.11"
chmod +x "$target/pkg/usr/bin/python3.11"
(cd "$target/pkg" && tar cf "$target/var/cache/apt/archives/python3.11_arm64.deb" .)
rm -rf "$target/pkg"
'''
FAKE_DPKG_DEB = 'exec tar xf "$2" -C "$3"'  # dpkg-deb -x DEB DIR, for the fake .deb (a tar file)


def fake_build_machine(tmp_path):
    return fake_bin(tmp_path, extra={"debootstrap": FAKE_DEB, "dpkg-deb": FAKE_DPKG_DEB,
                                     "tar": f'exec {shutil.which("tar")} "$@"'})


@needs_root
def test_failed_sysroot_is_never_trusted_and_the_next_run_recovers(tmp_path):
    bin_dir, cache = fake_build_machine(tmp_path), tmp_path / "cache"
    r = run("sysroot.sh", ["arm64"], bin_dir, cache, FAIL_DEBOOTSTRAP="1")
    assert r.returncode != 0 and "Couldn't download" in r.stderr
    assert not (cache / "sysroots" / "arm64").exists()  # only the .tmp work dir, without its stage-1 marker
    assert not (cache / "sysroots" / "arm64.tmp" / ".stage1").exists()
    # Packages downloaded but not all there: refused, not marked complete.
    r = run("sysroot.sh", ["arm64"], bin_dir, cache, NO_PYCONFIG="1")
    assert r.returncode != 0 and "lacks usr/include/aarch64-linux-gnu/python3.11/pyconfig.h" in r.stderr
    assert not (cache / "sysroots" / "arm64").exists()
    r = run("sysroot.sh", ["arm64"], bin_dir, cache)
    root = cache / "sysroots" / "arm64"
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(root) and (root / ".complete").exists()
    assert (root / "usr/include/aarch64-linux-gnu/python3.11/pyconfig.h").read_text() == "#define TARGET_PYCONFIG 1\n"
    assert not (cache / "sysroots" / "arm64.tmp").exists()
    # A sysroot someone left half-deleted (no .complete) is rebuilt, not used.
    (root / ".complete").unlink()
    (root / "usr/bin/python3.11").unlink()
    r = run("sysroot.sh", ["arm64"], bin_dir, cache)
    assert r.returncode == 0, r.stderr
    assert (root / "usr/bin/python3.11").exists() and (root / ".complete").exists()


@needs_root
def test_build_wheels_stops_when_the_sysroot_fails(tmp_path):
    """The issue's first run: sysroot.sh fails inside $(...); the build must stop there, not copy the host's
    headers into the cache and go on."""
    bin_dir = fake_build_machine(tmp_path)
    cache = tmp_path / "cache"
    venv_bin = Path(sys.executable).parent
    for tool in ("cmake", "ninja"):  # present, so that only the failing sysroot stops the build
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    env = dict(FAIL_DEBOOTSTRAP="1", ZIG="/nonexistent/zig")
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # with site-packages
    probe = subprocess.run([sys.executable, "-c", "import scikit_build_core, pybind11, wheel, pip"])
    if probe.returncode:
        pytest.skip(f"needs scikit-build-core, pybind11 and wheel in {venv_bin}")
    dist_before = files_under(ROOT / "dist")
    r = run("build-wheels.sh", ["aarch64"], bin_dir, cache, **env)
    assert r.returncode != 0 and "Couldn't download" in r.stderr
    assert "== aarch64" not in r.stderr  # never reached the compiler
    assert not (cache / "pyheaders").exists()
    assert files_under(ROOT / "dist") == dist_before  # the last good wheels are still there


def test_poisoned_header_cache_is_rebuilt(tmp_path):
    """A header dir an older or interrupted run left (host headers, no .complete marker) is replaced by the
    sysroot's; a complete one is reused."""
    cache = tmp_path / "cache"
    root = cache / "sysroots" / "arm64"
    (root / "usr/include/python3.11").mkdir(parents=True)
    (root / "usr/include/aarch64-linux-gnu/python3.11").mkdir(parents=True)
    (root / "usr/include/python3.11/Python.h").write_text("target Python.h\n")
    (root / "usr/include/python3.11/pyconfig.h").write_text("#include <aarch64-linux-gnu/python3.11/pyconfig.h>\n")
    (root / "usr/include/aarch64-linux-gnu/python3.11/pyconfig.h").write_text("target pyconfig\n")
    (root / ".complete").touch()
    poisoned = cache / "pyheaders" / "arm64" / "python3.11"
    poisoned.mkdir(parents=True)
    (poisoned / "Python.h").write_text("host Python.h\n")
    (poisoned / "pyconfig.h").write_text("#include <x86_64-linux-gnu/python3.11/pyconfig.h>\n")
    (cache / "pyheaders" / "arm64" / "python3.11.tmp.abcdef").mkdir()  # an interrupted copy
    script = (f'source {TOOLCHAINS / "targets.sh"}; pyver=3.11; target_vars aarch64; python_headers arm64; '
              f'echo second; python_headers arm64')
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                       env={**os.environ, "ONNXSTREAM_CACHE": str(cache)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(poisoned), "second", str(poisoned)]
    assert (poisoned / "Python.h").read_text() == "target Python.h\n"
    assert (poisoned / "pyconfig.h").read_text() == "target pyconfig\n"
    assert (poisoned / ".complete").exists()
    assert sorted(os.listdir(poisoned.parent)) == ["python3.11"]
    # A sysroot without the target's pyconfig.h: an error, and no header dir is made.
    (root / "usr/include/aarch64-linux-gnu/python3.11/pyconfig.h").unlink()
    shutil.rmtree(poisoned)
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                       env={**os.environ, "ONNXSTREAM_CACHE": str(cache)})
    assert r.returncode != 0 and "has no Python 3.11 headers" in r.stderr
    assert "second" not in r.stdout and os.listdir(poisoned.parent) == []
