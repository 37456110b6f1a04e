"""The C++ kernel tests (tests/kernels/test_*.cc: GEMM and softmax microkernels against float64 references, core
ops), natively and, for the microkernels, under qemu-user when cross compilers are installed; and _core.matmul
against a float64 numpy reference on every dispatch path (ONNXSTREAM_ISA)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import build_tools

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "cpp" / "kernels"


def run_binary(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "FAIL" not in out.stdout, out.stdout + out.stderr
    assert "PASS" in out.stdout
    return out.stdout


KERNEL_TESTS = sorted(p.stem for p in (ROOT / "tests" / "kernels").glob("test_*.cc"))


def build_tool(name: str) -> str:
    return build_tools.find(name) or pytest.fail(f"{name} not found: pip install '.[test]' installs it")


@pytest.fixture(scope="module")
def native_tests(tmp_path_factory):
    """Every tests/kernels/test_*.cc, built by CMake (-DONNXSTREAM_BUILD_TESTS=ON) into a fresh directory."""
    import pybind11

    cmake, ninja = build_tool("cmake"), build_tool("ninja")
    build = tmp_path_factory.mktemp("kernel-tests")
    for cmd in ([cmake, "-S", ROOT, "-B", build, "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}",
                 "-DONNXSTREAM_BUILD_TESTS=ON", "-DSKBUILD_PROJECT_NAME=onnxstream", "-DSKBUILD_PROJECT_VERSION=0.1.0",
                 f"-DPython_EXECUTABLE={sys.executable}", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}"],
                [ninja, "-C", build, *KERNEL_TESTS]):
        out = subprocess.run(cmd, capture_output=True, text=True)
        assert out.returncode == 0, f"{cmd[0]} failed:\n{out.stdout[-4000:]}{out.stderr[-4000:]}"
    return build


@pytest.mark.parametrize("name", KERNEL_TESTS)
def test_kernel_binary_native(name, native_tests):
    print(run_binary([native_tests / name]))


# Cross builds of the microkernel tests: compiler, ISA flags and kernel files as cmake/kernels.cmake picks them.
CROSS = {
    "aarch64": ("aarch64-linux-gnu-g++", [], "aarch64-neonfma", "AARCH64_NEONFMA",
                ["qemu-aarch64", "-cpu", "cortex-a53"]),
    "armv7": ("arm-linux-gnueabihf-g++", ["-mfpu=neon-vfpv4", "-mfp16-format=ieee"], "neon", "NEON",
              ["qemu-arm", "-cpu", "cortex-a7"]),
}
# The tests that need only cpu.cc and the microkernels (test_core links the whole core: see toolchains/test-qemu.sh).
MICROKERNEL_TESTS = ["test_gemm", "test_softmax", "test_vunary", "test_vbinary", "test_dwconv"]


@pytest.mark.parametrize("name", MICROKERNEL_TESTS)
@pytest.mark.parametrize("target", sorted(CROSS))
def test_microkernels_qemu(target, name, tmp_path):
    cxx, flags, isa, define, qemu = CROSS[target]
    if not shutil.which(cxx) or not shutil.which(qemu[0]):
        pytest.skip(f"needs {cxx} and {qemu[0]} (apt-get install g++-{cxx[:-4]} qemu-user)")
    common = ["-O2", "-std=c++17", f"-I{ROOT / 'cpp'}", f"-I{ROOT / 'tests' / 'kernels'}"]
    objects = []
    for src in [ROOT / "cpp" / "cpu.cc", ROOT / "tests" / "kernels" / f"{name}.cc",
                *sorted(KERNELS.glob("*/*-scalar.cc")), *sorted(KERNELS.glob(f"*/*-{isa}.cc")),
                *sorted(KERNELS.glob(f"*/*-{isa}-cortex-a*.cc"))]:  # core-tuned variants (cmake/kernels.cmake)
        obj = tmp_path / (src.stem + ".o")
        isa_flags = flags if f"-{isa}" in src.name else []
        subprocess.run([cxx, *common, *isa_flags, f"-DONNXSTREAM_KERNELS_{define}=1", "-c", src, "-o", obj],
                       check=True)
        objects.append(obj)
    binary = tmp_path / name
    subprocess.run([cxx, "-static", *objects, "-o", binary], check=True)
    out = run_binary([*qemu, binary])
    assert f"__{isa.replace('-', '_')}" in out  # the target's own kernels ran, not only the scalar ones


# (B, M, K, N, how): K > 512 and N > 512 cross cache blocks; odd sizes leave partial tiles and panels.
CASES = [
    (1, 1, 1, 1, "plain"),
    (1, 17, 33, 31, "plain"),
    (2, 40, 600, 70, "plain"),
    (1, 70, 64, 1100, "plain"),
    (3, 5, 19, 17, "broadcast_a"),
    (3, 21, 23, 40, "broadcast_w"),
    (2, 18, 37, 45, "transposed_w"),
    (2, 18, 37, 45, "strided_a"),
    (1, 9, 0, 5, "plain"),
]


def check_matmul(w_dtype, with_bias=True):
    from onnxstream import _core

    rng = np.random.default_rng(0)
    for B, M, K, N, how in CASES:
        a = rng.standard_normal((B, M, K)).astype(np.float32)
        w = rng.standard_normal((B, K, N)).astype(w_dtype)
        if how == "broadcast_a":
            a = np.broadcast_to(a[:1], a.shape)
        elif how == "broadcast_w":
            w = np.broadcast_to(w[:1], w.shape)
        elif how == "transposed_w":
            w = np.ascontiguousarray(w.transpose(0, 2, 1)).transpose(0, 2, 1)
        elif how == "strided_a":
            a = np.ascontiguousarray(np.repeat(a, 2, axis=2))[:, :, ::2]
        bias = rng.standard_normal(N).astype(np.float32) if with_bias else None
        y = np.full((B, M, N), np.nan, np.float32)
        _core.matmul(a, w, bias, y)
        a64, w64 = a.astype(np.float64), w.astype(np.float64)
        ref = a64 @ w64 + (bias if with_bias else 0.0)
        tol = 8 * max(K, 1) * np.finfo(np.float32).eps * (np.abs(a64) @ np.abs(w64)) + 1e-6
        err = np.abs(y - ref)
        assert np.all(err <= tol), f"{(B, M, K, N, how)} {w_dtype.__name__}: max error {err.max()}"


@pytest.mark.parametrize("w_dtype", [np.float32, np.float16])
@pytest.mark.parametrize("with_bias", [True, False])
def test_matmul_default_isa(w_dtype, with_bias):
    check_matmul(w_dtype, with_bias)


@pytest.mark.parametrize("isa", ["scalar", "avx2"])
def test_matmul_forced_isa(isa):
    """Each dispatch path, in a fresh process (the ISA is chosen once per process)."""
    from onnxstream import _core  # noqa: F401  (skip cleanly if the module is not built)

    probe = subprocess.run([sys.executable, "-c", "from onnxstream import _core; import numpy as n; "
                            "_core.matmul(n.ones((1,1,1),'f'), n.ones((1,1,1),'f'), None, n.empty((1,1,1),'f'))"],
                           env={**os.environ, "ONNXSTREAM_ISA": isa}, capture_output=True, text=True)
    if "does not support" in probe.stderr or "not one of" in probe.stderr:
        pytest.skip(f"CPU cannot run ONNXSTREAM_ISA={isa}")
    code = ("import numpy as np, test_kernels as t\n"
            "for d in (np.float32, np.float16):\n    t.check_matmul(d)\n")
    env = {**os.environ, "ONNXSTREAM_ISA": isa,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_generated_kernels_up_to_date():
    """The GEMM kernel files and .inc lists are what scripts/generate-gemm-kernels.py writes from its tables."""
    out = subprocess.run([sys.executable, ROOT / "scripts" / "generate-gemm-kernels.py", "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
