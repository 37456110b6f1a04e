"""The inline-asm main loop of the 8x16 Cortex-A53 GEMM microkernels (cpp/kernels/*/..-aarch64-neonfma-cortex-a53.cc),
one 8-column pass, 4 k per iteration, for float32, fp16 and int8 weights. Used by generate-gemm-kernels.py.

Registers: v0-v7 = A rows 0-7 (a[i][k..k+3], one 128-bit load each), v8-v15 = B: v(8+2k+h) = columns 4h..4h+3 of
weight row k, v16-v31 = the 16 accumulators (acc[r][h] in v(16+2r+h), loaded before the loop and stored after). fp16 and int8 rows are widened in place: the raw row
is loaded into v(9+2k) and converted into v(8+2k) and v(9+2k).

Schedule: every load and conversion of an iteration first, then its 64 FMLAs (k-major, so the first FMLAs read
the first loads). In LLVM's Cortex-A53 model (llvm-mca -mcpu=cortex-a53, which bench/arm_kernels.py runs) an
instruction cannot write back before an earlier one, so any short instruction issued right after an FMLA (latency
10) waits for it: 16 FMLAs with an ADD after each take 112 cycles instead of 16 there. Grouping pays that once per
iteration (89 cycles per 64 FMLAs for float32, 5.8 FLOP/cycle of the model's 8) where loads interleaved one per
FMLA, as XNNPACK's hand-written A53 kernels do, cost 2-3x more in that model.
"""

CORE_NAME = "Cortex-A53"
HEADER = "f32-gemm/f32-gemm-aarch64-neonfma-cortex-a53.h"  # the scaffolding the main loop runs in
ROW_BYTES = {"f32": 64, "f16": 32, "qc8": 16}  # bytes per 16-column panel row
WEIGHTS = {"f32": "f32", "f16": "f16", "qc8": "qc8"}  # A53Weights of each format


def scaffold(fmt: str) -> str:
    return f"gemm_8x16_a53<A53Weights::{WEIGHTS[fmt]}, main_loop>"


def fmla(k: int, r: int, h: int) -> str:
    return f"fmla v{16 + 2 * r + h}.4s, v{8 + 2 * k + h}.4s, v{r}.s[{k}]"


def b_loads(fmt: str):
    """(loads, conversions) for the iteration's 4 weight rows; conversions are listed stage by stage, so the four
    rows' dependent chains overlap."""
    loads, stages = [], []
    for k in range(4):
        b0, b1 = 8 + 2 * k, 9 + 2 * k
        if fmt == "f32":
            loads += [f"ldr q{b0}, [%[w], #{64 * k}]", f"ldr q{b1}, [%[w], #{64 * k + 16}]"]
        elif fmt == "f16":
            loads.append(f"ldr q{b1}, [%[w], #{32 * k}]")
            stages.append([f"fcvtl v{b0}.4s, v{b1}.4h", f"fcvtl2 v{b1}.4s, v{b1}.8h"])
        else:
            loads.append(f"ldr d{b1}, [%[w], #{16 * k}]")
            stages.append([f"sxtl v{b1}.8h, v{b1}.8b", f"sxtl v{b0}.4s, v{b1}.4h", f"sxtl2 v{b1}.4s, v{b1}.8h",
                           f"scvtf v{b0}.4s, v{b0}.4s", f"scvtf v{b1}.4s, v{b1}.4s"])
    conversions = [row[s] for s in range(len(stages[0])) for row in stages] if stages else []
    return loads, conversions


def main_loop(fmt: str) -> list[str]:
    """Instructions of the loop (label 1, branch back while n > 0)."""
    b, conversions = b_loads(fmt)
    first_row = 2 if fmt == "f32" else 1  # loads of weight row 0
    a = [f"ldr q{r}, [%[a{r}], %[off]]" for r in range(8)]
    loads = b[:first_row] + a + b[first_row:]
    counters = ["add %[off], %[off], #16", f"add %[w], %[w], #{4 * ROW_BYTES[fmt]}", "subs %[n], %[n], #1"]
    fmlas = [fmla(k, r, h) for k in range(4) for r in range(8) for h in range(2)]
    # The accumulators live in v16-v31 for the whole loop (acc[r][h] = v(16 + 2r + h)); GCC allows no more than 30
    # asm operands (an in-out one counts twice), so they come and go through memory once per call.
    acc_io = [(f"q{16 + 2 * p}, q{17 + 2 * p}, [%[acc], #{32 * p}]") for p in range(8)]
    return ([f"ldp {x}" for x in acc_io] + ["1:"] + loads + conversions + counters + fmlas + ["b.ne 1b"] +
            [f"stp {x}" for x in acc_io])


def asm_statement(fmt: str, indent: str = "  ") -> str:
    """The C++ asm statement of the main loop; operands as named in f32-gemm-aarch64-neonfma-cortex-a53.h's
    A53MainLoop (acc, ar, w, n) plus a local byte offset `off` into the A rows."""
    lines = [f'{indent}    "{ins}\\n"' for ins in main_loop(fmt)]
    outputs = ['[w] "+r"(w)', '[off] "+r"(off)', '[n] "+r"(n)']
    inputs = ['[acc] "r"(acc)'] + [f'[a{r}] "r"(ar[{r}])' for r in range(8)]
    clobbers = [f'"v{i}"' for i in range(32)] + ['"cc"', '"memory"']
    pad = indent + "      "

    def wrap(items, per_line):
        return (",\n" + pad).join(", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line))

    return (f"{indent}asm volatile(\n" + "\n".join(lines) + "\n" +
            f"{indent}    : " + wrap(outputs, 4) + "\n" +
            f"{indent}    : " + wrap(inputs, 5) + "\n" +
            f"{indent}    : " + wrap(clobbers, 9) + ");")


def main_loop_function(fmt: str) -> str:
    """The A53MainLoop function of a kernel file."""
    return ("// n steps of 4 k: the iteration's loads and conversions, then its 64 FMLAs (see scripts/gemm_asm_a53.py).\n"
            "void main_loop(float32x4_t (&acc)[8][2], const float* const* ar, const char*& w, size_t n) {\n"
            "  size_t off = 0;  // byte offset into the A rows\n"
            + asm_statement(fmt) + "\n}")
