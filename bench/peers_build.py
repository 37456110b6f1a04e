"""Builds the peer engines for bench/peers.py in ~/.cache/onnxstream/peers (nothing of theirs enters this repo).

- stable-diffusion.cpp: the `stable-diffusion-cpp-python` sdist from PyPI (it builds sd.cpp and ggml with CMake,
  CPU backend), installed with `pip install --target` into the cache, not into any environment.
- OnnxStream: its `sd` app built from a snapshot of github:vitoplantamura/OnnxStream against XNNPACK at the commit
  its src/CMakeLists.txt names, with XNNPACK's dependencies (cpuinfo, pthreadpool, FXdiv at the commits XNNPACK's
  cmake/Download*.cmake name) taken from local snapshots: the build cannot download anything. Snapshots are
  bare git mirrors (the search tool's `fetch` puts them under /work/.mirror/OWNER+NAME/repo, or pass
  --mirrors DIR); `git archive` extracts the exact commits.

Every build runs under `nice -n 10` in a temp dir renamed into place when it succeeds, so an interrupted build
leaves no half-built cache entry.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("ONNXSTREAM_MODEL_CACHE", Path.home() / ".cache" / "onnxstream")) / "peers"
MIRRORS = Path(os.environ.get("PEERS_MIRRORS", "/work/.mirror"))
SDCPP_PACKAGE = "stable-diffusion-cpp-python==0.4.7"
ONNXSTREAM_REPO = "vitoplantamura+OnnxStream"
XNNPACK_REPO = "google+XNNPACK"
XNNPACK_DEPS = {  # XNNPACK's cmake/Download<name>.cmake -> (mirror, CMake variable, source dir name)
    "Cpuinfo": ("pytorch+cpuinfo", "CPUINFO_SOURCE_DIR", "cpuinfo-source"),
    "PThreadPool": ("google+pthreadpool", "PTHREADPOOL_SOURCE_DIR", "pthreadpool-source"),
    "FXdiv": ("Maratyszcza+FXdiv", "FXDIV_SOURCE_DIR", "FXdiv-source"),
}
NICE = ["nice", "-n", "10"]
# x86 kernel families this machine (AVX2, no AVX-512) never runs: not building them keeps XNNPACK's build to
# its production kernels for AVX2 and older (about 1/5 of its 4400 sources); it changes nothing that runs here.
XNNPACK_UNUSED_X86 = ["AVXVNNI", "AVXVNNIINT8", "AVX256SKX", "AVX256VNNI", "AVX256VNNIGFNI", "AVX512F",
                      "AVX512SKX", "AVX512VBMI", "AVX512VNNI", "AVX512VNNIGFNI", "AVX512AMX", "AVX512FP16",
                      "AVX512BF16"]


class Missing(RuntimeError):
    """A prerequisite that is not on this machine, with what to do about it."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def _git(repo: str, *args) -> str:
    return subprocess.run(["git", "--git-dir", str(MIRRORS / repo / "repo"), *args], check=True,
                          capture_output=True, text=True).stdout


def _mirror(repo: str) -> Path:
    path = MIRRORS / repo / "repo"
    if not path.is_dir():
        owner, name = repo.split("+")
        raise Missing(f"no snapshot of github:{owner}/{name} at {path} (fetch it with the search tool's "
                      f"fetch github:{owner}/{name}, or point PEERS_MIRRORS at a folder of bare mirrors)")
    return path


def _has_commit(repo: str, commit: str) -> bool:
    r = subprocess.run(["git", "--git-dir", str(_mirror(repo)), "cat-file", "-e", f"{commit}^{{commit}}"],
                       capture_output=True)
    return r.returncode == 0


def _extract(repo: str, commit: str, dest: Path, paths=()):
    """`git archive` of one commit (only `paths`, if given) into dest (created)."""
    if not _has_commit(repo, commit):
        raise Missing(f"the snapshot {_mirror(repo)} lacks commit {commit}; fetch a newer snapshot")
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "--git-dir", str(_mirror(repo)), "archive", "--format=tar", commit,
                                *paths],
                               stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {repo} {commit} failed")


def _run(cmd, log_file: Path, **kw):
    with open(log_file, "a") as f:
        f.write("$ " + " ".join(map(str, cmd)) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kw)
    if r.returncode != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"{cmd[0] if cmd[0] != 'nice' else cmd[3]} failed (rc {r.returncode}); "
                           f"last lines of {log_file}:\n" + "\n".join(tail))


# ---------------------------------------------------------------- stable-diffusion.cpp (PyPI sdist)

def sdcpp_site() -> Path:
    return CACHE / ("sdcpp-" + SDCPP_PACKAGE.split("==")[1]) / "site"


def build_sdcpp() -> Path:
    """pip-builds the sdist (CMake, CPU, ggml's native flags) into the cache; returns the site dir to put on
    sys.path."""
    site = sdcpp_site()
    if (site / "stable_diffusion_cpp").is_dir():
        return site
    for tool in ("cmake", "ninja", "git"):
        if not shutil.which(tool):
            raise Missing(f"building {SDCPP_PACKAGE} needs {tool} on PATH")
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".sdcpp-", dir=CACHE))
    log(f"building {SDCPP_PACKAGE} from its sdist (sd.cpp + ggml, CPU; ~15 min on 2 cores; log {work}/build.log)")
    env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
    _run(NICE + [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-binary",
                 "stable-diffusion-cpp-python", "--target", str(work / "site"), SDCPP_PACKAGE],
         work / "build.log", env=env)
    os.replace(work, site.parent)
    return site


# ---------------------------------------------------------------- OnnxStream (sources from snapshots)

def onnxstream_commit() -> str:
    return _git(ONNXSTREAM_REPO, "rev-parse", "HEAD").strip()


def _xnnpack_commit(onnxstream_rev: str) -> str:
    """The XNNPACK commit OnnxStream's src/CMakeLists.txt downloads (its README: 'XNNPACK will be downloaded')."""
    text = _git(ONNXSTREAM_REPO, "show", f"{onnxstream_rev}:src/CMakeLists.txt")
    m = re.search(r"XNNPACK/archive/([0-9a-f]{40})\.zip", text)
    if not m:
        raise RuntimeError("cannot find the XNNPACK commit in OnnxStream's src/CMakeLists.txt")
    return m.group(1)


def _dep_commit(xnnpack_rev: str, name: str) -> str:
    text = _git(XNNPACK_REPO, "show", f"{xnnpack_rev}:cmake/Download{name}.cmake")
    m = re.search(r"/archive/([0-9a-f]{40})\.zip", text)
    if not m:
        raise RuntimeError(f"cannot find the commit in XNNPACK's cmake/Download{name}.cmake")
    return m.group(1)


def onnxstream_binary() -> Path:
    return CACHE / f"onnxstream-{onnxstream_commit()[:10]}" / "bin" / "sd"


def onnxstream_binary_if_built():
    """The cached `sd` binary, or None (also when the OnnxStream snapshot itself is missing)."""
    try:
        binary = onnxstream_binary()
    except (Missing, subprocess.CalledProcessError):
        return None
    return binary if binary.is_file() else None


def onnxstream_sources() -> Path:
    return CACHE / f"onnxstream-{onnxstream_commit()[:10]}" / "OnnxStream"


def build_onnxstream() -> Path:
    """XNNPACK (static, no tests/benchmarks, KleidiAI off: it is for Arm) then OnnxStream's `sd` with its own
    CMakeLists.txt (MAX_SPEED on, its default: -O3 -march=native). Returns the path of the `sd` binary."""
    for repo in (ONNXSTREAM_REPO, XNNPACK_REPO) + tuple(v[0] for v in XNNPACK_DEPS.values()):
        _mirror(repo)
    binary = onnxstream_binary()
    if binary.is_file():
        return binary
    for tool in ("cmake", "ninja", "c++", "cc"):
        if not shutil.which(tool):
            raise Missing(f"building OnnxStream needs {tool} on PATH")
    rev = onnxstream_commit()
    xrev = _xnnpack_commit(rev)
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".onnxstream-", dir=CACHE))
    build_log = work / "build.log"
    log(f"building OnnxStream {rev[:10]} with XNNPACK {xrev[:10]} (~40 min on 2 busy cores; log {build_log})")
    _extract(ONNXSTREAM_REPO, rev, work / "OnnxStream", ["src", "onnx2txt"])  # not the examples' binaries
    xsrc, xbin = work / "XNNPACK", work / "XNNPACK" / "build"
    _extract(XNNPACK_REPO, xrev, xsrc)
    dep_args = []
    for name, (repo, var, dirname) in XNNPACK_DEPS.items():
        _extract(repo, _dep_commit(xrev, name), xbin / dirname)  # where XNNPACK itself would download them
        dep_args.append(f"-D{var}={xbin / dirname}")
    _run(NICE + ["cmake", "-S", str(xsrc), "-B", str(xbin), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                 "-DXNNPACK_BUILD_TESTS=OFF", "-DXNNPACK_BUILD_BENCHMARKS=OFF", "-DXNNPACK_LIBRARY_TYPE=static",
                 "-DXNNPACK_ENABLE_KLEIDIAI=OFF", "-DXNNPACK_BUILD_ALL_MICROKERNELS=OFF",
                 *[f"-DXNNPACK_ENABLE_{isa}=OFF" for isa in XNNPACK_UNUSED_X86],
                 f"-DPython_EXECUTABLE={sys.executable}", *dep_args], build_log)
    _run(NICE + ["ninja", "-j", str(os.cpu_count() or 2), "-C", str(xbin)], build_log)
    if not (xbin / "libmicrokernels-all.a").is_file():
        # OnnxStream's CMakeLists links libmicrokernels-all.a too; with XNNPACK_BUILD_ALL_MICROKERNELS=OFF the
        # library references only the production kernels (libmicrokernels-prod.a), so an empty archive stands in.
        _run(["ar", "rcs", str(xbin / "libmicrokernels-all.a")], build_log)
    sd_build = work / "sd-build"
    _run(NICE + ["cmake", "-S", str(work / "OnnxStream" / "src"), "-B", str(sd_build), "-G", "Ninja",
                 "-DCMAKE_BUILD_TYPE=Release", f"-DXNNPACK_DIR={xsrc}"], build_log)
    _run(NICE + ["ninja", "-j", str(os.cpu_count() or 2), "-C", str(sd_build)], build_log)
    (work / "bin").mkdir()
    shutil.copy2(sd_build / "sd", work / "bin" / "sd")
    shutil.rmtree(xsrc / "src", ignore_errors=True)  # the objects are linked; keep headers and libs only
    dest = binary.parent.parent
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(work, dest)
    return binary


if __name__ == "__main__":
    which = sys.argv[1:] or ["sdcpp", "onnxstream"]
    for w in which:
        try:
            print({"sdcpp": build_sdcpp, "onnxstream": build_onnxstream}[w]())
        except Missing as e:
            sys.exit(f"missing: {e}")
