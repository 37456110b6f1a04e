"""The board's speed from the code: llvm-mca on the inner loops of the ARM microkernels the UNet runs.

    python bench/arm_kernels.py [--counts counts.json] [--markdown]

1. Compiles every aarch64 and armv7 kernel file the UNet's hot ops use (GEMM per weight format f32 / f16w /
   qc8w, the conv band row kernels, softmax's rmax and exp) with the project's cross flags (`zig c++` as
   toolchains/ uses it: -O2 -fno-math-errno, aarch64 -mcpu=cortex_a53; armv7 -mcpu=cortex_a7 -mfpu=neon-vfpv4),
   finds each function's hot inner loop (clang's loop annotations; the inner loop with the most floating-point
   work) and runs `llvm-mca-16 -mcpu=cortex-a53` on it: cycles per iteration, FLOP per cycle, against the model's
   peak (one 128-bit FMLA per cycle: 8 FLOP/cycle), loads, stores and register spills per iteration.
   LLVM has no Cortex-A53 model for 32-bit ARM, so the armv7 loops run through its Cortex-R52 model (in-order,
   dual-issue, NEON; its peak is the same 8 FLOP/cycle), marked as such.
2. The same analysis of XNNPACK's hand-scheduled Cortex-A53 GEMM kernels (4x8 and 4x12 aarch64, 4x8 aarch32)
   from a fetched XNNPACK snapshot at the commit OnnxStream pins.
3. armv6 (ARM1176JZF-S, VFPv2, no NEON; LLVM has only itineraries for it, which llvm-mca cannot use): loads,
   stores and spills per multiply-add in the scalar kernels' inner loops, counted from the disassembly of the
   `-mcpu=arm1176jzf_s` build, and a cycle estimate for the single-issue ARM11 (one instruction per cycle, VLDM/VSTM
   moving two single-precision registers per cycle).
4. With --counts (written by bench/unet_work.py: FLOP and bytes per kernel family of one UNet step, counted by
   the runtime's ONNXSTREAM_COUNT_KERNELS hook), a PROJECTED time per UNet step on a Pi Zero 2 W (4x A53, 1 GHz)
   and a Pi Zero W (1x ARM1176, 1 GHz): kernel FLOP / (loop FLOP per cycle x clock x cores). It is a projection
   from a static pipeline model: it ignores cache misses, memory bandwidth, edge tiles and the ops outside these
   kernels, so a real board is slower.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MCA = os.environ.get("LLVM_MCA", "llvm-mca-16")
MIRRORS = Path(os.environ.get("PEERS_MIRRORS", "/work/.mirror"))
XNNPACK_COMMIT = "5671db0572e2d5240f2f08f9085174014742ac2d"  # the one OnnxStream's src/CMakeLists.txt pins
PEAK_FLOP_PER_CYCLE = 8.0  # llvm-mca's Cortex-A53 (and Cortex-R52) model: one 128-bit FMLA per cycle

TARGETS = {  # toolchains/*.cmake: zig target, -mcpu, extra flags; llvm-mca triple and cpu
    "aarch64": (["-target", "aarch64-linux-gnu.2.28", "-mcpu=cortex_a53"], "aarch64-linux-gnu", "cortex-a53", ""),
    "armv7": (["-target", "arm-linux-gnueabihf.2.28", "-mcpu=cortex_a7", "-mfpu=neon-vfpv4"],
              "armv7a-linux-gnueabihf", "cortex-r52", "+neon,+vfp4,+fp16"),
    "armv6": (["-target", "arm-linux-gnueabihf.2.28", "-mcpu=arm1176jzf_s"], None, None, ""),
}
K = "cpp/kernels/"
# The kernels dispatch.cc picks on each target: (family, target, source, function name fragment)
TILES = {"aarch64": ("8x16", "aarch64-neonfma-cortex-a53"), "armv7": ("4x16", "neon")}  # GEMM tile, suffix
ISAS = {"aarch64": "aarch64-neonfma", "armv7": "neon"}
KERNELS = [
    (family, target, K + f"{family}/{family}-{TILES[target][0]}-{TILES[target][1]}.cc", f"_ukernel_{TILES[target][0]}")
    for target in TILES for family in ("f32-gemm", "f32-f16w-gemm", "f32-qc8w-gemm")
] + [
    (family, target, K + f"{family}/{family}-{ISAS[target]}.cc", family.split("-", 1)[1])
    for target in TILES for family in ("f32-rmax", "f32-raddstoreexpminusmax")
] + [
    (family, target, K + "f32-convband/f32-convband-scalar.cc", family.split("-", 1)[1])  # no NEON row kernels yet
    for target in TILES for family in ("f32-vscaleshift", "f32-vaddstore", "f32-rsumsq")
]
ARMV6_KERNELS = [
    ("f32-gemm", K + "f32-gemm/f32-gemm-4x16-scalar.cc", "f32_gemm_ukernel_4x16"),
    ("f32-f16w-gemm", K + "f32-f16w-gemm/f32-f16w-gemm-4x16-scalar.cc", "f16w_gemm_ukernel_4x16"),
    ("f32-qc8w-gemm", K + "f32-qc8w-gemm/f32-qc8w-gemm-4x16-scalar.cc", "qc8w_gemm_ukernel_4x16"),
    ("f32-rmax", K + "f32-rmax/f32-rmax-scalar.cc", "rmax"),
    ("f32-raddstoreexpminusmax", K + "f32-raddstoreexpminusmax/f32-raddstoreexpminusmax-scalar.cc",
     "raddstoreexpminusmax"),
    ("f32-rsumsq", K + "f32-convband/f32-convband-scalar.cc", "rsumsq"),
]
XNNPACK_KERNELS = [  # (target, file under src/f32-gemm/gen/)
    ("aarch64", "f32-gemm-4x8-minmax-asm-aarch64-neonfma-cortex-a53.S"),
    ("aarch64", "f32-gemm-4x12-minmax-asm-aarch64-neonfma-cortex-a53.S"),
    ("armv7", "f32-gemm-4x8-minmax-asm-aarch32-neon-cortex-a53.S"),
]


def zig() -> str:
    try:
        import ziglang
        return str(Path(ziglang.__file__).parent / "zig")
    except ImportError:
        found = shutil.which("zig")
        if not found:
            sys.exit("missing: zig (pip install ziglang), the compiler toolchains/ cross-builds with")
        return found


def compile_asm(source: str, target: str) -> str:
    flags, *_ = TARGETS[target]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "k.s"
        cmd = [zig(), "c++", *flags, "-O2", "-g0", "-fno-math-errno", "-DNDEBUG", "-std=c++17",
               f"-I{ROOT / 'cpp'}", "-S", "-o", str(out), str(ROOT / source)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}\n{r.stderr}")
        return out.read_text()


# ---------------------------------------------------------------- assembly parsing

COMMENT = re.compile(r"\s*(//|@).*$|^\s*#.*$")  # aarch64 '//', arm '@', a gas '#' comment line


def functions(asm: str) -> dict[str, list[str]]:
    """Mangled function name -> its lines (label to .Lfunc_end)."""
    out, name, body = {}, None, []
    for line in asm.splitlines():
        m = re.match(r"^([_A-Za-z][\w.$]*):", line)
        if m and not line.startswith(".L"):
            name, body = m.group(1), []
        elif name and line.startswith(".Lfunc_end"):
            out[name], name = body, None
        elif name:
            body.append(line)
    return out


def instructions(lines) -> list[str]:
    """The instruction lines of a block (labels, directives and comments dropped)."""
    out = []
    for line in lines:
        text = COMMENT.sub("", line).strip()
        if not text or text.endswith(":") or text.startswith("."):
            continue
        out.append(text)
    return out


def inner_loops(lines) -> list[list[str]]:
    """Inner loops of a function. Clang output: the blocks of each 'This Inner Loop Header' (its own block and
    every block annotated 'in Loop: Header=<it>'), in layout order; a loop with branches inside thus counts every
    path. Inline asm inside clang output (between its APP / NO_APP markers) and hand-written assembly (XNNPACK's
    .S): from a numeric label to the last branch back to it ('1b')."""
    loops = _clang_loops(lines) if any("Loop Header" in l for l in lines) else []
    regions, region = [], None
    for line in lines:
        if re.match(r"^\s*(//|@)APP\b", line):
            region = []
        elif re.match(r"^\s*(//|@)NO_APP\b", line):
            regions.append(region or [])
            region = None
        elif region is not None:
            region.append(line)
    if not regions and not loops:
        regions = [lines]
    for r in regions:
        loops += _label_loops(r)
    return loops


def _clang_loops(lines) -> list[list[str]]:
    blocks, current = [], None
    for line in lines:
        m = re.match(r"^(\.LBB\d+_\d+):|^\s*(//|@) %bb\.\d+:", line)
        if m:
            current = [line]
            blocks.append(current)
        elif current is not None:
            current.append(line)
    loops = []
    for b in blocks:
        head = " ".join(b[:2])
        if "This Inner Loop Header" not in head:
            continue
        name = re.match(r"^\.L(BB\d+_\d+):", b[0]).group(1)
        loops.append([l for blk in blocks if blk is b or f"Header={name} " in blk[0] + " " for l in blk])
    return loops


def _label_loops(lines) -> list[list[str]]:
    """Loops from a label to the last branch back to it: numeric labels ('1:' ... 'b.ne 1b') as written, or the
    .Ltmp labels clang's assembler turns them into in inline asm."""
    labels = {}
    for i, line in enumerate(lines):
        m = re.match(r"^\s*(\d+|\.Ltmp\d+):", line)
        if m:
            labels.setdefault(m.group(1), i)
    loops = []
    branch = r"(b\.\w+|b|cbn?z|bne|bhs|bhi|bcs|bge|bgt)\s+.*"
    for label, start in labels.items():
        target = rf"\b{label}b" if label.isdigit() else re.escape(label)
        pat = re.compile(rf"^\s*{branch}{target}\s*$", re.I)
        ends = [i for i in range(start + 1, len(lines)) if pat.search(COMMENT.sub("", lines[i]))]
        if ends:
            loops.append(lines[start:ends[-1] + 1])
    backward = re.compile(rf"^\s*{branch}(\b\d+b|\.Ltmp\d+)\s*$", re.I)  # innermost: one backward branch
    return [l for l in loops if sum(1 for x in l if backward.search(COMMENT.sub("", x))) == 1]


def _lanes(ins: str) -> int:
    m = re.search(r"\.(\d+)([sdh])\b", ins)
    if m:
        return int(m.group(1))
    if re.search(r"\bq\d+\b", ins.split(",")[0]):
        return 4
    if re.search(r"\bd\d+\b", ins.split(",")[0]) and ".f32" in ins:
        return 2
    return 1


FMA = re.compile(r"^(fmla|fmls|fmadd|fmsub|fnmadd|fnmsub|vfma|vfms|vmla|vmls|vnmla|vnmls)(\.f32)?\b", re.I)
FPOP = re.compile(r"^(fmul|fadd|fsub|fmax|fmin|fmaxnm|fminnm|fneg|fabs|frecpe|frecps|fdiv|vmul|vadd|vsub|vmax|"
                  r"vmin|vneg|vabs|vdiv)(\.f32)?\b", re.I)
LOAD = re.compile(r"^(ldr|ldur|ldp|ld1|ld1r|ld2|ld4|vldr|vld1|vldm|vldmia|vldmdb|vld1\.\d+|ldm|ldrb|ldrh|ldrsb|"
                  r"ldrsh|ldrd|vpop|pop)\b", re.I)
STORE = re.compile(r"^(str|stur|stp|st1|vstr|vst1|vstm|vstmia|vstmdb|stm|strb|strh|strd|vpush|push)\b", re.I)


def _regs_moved(ins: str) -> int:
    """Registers moved by a load/store (vldm/ldp/ld1 {..} move several)."""
    m = re.search(r"\{([^}]*)\}", ins)
    if m:
        count = 0
        for part in m.group(1).split(","):
            r = re.match(r"\s*[sdqvr](\d+)(?:\.\w+)?\s*-\s*[sdqvr](\d+)", part)
            count += int(r.group(2)) - int(r.group(1)) + 1 if r else 1
        return count
    return 2 if re.match(r"^(ldp|stp|ldrd|strd)\b", ins) else 1


@dataclass
class LoopStats:
    n_instructions: int
    flop: int
    fma_lanes: int
    loads: int
    stores: int
    spills: int  # loads/stores of the stack inside the loop

    @staticmethod
    def of(ins: list[str], raw: list[str]):
        flop = fma = loads = stores = 0
        for i in ins:
            op = i.split()[0].lower()
            if FMA.match(op):
                lanes = _lanes(i)
                flop, fma = flop + 2 * lanes, fma + lanes
            elif FPOP.match(op):
                flop += _lanes(i)
            if LOAD.match(op):
                loads += 1
            if STORE.match(op):
                stores += 1
        spills = sum(1 for line in raw if re.search(r"Spill|Reload|\[sp\b|\[x29, #-|\bsp\]|\[sp,", line)
                     and (LOAD.match(COMMENT.sub("", line).strip().split()[0] if COMMENT.sub("", line).strip()
                                     else "x") or STORE.match(COMMENT.sub("", line).strip().split()[0]
                                                              if COMMENT.sub("", line).strip() else "x")))
        return LoopStats(len(ins), flop, fma, loads, stores, spills)


def _loops_of(funcs: dict, fn: str):
    """Inner loops of the kernel `fn`; a kernel that tail-calls its template instance (the GEMM files) has
    none itself, so then those of every function in the file."""
    loops = [l for name, body in funcs.items() if fn in name for l in inner_loops(body)]
    return loops or [l for body in funcs.values() for l in inner_loops(body)]


def hot_loop(loops):
    """The inner loop doing the most floating-point work (a GEMM's k loop, a row kernel's main loop)."""
    scored = [(LoopStats.of(instructions(l), l).flop, -len(l), l) for l in loops]
    return max(scored, key=lambda t: (t[0], t[1]))[2] if scored else None


def _r52_substitute(ins: list[str], bad: str) -> list[str]:
    """The Cortex-R52 model lacks some NEON integer ops (vmovl, vshl #imm, ...): for llvm-mca only, each such
    instruction becomes a NEON integer add with the same destination (one ALU op, same dependency on it)."""
    if bad.lower().split() == ["nop"]:  # XNNPACK's issue-slot filler: nothing to model
        return [i for i in ins if i.lower().split() != ["nop"]]
    m = re.match(r"vldmia\s+(r\d+)(!?),\s*(\{[^}]*\})", bad, re.I)
    scalar = re.match(r"(v\w+\.f32\s+q\d+,\s*q\d+,\s*)d(\d+)\[\d\]", bad, re.I)
    if m:  # a load of consecutive d registers: the same as vld1.32 on these cores
        repl = f"vld1.32 {m.group(3)}, [{m.group(1)}]{m.group(2)}"
    elif scalar:  # multiply(-add) by a lane: the same op on the whole q register holding it
        repl = f"{scalar.group(1)}q{int(scalar.group(2)) // 2}"
    else:
        dest = bad.split(None, 1)[1].split(",")[0].strip()
        repl = f"vadd.i32 {dest}, {dest}, {dest}"
    return [repl if i.lower().split() == bad.lower().split() else i for i in ins]


def mca(body: list[str], target: str) -> tuple[float, str, int]:
    """Cycles per iteration of the loop body by llvm-mca (steady state over 500 iterations), and how many
    instructions had to be substituted for the model."""
    _, triple, cpu, attrs = TARGETS[target]
    # branches inside the loop go to one label at its top (the model does not follow them anyway)
    ins = ["Lloop:"] + [re.sub(r"(\s)(\.LBB\d+_\d+|\.Ltmp\d+|\d+[bf])\s*$", r"\1Lloop", i)
                        for i in instructions(body)]
    substituted = 0
    cmd = [MCA, f"-mtriple={triple}", f"-mcpu={cpu}", "-iterations=500"] + ([f"-mattr={attrs}"] if attrs else [])
    for _ in range(1000):
        r = subprocess.run(cmd, input="\n".join(ins) + "\n", capture_output=True, text=True)
        bad = re.search(r"unsupported instruction.*\n.*instruction:\s*(.+)", r.stderr)
        if r.returncode == 0 or not bad or cpu != "cortex-r52":
            break
        ins, substituted = _r52_substitute(ins, bad.group(1).strip()), substituted + 1
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[:2000]}")
    cycles = int(re.search(r"Total Cycles:\s+(\d+)", r.stdout).group(1))
    return cycles / 500, " ".join(cmd), substituted


# ---------------------------------------------------------------- the analyses

def analyse_ours():
    rows, cache = [], {}
    for family, target, source, fn in KERNELS:
        key = (source, target)
        if key not in cache:
            cache[key] = functions(compile_asm(source, target))
        body = hot_loop(_loops_of(cache[key], fn))
        stats = LoopStats.of(instructions(body), body)
        cycles, cmd, subst = mca(body, target)
        rows.append(dict(engine="onnxstream", target=target, kernel=family, file=Path(source).name, cycles=cycles,
                         **stats.__dict__, substituted=subst, mca=cmd))
    return rows


def analyse_xnnpack():
    git_dir = MIRRORS / "google+XNNPACK" / "repo"
    if not git_dir.is_dir():
        print(f"XNNPACK snapshot missing at {git_dir} (fetch github:google/XNNPACK): its kernels are skipped",
              file=sys.stderr)
        return []
    rows = []
    for target, name in XNNPACK_KERNELS:
        text = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{XNNPACK_COMMIT}:src/f32-gemm/gen/{name}"],
                              check=True, capture_output=True, text=True).stdout
        body = hot_loop(inner_loops(text.splitlines()))
        stats = LoopStats.of(instructions(body), body)
        cycles, cmd, subst = mca(body, target)
        rows.append(dict(engine="XNNPACK", target=target, kernel="f32-gemm", file=name, cycles=cycles,
                         **stats.__dict__, substituted=subst, mca=cmd))
    return rows


def armv6_cycles(ins: list[str]) -> float:
    """ARM1176 estimate: single issue, one cycle per instruction; VLDM/VSTM move 2 singles per cycle; VFP11's
    single-precision VMLA issues once per cycle (its 8-cycle latency is hidden by >= 8 independent sums)."""
    cycles = 0.0
    for i in ins:
        op = i.split()[0].lower()
        cycles += max(1.0, _regs_moved(i) / 2) if re.match(r"^v(ld|st)m|^vpush|^vpop", op) else 1.0
    return cycles


def analyse_armv6():
    rows = []
    for family, source, fn in ARMV6_KERNELS:
        funcs = functions(compile_asm(source, "armv6"))
        body = hot_loop(_loops_of(funcs, fn))
        ins = instructions(body)
        stats = LoopStats.of(ins, body)
        rows.append(dict(engine="onnxstream", target="armv6", kernel=family, file=Path(source).name,
                         cycles=armv6_cycles(ins), **stats.__dict__, substituted=0,
                         mca="estimate (see armv6_cycles)"))
    return rows


# ---------------------------------------------------------------- output

def table(rows):
    lines = ["| target | engine | kernel (file) | instr/iter | FLOP/iter | cycles/iter | FLOP/cycle | % of peak "
             "| loads / stores / spills per iter | loads+stores per FMA lane |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fpc = r["flop"] / r["cycles"] if r["cycles"] else 0
        peak = f"{100 * fpc / PEAK_FLOP_PER_CYCLE:.0f}%" if r["target"] != "armv6" else f"{100 * fpc / 2:.0f}% of 2"
        per_fma = f"{(r['loads'] + r['stores']) / r['fma_lanes']:.2f}" if r["fma_lanes"] else "-"
        note = f", {r['substituted']} instr. substituted" if r.get("substituted") else ""
        lines.append(f"| {r['target']}{' (R52 model' + note + ')' if r['target'] == 'armv7' else ''} | {r['engine']} | "
                     f"{r['kernel']} ({r['file']}) | {r['n_instructions']} | {r['flop']} | {r['cycles']:.1f} | "
                     f"{fpc:.2f} | {peak} | {r['loads']} / {r['stores']} / {r['spills']} | {per_fma} |")
    return "\n".join(lines)


def projection(rows, counts_path: Path):
    """Projected UNet step time per board and weight format from the counted work of one fp16 UNet step: the
    weight GEMMs' FLOP (family f16w in that run) go to the f32 / f16w / qc8w kernel of the format, the activation
    GEMMs (attention, family f32w) to the f32 kernel, softmax and conv-band row work to their kernels."""
    counts = json.loads(counts_path.read_text())["kernels"]
    boards = [("Pi Zero 2 W, 64-bit OS (4x A53, 1 GHz)", "aarch64", 4),
              ("Pi Zero 2 W, 32-bit OS (4x A53, 1 GHz)", "armv7", 4),
              ("Pi Zero W (1x ARM1176, 1 GHz)", "armv6", 1)]
    weight_kernel = {"fp32": "f32-gemm", "fp16": "f32-f16w-gemm", "int8": "f32-qc8w-gemm"}
    rest = {"f32w": "f32-gemm", "rmax": "f32-rmax", "raddstoreexpminusmax": "f32-raddstoreexpminusmax",
            "vscaleshift": "f32-vscaleshift", "vaddstore": "f32-vaddstore", "rsumsq": "f32-rsumsq"}
    out = ["| board | weights | GFLOP in GEMM kernels | kernel FLOP/cycle used (weight GEMM / attention GEMM) "
           "| projected s per UNet step (batch 2) |", "|---|---|---|---|---|"]
    for board, target, cores in boards:
        fpc = {r["kernel"]: r["flop"] / r["cycles"] for r in rows
               if r["target"] == target and r["engine"] == "onnxstream" and r["cycles"] and r["flop"]}
        for weights, kernel in weight_kernel.items():
            work = dict(counts)
            families = {"f16w": kernel, **rest}
            seconds = sum(work[f]["flop"] / (fpc[k] * 1e9 * cores) for f, k in families.items()
                          if f in work and k in fpc and work[f]["flop"])
            gflop = (work["f16w"]["flop"] + work["f32w"]["flop"]) / 1e9
            out.append(f"| {board} | {weights} | {gflop:.0f} | {fpc[kernel]:.2f} / {fpc['f32-gemm']:.2f} | "
                       f"{seconds:.0f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", type=Path, help="kernel counts of one UNet step (bench/unet_work.py --out)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    if not shutil.which(MCA):
        sys.exit(f"missing: {MCA} (apt-get install llvm-16)")
    rows = analyse_ours() + analyse_xnnpack()
    v6 = analyse_armv6()
    print("## llvm-mca, Cortex-A53 (armv7 through the Cortex-R52 model)\n")
    print(table(rows))
    print("\n## armv6 (ARM1176JZF-S): from the disassembly, single-issue estimate; peak 2 FLOP/cycle (one VMLA)\n")
    print(table(v6))
    print("\ncommands: " + "; ".join(sorted({r["mca"] for r in rows})))
    if args.counts:
        print("\n## PROJECTION (not a measurement): kernel FLOP of one UNet step / (FLOP per cycle x 1 GHz x cores)\n")
        print(projection(rows + v6, args.counts))
    if args.json:
        args.json.write_text(json.dumps(rows + v6, indent=1))


if __name__ == "__main__":
    main()
