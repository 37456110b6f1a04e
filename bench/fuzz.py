"""Coverage-guided fuzzing of what onnxstream reads from untrusted files, with the C++ core built with
AddressSanitizer + UndefinedBehaviorSanitizer.

    python bench/fuzz.py build                              # the sanitized core: build/asan (once, ~2 min)
    python bench/fuzz.py run --target model --seconds 1800  # mutated graph.json / weights.bin -> Session.run
    python bench/fuzz.py run --target onnx --seconds 1800   # mutated ONNX files -> convert -> Session.run
    python bench/fuzz.py ci                                 # build, then 60 s of each target (.ci/run)

atheris (libFuzzer for Python, from PyPI) drives it: its byte strings steer a structure-aware mutator (below)
that edits the seeds, the small models of tests/small_models.py converted once (every field kind: packed,
column-blocked, row-table and int8 weights, fused ops and their structured attributes), so most inputs get past
the JSON and protobuf parsers into the checks, the ops and the kernels. Python coverage (format_check, the
runtime, the converter) guides it on the release core; then every input of the corpus it grew is run again on
the C++ core built by GCC with ASan + UBSan aborting on the first error (libasan preloaded into Python). A Python exception is a refusal (counted by type); a crash is an
ASan/UBSan report, a signal, a run over --timeout seconds or over the RSS limit: libFuzzer stops, writes the input
as crash-*/timeout-* in the work dir, and the exit code is non-zero. Printed: executions and refusals per type.
"""
from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "asan"
PACKAGE = BUILD / "pkg"            # onnxstream's sources (symlinked) + the sanitized _core
WORK = Path(os.environ.get("ONNXSTREAM_FUZZ_DIR", "/dev/shm/onnxstream-fuzz" if Path("/dev/shm").is_dir()
                           else "/tmp/onnxstream-fuzz"))
SANITIZE = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
ASAN_OPTIONS = ("detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=2048:abort_on_error=1:"
                "handle_abort=1:symbolize=1")
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1"


# ---------------------------------------------------------------- the sanitized build

def _tool(name: str) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    import build_tools
    return build_tools.find(name) or sys.exit(f"{name} not found: pip install {name}")


def build() -> None:
    import pybind11
    ninja = _tool("ninja")
    subprocess.run([_tool("cmake"), "-S", ROOT, "-B", BUILD, "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}",
                    "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                    f"-DCMAKE_CXX_FLAGS={SANITIZE}", f"-DCMAKE_MODULE_LINKER_FLAGS={SANITIZE}",
                    f"-DPython_EXECUTABLE={sys.executable}", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
                    "-DSKBUILD_PROJECT_NAME=onnxstream", "-DSKBUILD_PROJECT_VERSION=0.1.0"], check=True)
    subprocess.run([ninja, "-C", BUILD, "_core"], check=True)
    module = next(BUILD.glob("_core*.so"))
    tmp = BUILD / "pkg.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for src in (ROOT / "python" / "onnxstream").rglob("*.py"):
        dst = tmp / "onnxstream" / src.relative_to(ROOT / "python" / "onnxstream")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src)
    shutil.copy(module, tmp / "onnxstream" / module.name)
    shutil.rmtree(PACKAGE, ignore_errors=True)
    tmp.rename(PACKAGE)
    print(f"sanitized core: {PACKAGE / 'onnxstream' / module.name}")


def sanitizer_env() -> dict:
    """GCC's libasan preloaded (it must come first), and libstdc++, or ASan's __cxa_throw interceptor finds no real
    one (python links no C++)."""
    libs = [subprocess.run(["gcc", f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
            for lib in ("libasan.so", "libstdc++.so")]
    return {**os.environ, "LD_PRELOAD": ":".join(libs), "ASAN_OPTIONS": ASAN_OPTIONS, "UBSAN_OPTIONS": UBSAN_OPTIONS,
            "PYTHONPATH": os.pathsep.join([str(PACKAGE), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}


def plain_env() -> dict:
    """onnxstream built in place (python/, as for development) when it is there, else the installed one."""
    paths = [str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    if any((ROOT / "python" / "onnxstream").glob("_core*.so")):
        paths.insert(0, str(ROOT / "python"))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _libfuzzer(target, env, flags, label):
    corpus = WORK / f"corpus-{target}"
    corpus.mkdir(parents=True, exist_ok=True)
    start = time.time()
    child = subprocess.run([sys.executable, __file__, "child", target, str(corpus), *flags, "-print_final_stats=1",
                            "-max_len=4096", f"-artifact_prefix={WORK}/{target}-"], env=env, cwd=WORK,
                           capture_output=True, text=True)
    stats = dict(re.findall(r"^stat::(\w+):\s*(\d+)", child.stderr, re.M))
    outcomes = ([line for line in child.stdout.splitlines() if line.startswith("outcomes ")] or [""])[-1]
    print(f"{target} {label}: {stats.get('number_of_executed_units', '?')} executions in {time.time() - start:.0f} s, "
          f"corpus {len(list(corpus.iterdir()))}, exit {child.returncode} "
          f"({'no crash' if child.returncode == 0 else 'CRASH: see ' + str(WORK)}); {outcomes}", flush=True)
    if child.returncode:
        print(child.stderr[-8000:], file=sys.stderr)
    return child.returncode


def run(target: str, seconds: int, timeout: int, rss_mb: int) -> int:
    """Coverage-guided fuzzing for `seconds` on the release core, then every input of the corpus it grew (the
    inputs that reached new code) and every earlier one again on the sanitized core. (atheris's Python coverage
    reaches libFuzzer through the __sanitizer_cov_* hooks, which a preloaded GCC libasan shadows with stubs: in one
    process, sanitizers and coverage guidance exclude each other.)"""
    if not (PACKAGE / "onnxstream").is_dir():
        build()
    limits = [f"-timeout={timeout}", f"-rss_limit_mb={rss_mb}"]
    code = _libfuzzer(target, plain_env(), [f"-max_total_time={seconds}", *limits], "coverage-guided")
    return code or _libfuzzer(target, sanitizer_env(), ["-runs=0", *limits], "corpus under ASan+UBSan")


# ---------------------------------------------------------------- the fuzzer process (sanitizers loaded)

INTERESTING = [0, -1, 1, 2, 3, 15, 16, 17, 63, 64, 255, 4096, 65535, 2 ** 31 - 1, 2 ** 31, -2 ** 31, 2 ** 32 + 1,
               2 ** 62, 2 ** 63 - 1, -2 ** 63, 2 ** 64 - 1, 2 ** 64, 0.5, -0.0, 1e308, float("inf"), float("nan"),
               "", "x", "float16", "int8", "gemm_b_panels16", "gemm_b_panels16_qc8w", None, True, [], {}, [0], [-1]]


def _paths(v, path=()):
    """Every (path, value) in a JSON document."""
    yield path, v
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, item in items:
        yield from _paths(item, path + (k,))


def _set(doc, path, value):
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


def _mutate_doc(doc, fdp, strings):
    paths = [p for p, _ in _paths(doc) if p and not (p[-1] == "data" and len(p) >= 2)]
    path = paths[fdp.ConsumeIntInRange(0, len(paths) - 1)]
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    value = parent[path[-1]]
    how = fdp.ConsumeIntInRange(0, 6)
    if how == 0:
        _set(doc, path, INTERESTING[fdp.ConsumeIntInRange(0, len(INTERESTING) - 1)])
    elif how == 1 and isinstance(value, (int, float)) and not isinstance(value, bool):
        _set(doc, path, value + fdp.ConsumeIntInRange(-3, 3))
    elif how == 2 and strings:
        _set(doc, path, strings[fdp.ConsumeIntInRange(0, len(strings) - 1)])
    elif how == 3:
        if isinstance(parent, list):
            del parent[path[-1]]
        else:
            del parent[path[-1]]
    elif how == 4 and isinstance(parent, list):
        parent.insert(path[-1], json.loads(json.dumps(value)))
    elif how == 5:
        _set(doc, path, fdp.ConsumeIntInRange(-2 ** 40, 2 ** 40))
    else:  # a constant's values (shapes, axes, scales: they steer the ops)
        consts = list(doc.get("constants", {}).values()) if isinstance(doc.get("constants"), dict) else []
        consts = [c for c in consts if isinstance(c, dict) and isinstance(c.get("data"), str)]
        if consts:
            c = consts[fdp.ConsumeIntInRange(0, len(consts) - 1)]
            try:
                raw = bytearray(base64.b64decode(c["data"]))
            except Exception:
                return
            if raw:
                at = fdp.ConsumeIntInRange(0, len(raw) - 1)
                raw[at:at + 8] = fdp.ConsumeBytes(8)
                c["data"] = base64.b64encode(bytes(raw)).decode()


def _mutate_weights(data: bytearray, fdp):
    how = fdp.ConsumeIntInRange(0, 2)
    if how == 0 and data:
        at = fdp.ConsumeIntInRange(0, len(data) - 1)
        data[at] ^= 1 << fdp.ConsumeIntInRange(0, 7)
    elif how == 1:
        del data[fdp.ConsumeIntInRange(0, len(data)):]
    elif data:
        at = fdp.ConsumeIntInRange(0, len(data) - 1)
        data[at:at + 8] = fdp.ConsumeBytes(8)


def _feeds(doc, kind, small_models, np):
    """The model's own feeds, or arrays of what its (mutated) inputs declare, when small enough."""
    try:
        feeds = {}
        for v in doc["inputs"]:
            shape = [d if isinstance(d, int) else 1 for d in v["shape"]]
            if int(np.prod(shape)) > 1 << 20:
                return small_models.feeds(kind)
            feeds[v["name"]] = np.ones(shape, np.dtype(v["dtype"]))
        given = small_models.feeds(kind)
        return {k: given[k] if k in given and given[k].shape == a.shape and given[k].dtype == a.dtype else a
                for k, a in feeds.items()}
    except Exception:
        return small_models.feeds(kind)


def mutate_onnx(model, fdp, values, ops):
    import onnx
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        how = fdp.ConsumeIntInRange(0, 5)
        n = model.graph.node[fdp.ConsumeIntInRange(0, len(model.graph.node) - 1)]
        if how == 0 and n.attribute:
            a = n.attribute[fdp.ConsumeIntInRange(0, len(n.attribute) - 1)]
            if a.ints:
                a.ints[fdp.ConsumeIntInRange(0, len(a.ints) - 1)] = fdp.ConsumeIntInRange(-2 ** 40, 2 ** 40)
            elif a.type == onnx.AttributeProto.INT:
                a.i = INTERESTING[fdp.ConsumeIntInRange(0, 21)]
            else:
                a.f = fdp.ConsumeFloat()
        elif how == 1:
            n.op_type = ops[fdp.ConsumeIntInRange(0, len(ops) - 1)]
        elif how == 2 and n.input:
            n.input[fdp.ConsumeIntInRange(0, len(n.input) - 1)] = values[fdp.ConsumeIntInRange(0, len(values) - 1)]
        elif how == 3:
            t = model.graph.initializer[fdp.ConsumeIntInRange(0, len(model.graph.initializer) - 1)]
            if t.dims:
                t.dims[fdp.ConsumeIntInRange(0, len(t.dims) - 1)] = INTERESTING[fdp.ConsumeIntInRange(0, 21)]
        elif how == 4:
            dims = model.graph.input[0].type.tensor_type.shape.dim
            dims[fdp.ConsumeIntInRange(0, len(dims) - 1)].dim_value = fdp.ConsumeIntInRange(0, 70)
        else:
            model.opset_import[0].version = fdp.ConsumeIntInRange(10, 24)


def child(target: str, libfuzzer_args: list) -> None:
    import atheris
    import numpy as np
    import onnx
    with atheris.instrument_imports():  # coverage of onnxstream's Python (numpy and onnx imported before: not)
        import onnxstream
        import small_models
        from onnxstream import converter, format_check  # noqa: F401
    seeds = WORK / "seeds"
    if not (seeds / "done").exists():
        tmp = WORK / f"seeds.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for kind in small_models.KINDS:
            small_models.convert(kind, tmp / kind, onnx_path=tmp / f"{kind}.onnx")
        (tmp / "done").touch()
        shutil.rmtree(seeds, ignore_errors=True)
        tmp.rename(seeds)
    kinds = list(small_models.KINDS)
    docs = {k: json.loads((seeds / k / "graph.json").read_text()) for k in kinds}
    weights = {k: (seeds / k / "weights.bin").read_bytes() for k in kinds}
    onnx_seeds = {k: (seeds / f"{k}.onnx").read_bytes() for k in kinds}
    strings = sorted({v for d in docs.values() for _, v in _paths(d) if isinstance(v, str) and len(v) < 64})
    scratch = WORK / f"case-{os.getpid()}"
    refusals = collections.Counter()

    def one_model(data: bytes):
        fdp = atheris.FuzzedDataProvider(data)
        kind = kinds[fdp.ConsumeIntInRange(0, len(kinds) - 1)]
        doc = json.loads(json.dumps(docs[kind]))
        blob = bytearray(weights[kind])
        try:
            for _ in range(fdp.ConsumeIntInRange(1, 4)):
                if fdp.ConsumeIntInRange(0, 4) == 0:
                    _mutate_weights(blob, fdp)
                else:
                    _mutate_doc(doc, fdp, strings)
            text = json.dumps(doc)
        except (KeyError, IndexError, TypeError, ValueError):  # the mutator's own dead ends: not an input
            refusals["unmutable"] += 1
            return
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        (scratch / "graph.json").write_text(text)
        (scratch / "weights.bin").write_bytes(bytes(blob))
        try:
            session = onnxstream.Session(scratch, threads=2)
            session.run(_feeds(doc, kind, small_models, np))
            refusals["ran"] += 1
        except Exception as e:  # a refusal: what a crafted directory should get
            refusals[type(e).__name__] += 1

    def one_onnx(data: bytes):
        fdp = atheris.FuzzedDataProvider(data)
        kind = kinds[fdp.ConsumeIntInRange(0, len(kinds) - 1)]
        model = onnx.load_from_string(onnx_seeds[kind])
        values = [i.name for i in model.graph.input] + [o for n in model.graph.node for o in n.output] + \
                 [t.name for t in model.graph.initializer]
        ops = sorted(onnxstream.runtime.ops.OPS)
        try:
            mutate_onnx(model, fdp, values, ops)
        except (ValueError, TypeError, IndexError, OverflowError):  # a value protobuf cannot hold: not an input
            refusals["unmutable"] += 1
            return
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        try:
            raw = model.SerializeToString()
        except Exception as e:
            refusals[type(e).__name__] += 1
            return
        (scratch / "m.onnx").write_bytes(raw)
        try:
            out = onnxstream.convert(scratch / "m.onnx", scratch / "out", weights=small_models.WEIGHTS[kind])
            onnxstream.Session(out, threads=2).run(_feeds(json.loads((out / "graph.json").read_text()), kind,
                                                         small_models, np))
            refusals["ran"] += 1
        except Exception as e:
            refusals[type(e).__name__] += 1

    one = one_model if target == "model" else one_onnx

    def counted(data: bytes):  # libFuzzer leaves without Python's atexit: the counts are printed as they go
        one(data)
        if sum(refusals.values()) % 200 == 0:
            print("outcomes " + ", ".join(f"{k} {v}" for k, v in refusals.most_common()), flush=True)

    atheris.Setup([sys.argv[0], *libfuzzer_args], counted)
    atheris.Fuzz()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build")
    r = sub.add_parser("run")
    r.add_argument("--target", choices=["model", "onnx"], required=True)
    r.add_argument("--seconds", type=int, default=120)
    r.add_argument("--timeout", type=int, default=30, help="seconds one input may take")
    r.add_argument("--rss-mb", type=int, default=6144)
    c = sub.add_parser("ci")
    c.add_argument("--seconds", type=int, default=60, help="per target")
    ch = sub.add_parser("child")
    ch.add_argument("target")
    ch.add_argument("rest", nargs=argparse.REMAINDER)
    args = p.parse_args()
    if args.cmd == "build":
        build()
    elif args.cmd == "run":
        sys.exit(run(args.target, args.seconds, args.timeout, args.rss_mb))
    elif args.cmd == "ci":
        build()
        sys.exit(max(run(t, args.seconds, 30, 6144) for t in ("model", "onnx")))
    else:
        child(args.target, args.rest)


if __name__ == "__main__":
    main()
