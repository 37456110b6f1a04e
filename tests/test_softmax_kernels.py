"""Softmax microkernels (f32-rmax, f32-raddstoreexpminusmax): the C++ test binary tests/kernels/test_softmax.cc,
natively and under qemu-user when cross compilers are installed (the same way test_kernels.py runs test_gemm)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from test_kernels import CROSS, KERNELS, ROOT, run_binary


def test_softmax_microkernels_native(tmp_path):
    """build/test_softmax (cmake -DONNXSTREAM_BUILD_TESTS=ON), or a fresh CMake build of just that target."""
    binary = Path(os.environ.get("ONNXSTREAM_TEST_SOFTMAX", ROOT / "build" / "test_softmax"))
    if not binary.exists():
        if not shutil.which("cmake") or not shutil.which("ninja"):
            pytest.skip("no build/test_softmax and no cmake/ninja to build it")
        import pybind11

        build = tmp_path / "build"
        subprocess.run(["cmake", "-S", ROOT, "-B", build, "-G", "Ninja", "-DONNXSTREAM_BUILD_TESTS=ON",
                        "-DSKBUILD_PROJECT_NAME=onnxstream", "-DSKBUILD_PROJECT_VERSION=0.1.0",
                        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}"], check=True, capture_output=True)
        subprocess.run(["ninja", "-C", build, "test_softmax"], check=True, capture_output=True)
        binary = build / "test_softmax"
    print(run_binary([binary]))


@pytest.mark.parametrize("target", sorted(CROSS))
def test_softmax_microkernels_qemu(target, tmp_path):
    cxx, flags, isa, define, qemu = CROSS[target]
    if not shutil.which(cxx) or not shutil.which(qemu[0]):
        pytest.skip(f"needs {cxx} and {qemu[0]} (apt-get install g++-{cxx[:-4]} qemu-user)")
    common = ["-O2", "-std=c++17", f"-I{ROOT / 'cpp'}"]
    objects = []
    families = ["f32-rmax", "f32-raddstoreexpminusmax"]
    kernels = [f for fam in families for f in sorted((KERNELS / fam).glob("*.cc"))
               if f.name.endswith(("-scalar.cc", f"-{isa}.cc"))]
    for src in [ROOT / "cpp" / "cpu.cc", ROOT / "tests" / "kernels" / "test_softmax.cc", *kernels]:
        obj = tmp_path / (src.stem + ".o")
        isa_flags = flags if src.name.endswith(f"-{isa}.cc") else []
        subprocess.run([cxx, *common, *isa_flags, f"-DONNXSTREAM_KERNELS_{define}=1", "-c", src, "-o", obj],
                       check=True)
        objects.append(obj)
    binary = tmp_path / "test_softmax"
    subprocess.run([cxx, "-static", *objects, "-o", binary], check=True)
    out = run_binary([*qemu, binary])
    assert f"__{isa.replace('-', '_')}" in out  # the target's own kernels ran, not only the scalar ones
