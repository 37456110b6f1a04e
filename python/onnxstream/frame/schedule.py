"""When the next picture is due, which picture that is, and the one in progress: STATE_DIR/schedule.json,
rewritten atomically at the start and at the end of every picture, so it survives a power cut.

Picture n (1, 2, ...) uses seed base_seed + n - 1. Times are wall-clock (time.time(): a reboot keeps them). The
next picture is due `every` after the previous one started, or at once if that has passed: a frame that was
off for a day makes one picture when it comes back, not a burst. A clock set back (a Pi without a real-time
clock boots with an old time) never pushes the next picture more than `every` away.
"""
from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..pipelines.images import write_atomic

FILE = "schedule.json"
FORMAT = "onnxstream-frame-schedule-1"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> float:
    """'3h', '90m', '1h30m', '45s', '1d' -> seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise ValueError(f"--every expects a duration like 3h, 90m, 1h30m or 45s, got {text!r}")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 1:
        raise ValueError(f"--every must be at least 1s, got {text!r}")
    return seconds


@dataclass
class Schedule:
    base_seed: int
    number: int = 1                 # the next picture to make
    due: float = 0.0                # when it is due (time.time()); 0: now
    current: dict | None = None     # the picture in progress: number, seed, template, prompt, started, ...
    history: list = field(default_factory=list)  # the last few finished pictures (number, seed, file)

    @classmethod
    def load(cls, state_dir: Path, seed: int | None) -> "Schedule":
        """The saved schedule, or a new one (seed None: a random base seed, kept from then on)."""
        path = Path(state_dir) / FILE
        if not path.is_file():
            return cls(base_seed=secrets.randbits(62) if seed is None else seed)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.pop("format", None) != FORMAT:
                raise ValueError("not a schedule file")
            schedule = cls(**data)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path} is damaged ({e}); delete it to start the schedule again") from None
        if seed is not None:
            schedule.base_seed = seed  # the pictures to come follow the new --seed
        return schedule

    def save(self, state_dir: Path) -> None:
        write_atomic(Path(state_dir) / FILE, json.dumps({"format": FORMAT, **asdict(self)}, indent=1).encode())

    def seed_of(self, number: int) -> int:
        return self.base_seed + number - 1

    def seconds_to_wait(self, every: float, now: float | None = None) -> float:
        now = time.time() if now is None else now
        if self.due - now > every:  # the clock went back: never wait longer than one period
            self.due = now + every
        return max(0.0, self.due - now)

    def finish(self, every: float, record: dict, now: float | None = None) -> None:
        """The picture in progress is done: schedule the next one."""
        now = time.time() if now is None else now
        self.due = max(self.current["started"] + every, now)
        self.history = (self.history + [record])[-10:]
        self.number = self.current["number"] + 1
        self.current = None
