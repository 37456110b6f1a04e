"""Putting the panel image on the panel, with Pimoroni's `inky` library (pip install inky; SPI and I2C on).

inky.auto() reads the panel type from the EEPROM on the board; we hand the driver our already dithered
picture as a palette ("P") image, so it skips its own quantizer: the 7-colour drivers copy the indices as they
are, the Spectra 6 drivers map our six pure colours onto their colour codes without dithering again.
"""
from __future__ import annotations

import numpy as np

from .panels import Panel, panel_for_inky

KINDS = ("auto", "inky", "none")


class InkyDisplay:
    def __init__(self):
        from inky.auto import auto  # raises ImportError without inky (or its gpiod/spidev/smbus2)
        self.driver = auto()        # raises RuntimeError when no EEPROM answers: no panel attached
        self.panel = panel_for_inky(self.driver)

    def show(self, indices: np.ndarray, panel: Panel) -> None:
        from PIL import Image  # an inky dependency
        h, w = indices.shape
        image = Image.frombytes("P", (w, h), np.ascontiguousarray(indices, np.uint8).tobytes())
        image.putpalette(np.asarray(panel.pure, np.uint8).flatten().tolist())
        self.driver.set_image(image)
        self.driver.show()


def open_display(kind: str, log):
    """-> an InkyDisplay, or None for --display none (and for auto when no panel is found)."""
    if kind == "none":
        return None
    try:
        display = InkyDisplay()
    except Exception as e:  # no inky, no gpiod/SPI, no EEPROM: why, in one line
        why = f"{type(e).__name__}: {e}".splitlines()[0]
        if kind == "inky":
            raise ValueError(f"--display inky: cannot open the panel with Pimoroni's inky library ({why}); "
                             f"install it with `pip install inky`, enable SPI and I2C (raspi-config), "
                             f"or use --display none") from None
        log(f"display: no inky panel found ({why}); pictures are only saved (--display none to skip looking)")
        return None
    log(f"display: {display.panel.description} found by inky.auto()")
    return display
