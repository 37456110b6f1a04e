"""onnxstream beside its peers on the same SD1.5 weights, in one invocation: whole 512x512 txt2img per engine.

    python bench/peers.py [--steps 3] [--threads 2] [--engines onnxstream,onnxruntime,sdcpp,sdcpp-lowmem,OnnxStream,OnnxStream-lowmem]

Engines (each run in a fresh process, one after the other, on the same random-weight SD1.5 (torch.manual_seed(0),
the real configs; bench/sd15_pipeline.py builds it), 512x512, Euler, the same step count, guidance 7.5, seed 1
(each engine draws its own noise from it), prompt/negative prompt the same):
  onnxstream         this project, fp16 weights (bench/sd15_pipeline.py's conversion), batch-2 UNet
  onnxruntime        the same pipeline code on the fp32 ONNX exports (convert --onnx-only), CPU provider
  sdcpp              stable-diffusion.cpp (the stable-diffusion-cpp-python sdist, built here), f16 weights,
                     the binding's defaults
  sdcpp-lowmem       the same with its memory options: mmap, flash attention, VAE tiling, and parameters freed
                     as soon as each model is done (free_params_immediately, as its sd-cli does by default)
  OnnxStream         vitoplantamura/OnnxStream's SD1.5 app (built here from a snapshot), its defaults: fp16 UNet
                     with FP16 arithmetic where the CPU has it (AVX2 here), attention slicing, fp16 VAE decoder
  OnnxStream-lowmem  the same app with --rpi-lowmem (its Pi Zero 2 setting): FP32 arithmetic, weights never
                     cached, attention in 16 slices, the W8A8 VAE decoder (calibrated first by its own
                     --decoder-calibrate on the latents of the default run)
Guidance: OnnxStream's app has it fixed at 7 (no option), the others use 7.5; the work per step is the same.

Per engine: text-encoder time (both prompts), UNet time per step (all UNet passes of a step: one batch-2 pass for
onnxstream and onnxruntime, two batch-1 passes for the others), VAE decode time, whole txt2img time (process start
to exit, loading included), peak RSS (VmHWM) of each part and of the whole run, bytes written and read
(/proc/PID/io), all measured from outside the process the same way (bench/peers_run.py).

Everything the peers need is built or converted once into ~/.cache/onnxstream/peers and the pipeline-bench cache
(bench/peers_build.py, bench/peers_models.py); the script first checks its prerequisites and names each missing one.
An engine that cannot be built or run is reported in the table with its error, and the others still run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import textwrap
import traceback
from pathlib import Path

import peers_build
import peers_models
import peers_run
from peers_build import CACHE, Missing, log

ROOT = Path(__file__).resolve().parent.parent
PROMPT, NEGATIVE, SEED, GUIDANCE = "a photo of a cat", "blurry", 1, 7.5
ENGINES = ["onnxstream", "onnxruntime", "sdcpp", "sdcpp-lowmem", "OnnxStream", "OnnxStream-lowmem"]

# Our pipeline (onnxstream model dir, or a dir of ONNX exports run with onnxruntime), parts marked for the monitor.
OURS = textwrap.dedent("""
    import sys
    model, steps, threads, prompt, negative, seed, guidance = sys.argv[1:8]
    print("@@begin load", flush=True)
    from onnxstream.pipelines.stable_diffusion import StableDiffusion
    sd = StableDiffusion(model, threads=int(threads))
    for part in ["text_encoder", "vae_decoder", *sd.unet_batches.values()]:
        sd.part(part)  # sessions opened up front (onnxruntime loads its weights here; onnxstream reads none)
    print("@@end load", flush=True)
    def marked(name, fn):
        def run(*args):
            print(f"@@begin {name}", flush=True)
            out = fn(*args)
            print(f"@@end {name}", flush=True)
            return out
        return run
    sd.encode_prompt, sd.unet, sd.vae_decode = (marked("text", sd.encode_prompt), marked("unet", sd.unet),
                                                marked("vae", sd.vae_decode))
    image = sd(prompt, negative_prompt=negative, steps=int(steps), guidance=float(guidance), sampler="euler",
               seed=int(seed), output_type="np")
    print("finite:", bool((image == image).all()), flush=True)
""")

# stable-diffusion.cpp through its Python binding; its own log lines mark the parts (SDCPP_RULES).
SDCPP = textwrap.dedent("""
    import sys
    site, model, steps, threads, prompt, negative, seed, guidance, lowmem = sys.argv[1:10]
    sys.path.insert(0, site)
    lowmem = lowmem == "1"
    print("@@begin load", flush=True)
    import stable_diffusion_cpp as sdcpp
    from stable_diffusion_cpp import _internals
    if lowmem:  # the binding hard-codes free_params_immediately=False; sd-cli's default (True) frees each model
        new_ctx = _internals.sd_cpp.new_sd_ctx  # once it is done, so the lowest-memory mode sets it
        def new_sd_ctx(params):
            params.contents.free_params_immediately = True
            return new_ctx(params)
        _internals.sd_cpp.new_sd_ctx = new_sd_ctx
    sd = sdcpp.StableDiffusion(model_path=model, n_threads=int(threads), verbose=True,
                               enable_mmap=lowmem, flash_attn=lowmem)
    print("@@end load", flush=True)
    print("@@begin text", flush=True)
    images = sd.generate_image(prompt=prompt, negative_prompt=negative, width=512, height=512,
                               cfg_scale=float(guidance), sample_method="euler", sample_steps=int(steps),
                               seed=int(seed), vae_tiling=lowmem)
    print("@@end other", flush=True)
    print("images:", len(images), flush=True)
""")
SDCPP_RULES = [(re.compile(r"get_learned_condition completed"), [("end", "text"), ("begin", "unet")]),
               (re.compile(r"sampling completed"), [("end", "unet"), ("begin", "vae")]),
               (re.compile(r"decode_first_stage completed"), [("end", "vae")])]
ONNXSTREAM_RULES = [(re.compile(r"^-+\[prompt\]"), [("begin", "text")]),
                    (re.compile(r"^-+\[diffusion\]"), [("end", "text"), ("begin", "unet")]),
                    (re.compile(r"^-+\[decode\]"), [("end", "unet"), ("begin", "vae")]),
                    (re.compile(r"^-+\[save\]"), [("end", "vae")])]
ONNXSTREAM_STEP = re.compile(r"step:\d+\s+(\d+)(?P<ms>ms)")  # (its step times are in ms)


def check_prerequisites(engines) -> dict:
    """Engine -> what is missing for it (empty: ready to build and run)."""
    missing = {e: [] for e in engines}
    need_python = {"onnxstream": ["numpy"], "onnxruntime": ["onnxruntime"],
                   "sdcpp": ["safetensors", "PIL"], "OnnxStream": ["onnx", "onnxsim", "torch", "diffusers"]}
    common = ["torch", "diffusers", "transformers", "onnx"]  # building the shared random-weight pipeline
    for e in engines:
        for mod in common + need_python.get(e.split("-")[0], []):
            try:
                __import__(mod)
            except ImportError:
                missing[e].append(f"python package {mod} (pip install {'pillow' if mod == 'PIL' else mod})")
    if not list((ROOT / "python" / "onnxstream").glob("_core*.so")):
        for e in ("onnxstream", "onnxruntime"):
            if e in missing:
                missing[e].append("the C++ core built in place (cmake ... -DONNXSTREAM_INPLACE=ON && ninja, see "
                                  "HELPERS/README)")
    for e in engines:
        if e.startswith("sdcpp") and not peers_build.sdcpp_site().is_dir():
            for tool in ("cmake", "git"):
                if not shutil.which(tool):
                    missing[e].append(f"{tool} (to build stable-diffusion-cpp-python)")
        if e.startswith("OnnxStream"):
            if not peers_build.onnxstream_binary_if_built():
                for tool in ("cmake", "ninja", "c++", "cc", "git", "ar"):
                    if not shutil.which(tool):
                        missing[e].append(f"{tool} (to build OnnxStream and XNNPACK)")
            if not shutil.which("stdbuf"):
                missing[e].append("stdbuf (coreutils), to read the app's progress as it prints it")
            for repo in (peers_build.ONNXSTREAM_REPO, peers_build.XNNPACK_REPO,
                         *[v[0] for v in peers_build.XNNPACK_DEPS.values()]):
                try:
                    peers_build._mirror(repo)
                except Missing as err:
                    missing[e].append(str(err))
    return missing


def shared_models(steps_needed):
    """The random-weight diffusers pipeline, its ONNX exports and onnxstream's fp16 conversion (sd15_pipeline's
    cache)."""
    sys.path.insert(0, str(ROOT / "python"))
    from onnxstream.pipelines.convert_pipeline import convert_pipeline

    import sd15_pipeline
    from sd15 import converter_revision
    diffusers_dir = sd15_pipeline.CACHE / "sd15-random" / "diffusers"
    if not diffusers_dir.is_dir():
        diffusers_dir.parent.mkdir(parents=True, exist_ok=True)
        log("building the random-weight SD1.5 pipeline")
        sd15_pipeline.build_diffusers_dir(diffusers_dir)
    onnx_dir = diffusers_dir.parent / "onnx"
    if not onnx_dir.is_dir():
        convert_pipeline(diffusers_dir, onnx_dir, onnx_only=True, progress=log)
    converted = diffusers_dir.parent / f"converted-fp16-{converter_revision()}"
    if not converted.is_dir():
        convert_pipeline(onnx_dir, converted, weights="fp16", progress=log)
    return diffusers_dir, onnx_dir, converted


def python_env():
    return {**os.environ, "PYTHONPATH": str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_engine(engine, args, models, work: Path):
    diffusers_dir, onnx_dir, converted = models
    common = [str(args.steps), str(args.threads), PROMPT, NEGATIVE, str(SEED), str(GUIDANCE)]
    if engine in ("onnxstream", "onnxruntime"):
        model = converted if engine == "onnxstream" else onnx_dir
        return peers_run.run(engine, [sys.executable, "-c", OURS, str(model), *common], env=python_env())
    if engine.startswith("sdcpp"):
        site = peers_build.build_sdcpp()
        model = peers_models.sdcpp_model(diffusers_dir)
        lowmem = "1" if engine.endswith("lowmem") else "0"
        return peers_run.run(engine, [sys.executable, "-c", SDCPP, str(site), str(model), *common, lowmem],
                             rules=SDCPP_RULES)
    binary = peers_build.build_onnxstream()
    model = peers_models.onnxstream_model(diffusers_dir, converted / "tokenizer")
    latents = work / "OnnxStream-latents.bin"
    base = ["stdbuf", "-oL", str(binary), "--models-path", str(model), "--prompt", PROMPT, "--neg-prompt",
            NEGATIVE, "--steps", str(args.steps), "--seed", str(SEED), "--sampler", "euler", "--threads",
            str(args.threads), "--download", "never"]
    if engine == "OnnxStream":
        return peers_run.run(engine, base + ["--output", str(work / f"{engine}.png"), "--save-latents",
                                             str(latents)], rules=ONNXSTREAM_RULES, step_re=ONNXSTREAM_STEP)
    range_data = model / "vae_decoder_qu8" / "range_data.txt"
    if not range_data.read_text().strip():  # calibrate its W8A8 decoder, with its own tool, on real latents
        if not latents.is_file():
            raise RuntimeError("the W8A8 VAE needs calibrating on the latents of the default OnnxStream run first")
        log("OnnxStream: calibrating its W8A8 VAE decoder (--decoder-calibrate)")
        cal = peers_run.run("calibrate", base + ["--rpi-lowmem", "--decoder-calibrate", "--decode-latents",
                                                 str(latents), "--output", str(work / "calibrate.png")])
        if cal.returncode != 0 or not range_data.read_text().strip():
            raise RuntimeError(f"--decoder-calibrate failed: {cal.error}")
    return peers_run.run(engine, base + ["--rpi-lowmem", "--output", str(work / f"{engine}.png")],
                         rules=ONNXSTREAM_RULES, step_re=ONNXSTREAM_STEP)


def row(engine, res, steps):
    weights = {"onnxstream": "fp16", "onnxruntime": "fp32 (ONNX)", "sdcpp": "f16", "sdcpp-lowmem": "f16",
               "OnnxStream": "fp32 text enc., fp16 UNet/VAE", "OnnxStream-lowmem": "fp32 text enc., fp16 UNet, W8A8 VAE"}
    if isinstance(res, str):
        return f"| {engine} | {weights[engine]} | not run: {res} |" + " |" * 8
    if res.returncode != 0:
        return f"| {engine} | {weights[engine]} | failed (rc {res.returncode}): {res.error} |" + " |" * 8
    t, p = res.part_time, res.part_peak
    unet = sum(res.step_times) / len(res.step_times) if res.step_times else t.get("unet", 0) / steps
    peaks = " / ".join(f"{p.get(k, 0):.0f}" for k in ("load", "text", "unet", "vae"))
    return (f"| {engine} | {weights[engine]} | {t.get('text', 0):.2f} | {unet:.2f} | {t.get('vae', 0):.2f} | "
            f"{res.wall:.1f} | {peaks} | {res.peak:.0f} | {res.write_bytes / 2**20:.1f} | "
            f"{res.read_bytes / 2**20:.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="sampler steps (OnnxStream's app needs at least 3)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--json", type=Path, help="also write the raw measurements here")
    args = ap.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        sys.exit(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    if args.steps < 3 and any(e.startswith("OnnxStream") for e in engines):
        sys.exit("OnnxStream's app refuses fewer than 3 steps: use --steps 3 or more")
    missing = check_prerequisites(engines)
    for e, what in missing.items():
        for w in what:
            print(f"missing for {e}: {w}", file=sys.stderr)
    if any(what for e, what in missing.items() if e in ("onnxstream", "onnxruntime")) and not any(
            not what for what in missing.values()):
        sys.exit("nothing can run: install what is listed above")
    models = shared_models(args.steps)
    work = CACHE / "runs"
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for e in engines:
        if missing[e]:
            results[e] = "missing " + "; ".join(missing[e])
            continue
        log(f"running {e} ({args.steps} steps, {args.threads} threads)")
        try:
            results[e] = run_engine(e, args, models, work)
        except Exception as err:  # a peer that cannot be built or run is reported, the others still run
            traceback.print_exc()
            results[e] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    print(f"\n{args.steps} steps, 512x512, Euler, {args.threads} threads, one invocation "
          f"(`python bench/peers.py --steps {args.steps}`)\n")
    print("| engine | weights | text encoder s (2 prompts) | UNet s/step | VAE decode s | whole txt2img s | "
          "peak RSS MB: load / text / UNet / VAE | peak RSS MB, whole run | MB written | MB read from disk |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for e in engines:
        print(row(e, results[e], args.steps))
    if args.json:
        args.json.write_text(json.dumps({e: (r if isinstance(r, str) else r.__dict__) for e, r in results.items()},
                                        indent=1, default=str))


if __name__ == "__main__":
    main()
