"""Enough memory for a picture? Refuse at start with one line instead of being OOM-killed an hour in.

What a picture needs is the peak RSS (VmHWM) of a process that made one with this model, recorded in
MODEL_DIR/memory.json by every frame run (a PC run before copying the model to the board records it too;
a `peak_rss_mb` in manifest.json, should convert record one, counts as well). What is free is MemAvailable in
/proc/meminfo (swap does not count: a frame must not swap), or less if the process's cgroup has a memory limit
(a systemd MemoryMax=, a container). Linux only; elsewhere nothing is checked.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

from ..pipelines.images import write_atomic

FILE = "memory.json"
MARGIN = 1.05  # runs differ by a few MB (thread buffers, the allocator)


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float | None:
    return _status_mb("VmHWM")


def _cgroup_free_bytes() -> int | None:
    """Limit minus usage of this process's memory cgroup (v2 or v1), None without a limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    free = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
            limit, usage = base / "memory.max", base / "memory.current"
        elif "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            limit, usage = base / "memory.limit_in_bytes", base / "memory.usage_in_bytes"
        else:
            continue
        try:
            text = limit.read_text().strip()
            if text != "max" and int(text) < 1 << 60:
                free.append(int(text) - int(usage.read_text()))
        except (OSError, ValueError):
            continue
    return min(free) if free else None


def available_mb() -> tuple[float, str] | None:
    """(MB free, where that figure comes from), or None."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    cgroup = _cgroup_free_bytes()
    if cgroup is not None and cgroup < available:
        return cgroup / 2**20, "the cgroup's memory limit"
    return available / 2**20, "MemAvailable"


def recorded_mb(model_dir: Path) -> tuple[float, str] | None:
    """(MB, where it comes from) of the largest peak recorded for this model, or None."""
    found = []
    for name in (FILE, "manifest.json"):
        path = Path(model_dir) / name
        try:
            value = json.loads(path.read_text()).get("peak_rss_mb")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, (int, float)) and value > 0:
            found.append((float(value), str(path)))
    return max(found) if found else None


def check(model_dir: Path) -> str:
    """Raise ValueError when the recorded need does not fit; else return a line to log."""
    need, free, held = recorded_mb(model_dir), available_mb(), rss_mb() or 0.0
    if free is None:
        return "memory: cannot read /proc/meminfo, not checked"
    free, where = free
    if need is None:
        return (f"memory: {free:.0f} MB available; no peak recorded for this model yet "
                f"(the first picture records it in {Path(model_dir) / FILE})")
    mb, source = need
    if mb * MARGIN - held > free:
        raise ValueError(f"not enough free memory for this model: a picture needs about {mb * MARGIN:.0f} MB "
                         f"(peak {mb:.0f} MB recorded in {source}, + 5%), this process holds {held:.0f} MB and "
                         f"only {free:.0f} MB more are available ({where}); stop other programs, or use a "
                         f"smaller model or picture size")
    return f"memory: a picture needs about {mb:.0f} MB (recorded), {free + held:.0f} MB available"


def record(model_dir: Path, peak_mb: float) -> str | None:
    """Keep the largest peak seen in MODEL_DIR/memory.json; returns a line to log when it cannot be written."""
    path = Path(model_dir) / FILE
    try:
        old = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        old = {}
    if not isinstance(old, dict) or old.get("peak_rss_mb", 0) >= round(peak_mb, 1):
        return None
    data = {"peak_rss_mb": round(peak_mb, 1), "measured_on": platform.machine(),
            "what": "VmHWM of an `onnxstream frame` process that made a picture with this model"}
    try:
        write_atomic(path, json.dumps(data, indent=1).encode())
    except OSError as e:
        return f"memory: cannot record the peak in {path} ({e})"
    return None
