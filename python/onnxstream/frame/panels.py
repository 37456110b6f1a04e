"""E-ink panels: size, colours in the driver's order, and the default saturation.

Colours are Pimoroni's inky library's (inky 2.6.0): `pure` is what the driver calls each colour
(DESATURATED_PALETTE), `measured` is what the panel shows under neutral light (SATURATED_PALETTE). Like
inky's `set_image(image, saturation)`, dithering aims at the blend saturation * measured + (1 - saturation) *
pure: 0 pretends the panel shows pure colours (vivid, more pixels snap to a solid colour), 1 is the measured
panel (faithful tones, but Spectra 6 panels look washed out: their measured white is a light grey).
Index i of a panel image is colour i here; `codes` are the driver's colour numbers for them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# black, white, green, blue, red, yellow, orange: the 7-colour ACeP panels (inky_ac073tc1a.py, inky_uc8159.py)
ACEP_PURE = [(0, 0, 0), (255, 255, 255), (0, 255, 0), (0, 0, 255), (255, 0, 0), (255, 255, 0), (255, 140, 0)]
AC073TC1A_MEASURED = [(0, 0, 0), (217, 242, 255), (3, 124, 76), (27, 46, 198), (245, 80, 34), (255, 255, 68),
                      (239, 121, 44)]
UC8159_MEASURED = [(57, 48, 57), (255, 255, 255), (58, 91, 70), (61, 59, 94), (156, 72, 75), (208, 190, 71),
                   (177, 106, 73)]
# black, white, yellow, red, blue, green: Spectra 6 (inky_el133uf1.py, inky_e673.py; driver codes skip 4)
SPECTRA_PURE = [(0, 0, 0), (255, 255, 255), (255, 255, 0), (255, 0, 0), (0, 0, 255), (0, 255, 0)]
SPECTRA_MEASURED = [(0, 0, 0), (161, 164, 165), (208, 190, 71), (156, 72, 75), (61, 59, 94), (58, 91, 70)]


@dataclass(frozen=True)
class Panel:
    name: str
    width: int
    height: int
    pure: tuple
    measured: tuple
    codes: tuple            # driver colour number of each palette index
    saturation: float       # default --saturation
    description: str

    @property
    def size(self):
        return self.width, self.height

    def palette(self, saturation: float) -> np.ndarray:
        """[K, 3] uint8: the colours dithering aims at, blended as inky's _palette_blend (truncated to int)."""
        s = float(saturation)
        return np.array([[int(m * s + p * (1.0 - s)) for m, p in zip(mc, pc)]
                         for mc, pc in zip(self.measured, self.pure)], dtype=np.uint8)


def _acep(name, w, h, measured, description):
    return Panel(name, w, h, tuple(ACEP_PURE), tuple(measured), tuple(range(7)), 0.5, description)


def _spectra(name, w, h, description):
    # Spectra users find inky's default 0.5 washes colours out to grey (pimoroni/inky#225, InkyPi#508): 0 here.
    return Panel(name, w, h, tuple(SPECTRA_PURE), tuple(SPECTRA_MEASURED), (0, 1, 2, 3, 5, 6), 0.0, description)


PANELS = {p.name: p for p in [
    _acep("inky-7.3", 800, 480, AC073TC1A_MEASURED, 'Inky Impression 7.3" (7-colour ACeP, AC073TC1A)'),
    _acep("inky-5.7", 600, 448, UC8159_MEASURED, 'Inky Impression 5.7" (7-colour ACeP, UC8159)'),
    _acep("inky-4", 640, 400, UC8159_MEASURED, 'Inky Impression 4" (7-colour ACeP, UC8159)'),
    _spectra("spectra-7.3", 800, 480, 'Inky Impression 7.3" 2025 edition (Spectra 6, E673)'),
    _spectra("spectra-13.3", 1600, 1200, 'Inky Impression 13.3" (Spectra 6, EL133UF1)'),
]}


def panel_from_name(text: str) -> Panel:
    """A panel name above, or WxH (a panel of that size with the 7-colour ACeP colours)."""
    if text in PANELS:
        return PANELS[text]
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m:
        raise ValueError(f"unknown panel {text!r}: use one of {', '.join(PANELS)} or WxH (e.g. 800x480)")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 8 or h < 8:
        raise ValueError(f"panel size {w}x{h} is too small")
    return _acep(text, w, h, AC073TC1A_MEASURED, "a panel with the 7-colour ACeP colours")


def panel_for_inky(display) -> Panel:
    """The panel of an inky driver object (what inky.auto() detected), by driver module and resolution."""
    module = type(display).__module__.rsplit(".", 1)[-1]
    size = tuple(display.resolution)
    by_driver = {("inky_ac073tc1a", (800, 480)): "inky-7.3", ("inky_uc8159", (600, 448)): "inky-5.7",
                 ("inky_uc8159", (640, 400)): "inky-4", ("inky_e673", (800, 480)): "spectra-7.3",
                 ("inky_el133uf1", (1600, 1200)): "spectra-13.3"}
    name = by_driver.get((module, size))
    if name is None:
        raise ValueError(f"the detected inky display ({module}, {size[0]}x{size[1]}) is not a colour panel "
                         f"onnxstream frame knows ({', '.join(PANELS)})")
    return PANELS[name]
