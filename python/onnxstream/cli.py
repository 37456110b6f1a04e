"""Command line: onnxstream convert | run | info | sd | frame. User errors print one line and exit 1; no tracebacks."""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np


def _fail(msg: str) -> int:
    print(f"onnxstream: error: {msg}", file=sys.stderr)
    return 1


def cmd_convert(args) -> int:
    from .converter import convert, parse_input_shape
    shapes = dict(parse_input_shape(t) for t in args.input or [])
    start = time.time()
    log = lambda m: print(f"[{time.time() - start:6.1f}s] {m}", file=sys.stderr)  # noqa: E731
    if Path(args.model).is_dir():  # a whole Stable Diffusion pipeline (diffusers or ONNX exports)
        from .pipelines.convert_pipeline import convert_pipeline
        batches = [int(b) for b in args.unet_batch.split(",")] if args.unet_batch else None
        convert_pipeline(args.model, args.out_dir, weights=args.weights, height=args.height, width=args.width,
                         unet_batches=batches, family=args.family, onnx_only=args.onnx_only, overwrite=args.force,
                         progress=log, allow_pickle=args.allow_pickle, tiny_vae=args.tiny_vae)
    else:
        if args.tiny_vae:
            raise ValueError("--tiny-vae needs a Stable Diffusion pipeline directory, not a single ONNX file")
        convert(args.model, args.out_dir, weights=args.weights, input_shapes=shapes, overwrite=args.force,
                progress=log)
    print(f"wrote {args.out_dir}", file=sys.stderr)
    return 0


def _load_feed(text: str):
    name, sep, path = text.partition("=")
    if not sep:
        raise ValueError(f"--input expects NAME=FILE.npy, got '{text}'")
    if not Path(path).is_file():
        raise ValueError(f"input file {path} does not exist")
    try:
        return name, np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"cannot read {path} as a .npy array: {e}") from None


def cmd_run(args) -> int:
    from .pipelines.images import write_atomic
    from .runtime.executor import Session
    session = Session(args.model_dir, threads=args.threads)
    feeds = dict(_load_feed(t) for t in args.input or [])
    start = time.time()
    outputs = session.run(feeds)
    seconds = time.time() - start
    out = Path(args.output)
    buffer = io.BytesIO()
    np.savez(buffer, **outputs)
    write_atomic(out, buffer.getvalue())  # temp file beside it, fsync, rename
    print(f"ran in {seconds:.2f} s, read {session.bytes_read / 1e6:.1f} MB of weights; wrote {out}", file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    from .graph import load_graph
    g = load_graph(args.model_dir)
    fmt = lambda shape: "x".join("?" if d is None else str(d) for d in shape) or "scalar"  # noqa: E731
    print(f"model: {args.model_dir} (opset {g.opset}, {len(g.nodes)} nodes, weights {g.metadata.get('weights', '?')})")
    for v in g.inputs:
        print(f"input  {v.name}: {v.dtype} {fmt(v.shape)}")
    for v in g.outputs:
        print(f"output {v.name}: {v.dtype} {fmt(v.shape or [])}")
    total = sum(w.nbytes for w in g.weights)
    print(f"weights: {len(g.weights)} tensors, {total / 1e6:.1f} MB; largest {max((w.nbytes for w in g.weights), default=0) / 1e6:.1f} MB")
    counts = {}
    for n in g.nodes:
        counts[n.op] = counts.get(n.op, 0) + 1
    print("ops: " + ", ".join(f"{op} x{c}" for op, c in sorted(counts.items())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="onnxstream", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="convert an ONNX model into an onnxstream model directory")
    c.add_argument("model", help="the .onnx file (external data beside it is found automatically)")
    c.add_argument("out_dir", help="the model directory to create")
    c.add_argument("--weights", choices=["fp32", "fp16", "int8"], default="fp32",
                   help="storage format of the weights (int8: MatMul/Gemm/Conv weights with per-channel scales)")
    c.add_argument("--input", action="append", metavar="NAME=DIMS",
                   help="fix a dynamic input shape, e.g. sample=2x4x64x64 (repeatable)")
    c.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    c.add_argument("--height", type=int, help="pipelines: image height, any multiple of 8 from 64 (fixed at convert "
                                              "time; default sample_size*8)")
    c.add_argument("--width", type=int, help="pipelines: image width, any multiple of 8 from 64, e.g. 800 for an "
                                             "800x480 panel")
    c.add_argument("--unet-batch", help="pipelines: UNet batch sizes, e.g. 2 (guidance) or 1 (turbo) or 1,2,4 "
                                        "(sd --num N runs one batch-2N pass per step with guidance, N without)")
    c.add_argument("--family", choices=["sd1", "sd2", "sd-turbo", "sdxl", "sdxl-turbo"], help="pipelines: override the guessed family")
    c.add_argument("--onnx-only", action="store_true", help="pipelines: keep the ONNX exports, do not convert")
    c.add_argument("--allow-pickle", action="store_true",
                   help="pipelines: also load pickle checkpoints (.bin/.ckpt/.pt), which can run code: trusted files only")
    c.add_argument("--tiny-vae", metavar="DIR_OR_HUB_ID", help="pipelines: also convert TAESD (diffusers "
                   "AutoencoderTiny, e.g. madebyollin/taesd or a local copy) beside the full VAE (sd --decoder taesd)")
    c.set_defaults(func=cmd_convert)
    r = sub.add_parser("run", help="run a converted model on .npy inputs")
    r.add_argument("model_dir")
    r.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input (repeatable)")
    r.add_argument("--output", default="outputs.npz", help="where to write the outputs (.npz)")
    r.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    r.set_defaults(func=cmd_run)
    i = sub.add_parser("info", help="describe a converted model")
    i.add_argument("model_dir")
    i.set_defaults(func=cmd_info)
    from .pipelines.cli_sd import add_parser as add_sd_parser
    add_sd_parser(sub)
    from .frame.cli import add_parser as add_frame_parser
    add_frame_parser(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # (Ctrl-C: the run's finally clauses stopped its threads; outputs are atomic)
        _fail("interrupted")
        return 130
    except (ValueError, OSError, KeyError, NotImplementedError, IndexError, MemoryError) as e:
        if os.environ.get("ONNXSTREAM_TRACEBACK"):
            raise
        return _fail(str(e))


if __name__ == "__main__":
    sys.exit(main())
