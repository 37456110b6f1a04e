"""Dithering to a 7-colour panel palette (inky-7.3, saturation 0.5) at 800x480 and 1600x1200: onnxstream's C++
kernel (frame/dither.py, each working space) vs what e-ink frame scripts run today: a straightforward numpy
Floyd-Steinberg (a Python loop over pixels, numpy for the nearest colour and the error), and Pillow's quantize
with Floyd-Steinberg (C; what inky's set_image calls; sRGB, no perceptual space). Each configuration runs in a
fresh process on the same picture; time is the process's CPU time (steady on a shared machine), best of 3
(numpy: 1 run). --callgrind also counts the C++ kernel's instructions (valgrind), the basis of the board estimate.

    PYTHONPATH=python python bench/dither.py [--sizes 800x480,1600x1200] [--callgrind]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

METHODS = ["ours-oklab", "ours-linear", "ours-rgb", "pillow", "numpy-loop"]


def picture(h, w):
    """A smooth colour picture with some noise (the timing does not depend on its content)."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w], np.float32)[:, None, None]
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(7 * x * y + 1)], axis=-1)
    img += np.random.default_rng(0).normal(0, 0.04, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def numpy_loop(pixels, palette):
    """Floyd-Steinberg as e-ink frame scripts write it (sRGB values, RGB distances)."""
    img = pixels.astype(np.float32)
    pal = palette.astype(np.float32)
    h, w, _ = img.shape
    out = np.zeros((h, w), np.uint8)
    for y in range(h):
        for x in range(w):
            old = np.clip(img[y, x], 0, 255)
            idx = int(np.argmin(((pal - old) ** 2).sum(axis=1)))
            out[y, x] = idx
            err = old - pal[idx]
            if x + 1 < w:
                img[y, x + 1] += err * 7 / 16
            if y + 1 < h:
                if x > 0:
                    img[y + 1, x - 1] += err * 3 / 16
                img[y + 1, x] += err * 5 / 16
                if x + 1 < w:
                    img[y + 1, x + 1] += err * 1 / 16
    return out


def run_one(method, w, h):
    from onnxstream.frame.dither import dither
    from onnxstream.frame.panels import PANELS
    pixels, palette = picture(h, w), PANELS["inky-7.3"].palette(0.5)
    if method.startswith("ours-"):
        fn = lambda: dither(pixels, palette, method[5:])  # noqa: E731
    elif method == "pillow":
        from PIL import Image
        p_image = Image.new("P", (1, 1))
        p_image.putpalette(palette.flatten().tolist() + [0, 0, 0] * (256 - len(palette)))
        image = Image.fromarray(pixels)
        fn = lambda: image.quantize(len(palette), palette=p_image, dither=Image.Dither.FLOYDSTEINBERG)  # noqa: E731
    else:
        fn = lambda: numpy_loop(pixels, palette)  # noqa: E731
    runs = 1 if method == "numpy-loop" else 3
    best = float("inf")
    for _ in range(runs):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def callgrind_instructions(w, h, space):
    """Instructions executed inside the C++ kernel for one picture (valgrind --tool=callgrind)."""
    out = f"/tmp/callgrind.dither.{os.getpid()}"
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); import dither as b; "
            f"from onnxstream.frame.dither import dither; from onnxstream.frame.panels import PANELS; "
            f"dither(b.picture({h}, {w}), PANELS['inky-7.3'].palette(0.5), {space!r})")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    "--toggle-collect=*dither_floyd_steinberg*", sys.executable, "-c", code],
                   check=True, capture_output=True, env=os.environ)
    text = subprocess.run(["callgrind_annotate", out], check=True, capture_output=True, text=True).stdout
    os.unlink(out)
    for line in text.splitlines():
        if "PROGRAM TOTALS" in line:
            return int(line.split()[0].replace(",", ""))
    raise RuntimeError("no totals in callgrind output")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="800x480,1600x1200")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "W", "H"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    sizes = [tuple(map(int, s.split("x"))) for s in args.sizes.split(",")]
    print("| picture | method | CPU s | vs ours-oklab |")
    print("|---|---|---|---|")
    for w, h in sizes:
        times = {}
        for method in args.methods.split(","):
            r = subprocess.run([sys.executable, __file__, "--child", method, str(w), str(h)], capture_output=True,
                               text=True, check=True)
            times[method] = json.loads(r.stdout)
            base = times.get("ours-oklab")
            ratio = f"{times[method] / base:.1f}x" if base else ""
            print(f"| {w}x{h} | {method} | {times[method]:.3f} | {ratio} |", flush=True)
    if args.callgrind:
        if not shutil.which("valgrind"):
            sys.exit("--callgrind needs valgrind")
        for w, h in sizes:
            for space in ("oklab", "linear", "rgb"):
                n = callgrind_instructions(w, h, space)
                print(f"{w}x{h} ours-{space}: {n / 1e6:.0f} M instructions in the kernel "
                      f"({n / (w * h):.0f} per pixel)", flush=True)


if __name__ == "__main__":
    main()
