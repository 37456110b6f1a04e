"""Stand-ins for a Raspberry Pi's hardware modules under Pimoroni's real inky drivers, the way inky's own tests do
it (their tests/conftest.py replaces gpiod, gpiodevice, smbus2 and spidev in sys.modules), plus an EEPROM that
names the panel, a busy pin that behaves like the panel's, and an SPI bus that records every transfer.

    python tests/inky_hardware.py VARIANT SPI_LOG frame --display inky ...   # onnxstream's CLI on this hardware
    python tests/inky_hardware.py VARIANT SPI_LOG show INDICES.npy PANEL     # display.InkyDisplay().show alone

VARIANT: the EEPROM's display variant (inky/eeprom.py: 20 = 7.3" ACeP AC073TC1A, 21 = 13.3" Spectra EL133UF1).
SPI_LOG: written at exit, JSON lines {"dc": data/command pin, "cs": [chip-select pins held low], "data": hex}.
"""
import atexit
import json
import struct
import sys
import time
import types
from unittest import mock

SIZES = {20: (800, 480), 21: (1600, 1200)}
DC_PIN, BUSY_PIN, CS_PINS = 22, 17, {7, 8, 16, 26}  # inky's pins (BCM numbers)
REFRESH = 0x12  # the DRF command of both drivers


class Gpio:
    """The line request inky gets from gpiod: remembers each output. The busy pin reads 'idle' (ACeP: low,
    Spectra: high), except once right after a refresh command on a Spectra panel, which the driver waits for."""

    def __init__(self, active, inactive, spectra):
        self.active, self.inactive, self.spectra = active, inactive, spectra
        self.values, self.busy_pulse = {}, False

    def set_value(self, pin, value):
        self.values[pin] = value

    def get_value(self, pin):
        if pin != BUSY_PIN:
            return self.values.get(pin, self.inactive)
        if self.busy_pulse:
            self.busy_pulse = False
            return self.inactive
        return self.active if self.spectra else self.inactive


class SpiBus:
    def __init__(self, gpio, log):
        self.gpio, self.log = gpio, log

    def transfer(self, data):
        dc = int(self.gpio.values.get(DC_PIN) == self.gpio.active)
        low = sorted(p for p, v in self.gpio.values.items() if p in CS_PINS and v != self.gpio.active)
        data = bytes(bytearray(data))
        self.log.append({"dc": dc, "cs": low, "data": data.hex()})
        if self.gpio.spectra and dc == 0 and data == bytes([REFRESH]):
            self.gpio.busy_pulse = True

    xfer = xfer2 = xfer3 = writebytes = writebytes2 = transfer

    def open(self, bus, device):
        pass


def install(variant: int, log_path: str) -> None:
    log = []
    gpiod = mock.MagicMock()
    gpiod.line.Value.ACTIVE, gpiod.line.Value.INACTIVE = "ACTIVE", "INACTIVE"
    gpio = Gpio("ACTIVE", "INACTIVE", spectra=variant == 21)
    gpiodevice = mock.MagicMock()
    chip = gpiodevice.find_chip_by_platform.return_value
    chip.line_offset_from_id.side_effect = lambda pin: pin  # BCM numbers as line offsets
    chip.request_lines.return_value = gpio
    spidev = mock.MagicMock()
    spidev.SpiDev.return_value = SpiBus(gpio, log)

    class SMBus:  # the EEPROM at 0x50: width, height, colour, PCB variant, display variant, write time
        def __init__(self, bus):
            pass

        def write_i2c_block_data(self, address, register, values):
            pass

        def read_i2c_block_data(self, address, register, length):
            w, h = SIZES[variant]
            return list(struct.pack("<HHBBB22p", w, h, 5, 12, variant, b"2026-01-01 00:00:00"))[:length]

    sys.modules.update({"gpiod": gpiod, "gpiod.line": gpiod.line, "gpiodevice": gpiodevice,
                        "gpiodevice.platform": mock.MagicMock(), "spidev": spidev,
                        "smbus2": mock.MagicMock(SMBus=SMBus)})
    import inky.inky_ac073tc1a
    import inky.inky_el133uf1
    for module in (inky.inky_ac073tc1a, inky.inky_el133uf1):  # no real reset pulses and refresh waits
        module.time = types.SimpleNamespace(sleep=lambda seconds: None, monotonic=time.monotonic)

    def dump():
        with open(log_path, "w") as f:
            f.write("\n".join(json.dumps(entry) for entry in log))

    atexit.register(dump)


if __name__ == "__main__":
    install(int(sys.argv[1]), sys.argv[2])
    if sys.argv[3] == "show":
        import numpy as np

        from onnxstream.frame.display import InkyDisplay
        display = InkyDisplay()
        if display.panel.name != sys.argv[5]:
            sys.exit(f"inky.auto() found {display.panel.name}, not {sys.argv[5]}")
        display.show(np.load(sys.argv[4]), display.panel)
        sys.exit(0)
    from onnxstream.cli import main
    sys.exit(main(sys.argv[3:]))
