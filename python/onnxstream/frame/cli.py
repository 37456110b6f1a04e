"""`onnxstream frame`: a new picture on an e-ink panel every few hours, forever (or one, --once).

Each picture: a prompt drawn from the prompts file by the picture's seed (prompts.py), Stable Diffusion at the
panel's own size with a checkpoint after every step (picture.py), a full-colour PNG and a panel image dithered
to the panel's colours (dither.py), shown with the inky library (display.py). What survives a power cut lives in
--state-dir: the schedule (schedule.py) and the checkpoint of the picture in progress. Logs: one plain line per
step and per picture on stdout, flushed (the journal reads them as they come).
"""
from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

from ..schedulers import SAMPLERS
from . import memory, picture
from .dither import SPACES
from .display import KINDS, open_display
from .panels import PANELS, panel_from_name
from .prompts import Prompts
from .schedule import Schedule, parse_every

DEFAULT_STATE = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "onnxstream" / "frame"
NICE = 10


def add_parser(sub):
    f = sub.add_parser("frame", help="e-ink picture frame: a new picture on a schedule, shown on the panel")
    f.add_argument("--model", required=True, help="a pipeline converted at the panel's size (onnxstream convert)")
    f.add_argument("--prompts", required=True, help="text file of prompt templates, one per line "
                                                    "({a|b} choices, __wildcard__ files in wildcards/ beside it)")
    f.add_argument("--every", default="3h", help="a new picture this often: 3h, 90m, 1h30m, 45s (default 3h)")
    f.add_argument("--panel", help=f"{', '.join(PANELS)} or WxH (default: the detected panel, else inky-7.3)")
    f.add_argument("--display", choices=KINDS, default="auto",
                   help="inky: show each picture with the inky library; auto: when a panel is found; none: save only")
    f.add_argument("--output", default="frame-pictures", help="folder for the pictures (default ./frame-pictures)")
    f.add_argument("--state-dir", default=str(DEFAULT_STATE), help=f"schedule and checkpoint (default {DEFAULT_STATE})")
    f.add_argument("--steps", type=int, default=None, help="sampling steps (default 20; sd-turbo: 1)")
    f.add_argument("--guidance", type=float, default=None, help="guidance scale (default 7.5; sd-turbo: 0)")
    f.add_argument("--sampler", default="euler", help=f"one of {', '.join(SAMPLERS)}")
    f.add_argument("--decoder", choices=["vae", "taesd"], default="vae",
                   help="the full VAE (default) or TAESD (convert --tiny-vae): about 10x faster, softer detail")
    f.add_argument("--seed", type=int, default=None,
                   help="seed of picture 1; picture n uses seed + n - 1 (default: random, kept in the state)")
    f.add_argument("--saturation", type=float, default=None,
                   help="0..1 as inky's set_image: 0 aims at the pure colours (vivid), 1 at the panel's measured "
                        "ones (default 0.5; Spectra panels 0)")
    f.add_argument("--dither", choices=SPACES, default="oklab", help="dithering space (default oklab)")
    f.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    f.add_argument("--once", action="store_true", help="make one picture now (finishing an interrupted one) and exit")
    f.add_argument("--install-systemd", action="store_true",
                   help="write a systemd unit running this command at boot, print how to enable it, and exit")
    f.set_defaults(func=cmd_frame)


def clock(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def log(message: str) -> None:
    print(f"{clock()} {message}", flush=True)


def unit_argv(args) -> list[str]:
    """The command line of the systemd unit: these arguments with absolute paths, without --once."""
    argv = ["--model", str(Path(args.model).resolve()), "--prompts", str(Path(args.prompts).resolve()),
            "--every", args.every, "--display", args.display, "--output", str(Path(args.output).resolve()),
            "--state-dir", str(Path(args.state_dir).resolve()), "--sampler", args.sampler, "--dither", args.dither,
            "--decoder", args.decoder]
    for name in ("panel", "steps", "guidance", "seed", "saturation", "threads"):
        if getattr(args, name) is not None:
            argv += [f"--{name}", str(getattr(args, name))]
    return argv


def lock_state(state_dir: Path):
    """One frame per state dir: a second one would overwrite the schedule and checkpoint."""
    import fcntl
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = open(state_dir / "lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ValueError(f"another onnxstream frame is running with --state-dir {state_dir}") from None
    return handle


def remove_stale_temps(*folders: Path) -> None:
    """Temp files of atomic writes cut off by a power loss (write_atomic names them .NAME.tmp-PID)."""
    for folder in folders:
        for path in folder.glob(".*.tmp-*"):
            path.unlink(missing_ok=True)


def written_bytes() -> int:
    """Bytes this process has sent to storage so far (/proc/self/io write_bytes; 0 where unavailable)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def choose_panel(args, display):
    if args.panel is None:
        return display.panel if display else PANELS["inky-7.3"]
    panel = panel_from_name(args.panel)
    if display and display.panel.size != panel.size:
        raise ValueError(f"--panel {args.panel} is {panel.width}x{panel.height}, but inky found "
                         f"{display.panel.description} ({display.panel.width}x{display.panel.height})")
    return panel


def check_size(sd, panel, model_dir) -> None:
    if (sd.width, sd.height) != panel.size:
        w, h = panel.size
        raise ValueError(f"the model in {model_dir} makes {sd.width}x{sd.height} pictures, the {panel.name} panel is "
                         f"{w}x{h}; pictures are made at the panel's own size, so convert the model for it: "
                         f"onnxstream convert DIFFUSERS_DIR {Path(model_dir).name}-{w}x{h} --width {w} --height {h}")


def cmd_frame(args) -> int:
    every = parse_every(args.every)
    prompts = Prompts(args.prompts)
    prompts.check()
    if args.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {args.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if args.saturation is not None and not 0 <= args.saturation <= 1:
        raise ValueError(f"--saturation must be between 0 and 1, got {args.saturation}")
    model_dir = Path(args.model)
    from ..pipelines.stable_diffusion import StableDiffusion
    sd = StableDiffusion(model_dir, threads=args.threads)  # reads the manifest only: weights stream per step
    sd.autoencoder(args.decoder)  # at start-up, not hours later: --decoder taesd needs a model with TAESD
    if args.install_systemd:
        if args.panel:
            check_size(sd, panel_from_name(args.panel), model_dir)
        from .systemd import install
        install(unit_argv(args))
        return 0

    state_dir, output = Path(args.state_dir), Path(args.output)
    lock = lock_state(state_dir)  # noqa: F841 (held until the process exits)
    output.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(state_dir, output)
    log(memory.check(model_dir))
    os.nice(max(0, NICE - os.nice(0)))  # a frame never competes with what else the board does
    display = open_display(args.display, log)
    panel = choose_panel(args, display)
    check_size(sd, panel, model_dir)
    saturation = panel.saturation if args.saturation is None else args.saturation
    schedule = Schedule.load(state_dir, args.seed)
    log(f"frame: {panel.description}, {panel.width}x{panel.height}, saturation {saturation}, a picture every "
        f"{picture.format_duration(every)}; model {model_dir}; pictures in {output}; state in {state_dir}")

    while True:
        before = written_bytes()
        if schedule.current is None:
            wait = 0.0 if args.once else schedule.seconds_to_wait(every)
            if wait > 0:
                log(f"next picture ({schedule.number}) at {clock(time.time() + wait)}; "
                    f"holding {memory.rss_mb() or 0:.0f} MB meanwhile")
            while wait > 0:
                time.sleep(min(wait, 60.0))  # wake up now and then: the clock may be set meanwhile (NTP)
                wait = schedule.seconds_to_wait(every)
            seed = schedule.seed_of(schedule.number)
            template, prompt = prompts.choose(seed)
            schedule.current = dict(number=schedule.number, seed=seed, template=template, prompt=prompt,
                                    started=time.time(), steps=args.steps, guidance=args.guidance,
                                    sampler=args.sampler, decoder=args.decoder)
            schedule.save(state_dir)
        job = schedule.current
        log(f"picture {job['number']}: seed {job['seed']}, prompt {job['prompt']!r}")
        sd = sd or StableDiffusion(model_dir, threads=args.threads)
        done = picture.make(sd, job, output, state_dir, panel, saturation, args.dither, log)
        sd = None  # its open sessions hold ~150 MB of buffers: not kept for the hours until the next picture
        gc.collect()
        if display:
            t = time.time()
            display.show(done["indices"], panel)
            log(f"picture {job['number']}: on the panel ({time.time() - t:.0f} s)")
        peak = memory.peak_rss_mb()
        note = memory.record(model_dir, peak) if peak else None
        if note:
            log(note)
        schedule.finish(every, dict(number=job["number"], seed=job["seed"], file=done["colour"].name))
        schedule.save(state_dir)
        (state_dir / picture.CHECKPOINT).unlink(missing_ok=True)
        mb = (written_bytes() - before) / 1e6
        next_at = "" if args.once else f"; next at {clock(max(schedule.due, time.time()))}"
        log(f"picture {job['number']} done in {picture.format_duration(done['seconds'])}: {done['colour']} and "
            f"{done['panel'].name} (dithered in {done['dither_seconds']:.2f} s); wrote {mb:.3f} MB to disk; "
            f"peak RSS {peak or 0:.0f} MB{next_at}")
        if args.once:
            return 0


if __name__ == "__main__":
    from ..cli import main
    sys.exit(main(["frame", *sys.argv[1:]]))
