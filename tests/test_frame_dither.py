"""The dithering kernel (cpp/ops/dither.cc) against a straightforward Python implementation of the same
Floyd-Steinberg algorithm, pixel by pixel in float32 (bit-exact, in all three working spaces); against Pillow's
quantize (its integer FS: not bit-exact, so the two must reproduce the picture equally well); properties (only
palette colours, mean colour kept, a palette colour stays itself); and the same indices on aarch64 and armv7
under QEMU as on this machine."""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from onnxstream import _core
from onnxstream.frame.dither import SPACES, dither, kernel_inputs, oklab, render, srgb_to_linear
from onnxstream.frame.panels import PANELS

ROOT = Path(__file__).resolve().parent.parent
F = np.float32


# ---------------------------------------------------------------- the reference: one pixel at a time, float32

def ref_cube_root(x):
    if not x > F(1e-30):
        return F(0)
    bits = np.array([x], np.float32).view(np.uint32)[0] // np.uint32(3) + np.uint32(709921077)
    y = np.array([bits], np.uint32).view(np.float32)[0]
    for _ in range(3):
        y = (F(2) * y + x / (y * y)) * (F(1) / F(3))
    return y


M1 = [[0.4122214708, 0.5363325363, 0.0514459929], [0.2119034982, 0.6806995451, 0.1073969566],
      [0.0883024619, 0.2817188376, 0.6299787005]]
M2 = [[0.2104542553, 0.7936177850, -0.0040720468], [1.9779984951, -2.4285922050, 0.4505937099],
      [0.0259040371, 0.7827717662, -0.8086757660]]


def ref_oklab(rgb):
    r, g, b = rgb
    lms = [ref_cube_root(F(m[0]) * r + F(m[1]) * g + F(m[2]) * b) for m in M1]
    return [F(m[0]) * lms[0] + F(m[1]) * lms[1] + F(m[2]) * lms[2] for m in M2]


def ref_dither(pixels, lut, is_oklab, palette):
    """Floyd-Steinberg as textbooks write it: a whole error image, raster order, clamp to the palette's range."""
    h, w, _ = pixels.shape
    pal = [[F(v) for v in row] for row in palette]
    lo = [min(p[c] for p in pal) for c in range(3)]
    hi = [max(p[c] for p in pal) for c in range(3)]
    err = [[[F(0)] * 3 for _ in range(w + 2)] for _ in range(h + 1)]  # column x at index x + 1
    out = np.zeros((h, w), np.uint8)
    for y in range(h):
        for x in range(w):
            work = [F(lut[c][pixels[y, x, c]]) for c in range(3)]
            if is_oklab:
                work = ref_oklab(work)
            v = [min(max(work[c] + err[y][x + 1][c], lo[c]), hi[c]) for c in range(3)]
            dists = [(v[0] - p[0]) * (v[0] - p[0]) + (v[1] - p[1]) * (v[1] - p[1]) + (v[2] - p[2]) * (v[2] - p[2])
                     for p in pal]
            best = min(range(len(pal)), key=lambda k: (dists[k], k))
            out[y, x] = best
            for c in range(3):
                e = v[c] - pal[best][c]
                err[y][x + 2][c] += e * F(7 / 16)
                err[y + 1][x][c] += e * F(3 / 16)
                err[y + 1][x + 1][c] += e * F(5 / 16)
                err[y + 1][x + 2][c] += e * F(1 / 16)
    return out


# ---------------------------------------------------------------- pictures and palettes

def smooth_picture(h, w, seed=0):
    """Gradients, a disc, saturated bars and noise: every region a dither meets."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(7 * x * y + 1)], axis=-1)
    img[(x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.05] = [0.9, 0.2, 0.1]
    img[:, : w // 8] = [[0.1, 0.3, 0.9]]
    img = img + rng.normal(0, 0.04, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


PALETTES = {
    "inky-7.3 s=0.5": PANELS["inky-7.3"].palette(0.5),
    "spectra s=0": PANELS["spectra-13.3"].palette(0.0),
    "spectra measured": PANELS["spectra-13.3"].palette(1.0),
    "16 random": np.vstack([[0, 0, 0], [255, 255, 255],
                            np.random.default_rng(3).integers(0, 256, (14, 3))]).astype(np.uint8),
}


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("name", sorted(PALETTES))
def test_kernel_equals_python_reference(space, name):
    pixels = smooth_picture(40, 56, seed=len(name))
    lut, is_oklab, values = kernel_inputs(PALETTES[name], space)
    expected = ref_dither(pixels, lut, is_oklab, values)
    got = dither(pixels, PALETTES[name], space)
    assert got.dtype == np.uint8 and got.shape == (40, 56)
    assert np.array_equal(got, expected), f"{(got != expected).sum()} of {got.size} pixels differ"
    assert len(np.unique(got)) >= 3  # a real dither, not one colour


def test_oklab_conversion_matches_reference_and_known_values():
    rng = np.random.default_rng(1)
    rgb = rng.random((200, 3)).astype(np.float32)
    got = oklab(rgb)
    expected = np.array([ref_oklab([F(v) for v in px]) for px in rgb], np.float32)
    assert np.array_equal(got, expected)
    # Ottosson's published values: white -> (1, 0, 0); linear red -> (0.6279554, 0.2248631, 0.1258463)
    np.testing.assert_allclose(oklab(np.array([[1, 1, 1], [1, 0, 0]], np.float32)),
                               [[1, 0, 0], [0.6279554, 0.2248631, 0.1258463]], atol=2e-4)


def blur(img, r=3):
    """Box blur (2r+1)^2: what an eye a little away from the panel sees."""
    k = 2 * r + 1
    c = np.pad(img, ((r + 1, r), (r + 1, r), (0, 0)), mode="edge").cumsum(0).cumsum(1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def test_rgb_space_reproduces_the_picture_like_pillow():
    """Pillow's Floyd-Steinberg (integer errors, a colour cache) is not bit-identical to the textbook one, so the
    two are compared by how well each reproduces the picture seen from a little away."""
    Image = pytest.importorskip("PIL.Image")
    pixels = smooth_picture(120, 160)
    palette = PALETTES["inky-7.3 s=0.5"]
    p_image = Image.new("P", (1, 1))
    p_image.putpalette(palette.flatten().tolist() + [0, 0, 0] * (256 - len(palette)))
    pillow = np.asarray(Image.fromarray(pixels).quantize(len(palette), palette=p_image,
                                                          dither=Image.Dither.FLOYDSTEINBERG))
    ours = dither(pixels, palette, "rgb")
    target = blur(pixels.astype(np.float64))
    err_ours = np.abs(blur(render(ours, palette).astype(np.float64)) - target).mean()
    err_pillow = np.abs(blur(render(pillow, palette).astype(np.float64)) - target).mean()
    print(f"mean abs error of the blurred picture: ours {err_ours:.2f}, Pillow {err_pillow:.2f} (of 255)")
    assert err_ours <= 1.1 * err_pillow + 0.5
    assert (ours == pillow).mean() > 0.3  # same algorithm: many pixels agree outright


def srgb_encode(linear):
    v = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.maximum(linear, 0) ** (1 / 2.4) - 0.055)
    return np.rint(v * 255).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("space", SPACES)
def test_properties(space):
    """Only palette colours come out; the mean of the working space is kept (error diffusion moves error, it
    does not lose it, except at the picture's edges)."""
    rng = np.random.default_rng(5)
    palette = PALETTES["inky-7.3 s=0.5"]
    lut, is_oklab, values = kernel_inputs(palette, space)
    # pictures inside the palette's gamut: 8x8 blocks of random mixtures of palette colours
    weights = rng.dirichlet(np.ones(len(palette)) * 0.3, size=(12, 16)).repeat(8, 0).repeat(8, 1)  # [96, 128, K]
    if space == "rgb":
        pixels = np.rint(weights @ palette.astype(np.float64)).astype(np.uint8)
    else:
        pixels = srgb_encode(weights @ srgb_to_linear(palette / 255.0))
    work = lut[np.arange(3), pixels]                                   # [96, 128, 3] working values
    if is_oklab:
        work = oklab(work)
    out = dither(pixels, palette, space)
    assert out.max() < len(palette)
    mean_in, mean_out = work.reshape(-1, 3).mean(0), values[out].reshape(-1, 3).mean(0)
    scale = np.ptp(values, axis=0)
    print(space, "mean in", mean_in, "mean out", mean_out, "range", scale)
    assert np.all(np.abs(mean_out - mean_in) <= 0.01 * scale)
    # black and white pictures are the panel's black and white; with pure colours (whose white is 255, so the
    # mapping onto the panel's black and white changes nothing) every colour stays itself
    for colour, k in (((0, 0, 0), 0), ((255, 255, 255), 1)):
        assert np.all(dither(np.tile(np.uint8(colour), (16, 24, 1)), palette, space) == k)
    pure = PALETTES["spectra s=0"]
    for k, colour in enumerate(pure):
        assert np.all(dither(np.tile(colour, (16, 24, 1)), pure, space) == k)


def test_bad_arguments_are_clear_errors():
    palette = PALETTES["inky-7.3 s=0.5"]
    with pytest.raises(ValueError, match="H x W x 3"):
        dither(np.zeros((4, 4), np.uint8), palette)
    with pytest.raises(ValueError, match="unknown dithering space"):
        dither(np.zeros((4, 4, 3), np.uint8), palette, "cielab")
    lut, is_oklab, values = kernel_inputs(palette)
    with pytest.raises(ValueError, match="K <= 16"):
        _core.dither_floyd_steinberg(np.zeros((4, 4, 3), np.uint8), lut, False, np.zeros((17, 3), np.float32),
                                     np.empty((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\[H, W\] uint8"):
        _core.dither_floyd_steinberg(np.zeros((4, 4, 3), np.uint8), lut, False, values, np.empty((4, 5), np.uint8))


# ---------------------------------------------------------------- the same indices on ARM (QEMU)

CROSS = {"aarch64": ("aarch64-linux-gnu-g++", ["qemu-aarch64", "-cpu", "cortex-a53"]),
         "armv7": ("arm-linux-gnueabihf-g++", ["qemu-arm", "-cpu", "cortex-a7"])}


@pytest.mark.parametrize("target", sorted(CROSS))
def test_same_indices_under_qemu(target, tmp_path):
    cxx, qemu = CROSS[target]
    if not shutil.which(cxx) or not shutil.which(qemu[0]):
        pytest.skip(f"needs {cxx} and {qemu[0]} (apt-get install g++-{cxx[:-4]} qemu-user)")
    binary = tmp_path / "dither_runner"
    subprocess.run([cxx, "-O2", "-std=c++17", "-static", "-ffp-contract=off", f"-I{ROOT / 'cpp'}",
                    ROOT / "tests" / "kernels" / "dither_runner.cc", ROOT / "cpp" / "ops" / "dither.cc",
                    "-o", binary], check=True)
    pixels = smooth_picture(48, 64, seed=9)
    for space in SPACES:
        for name in ("inky-7.3 s=0.5", "16 random"):
            lut, is_oklab, values = kernel_inputs(PALETTES[name], space)
            job = tmp_path / "job.bin"
            job.write_bytes(struct.pack("<iiii", 48, 64, len(values), int(is_oklab)) + pixels.tobytes()
                            + lut.tobytes() + values.tobytes())
            out = subprocess.run([*qemu, binary, job], capture_output=True, timeout=120, check=True).stdout
            expected = dither(pixels, PALETTES[name], space)
            assert np.array_equal(np.frombuffer(out, np.uint8).reshape(48, 64), expected), (target, space, name)
