"""One engine run in a fresh process, watched from outside (for bench/peers.py).

Every engine is measured the same way, by this parent process: the child prints marker lines (our Python runners
print `@@begin PART` / `@@end PART`; stable-diffusion.cpp's and OnnxStream's own log lines are mapped to the same
events by regular expressions), and at each marker the parent reads the child's VmHWM (/proc/PID/status) as the
peak of the part that just ran, then resets it (writing 5 to /proc/PID/clear_refs) for the next part; a poller
reads /proc/PID/io every 0.2 s for bytes written and read. Part times come from the markers' arrival times (or the
engine's own per-step log where it prints one). The whole run's peak is the largest part peak (every moment of the
run belongs to one part, "load" and "other" included) and its time is the child's wall time, imports included.
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field


@dataclass
class RunResult:
    name: str
    returncode: int = 0
    wall: float = 0.0
    part_time: dict = field(default_factory=dict)   # part -> seconds
    part_peak: dict = field(default_factory=dict)   # part -> MB (VmHWM of that part)
    step_times: list = field(default_factory=list)  # seconds per sampler step, when the engine prints them
    write_bytes: int = 0
    read_bytes: int = 0
    log_tail: list = field(default_factory=list)
    error: str = ""

    @property
    def peak(self):
        return max(self.part_peak.values(), default=0.0)


def _hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return 0.0


def _io(pid: int) -> dict:
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


GENERIC = [(re.compile(r"^@@(begin|end) (\w+)"), None)]


def run(name: str, cmd, rules=(), env=None, cwd=None, step_re=None, timeout=None) -> RunResult:
    """Runs cmd, mapping output lines to part events. rules: [(regex, [("end", part), ("begin", part)]), ...]."""
    res = RunResult(name)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd, text=True,
                            bufsize=1, errors="replace")
    pid, current, since = proc.pid, "load", start
    last_io, last_hwm, stop = {}, [0.0], threading.Event()

    def poll_io():
        while not stop.is_set():
            try:
                last_io.update(_io(pid))
                last_hwm[0] = _hwm_mb(pid)  # the part running now, since its reset (for the tail after the last marker)
            except OSError:
                return
            stop.wait(0.2)

    poller = threading.Thread(target=poll_io, daemon=True)
    poller.start()

    def event(kind: str, part: str, now: float):
        nonlocal current, since
        try:
            peak = _hwm_mb(pid)
            open(f"/proc/{pid}/clear_refs", "w").write("5")
            last_io.update(_io(pid))
        except OSError:
            return
        res.part_peak[current] = max(res.part_peak.get(current, 0.0), peak)
        if kind == "end":
            res.part_time[part] = res.part_time.get(part, 0.0) + now - since
            current = "other"
        else:
            current = part
        since = now

    for line in proc.stdout:
        now = time.perf_counter()
        line = line.rstrip("\n")
        res.log_tail = (res.log_tail + [line])[-40:]
        m = GENERIC[0][0].match(line)
        if m:
            event(m.group(1), m.group(2), now)
            continue
        for pattern, actions in rules:
            if pattern.search(line):
                for kind, part in actions:
                    event(kind, part, now)
        if step_re:
            s = step_re.search(line)
            if s:
                res.step_times.append(float(s.group(1)) / (1000 if s.groupdict().get("ms") else 1))  # (seconds)
    res.returncode = proc.wait()
    res.wall = time.perf_counter() - start
    stop.set()
    poller.join()
    # The last part's peak: the poller's last VmHWM. (Not the exit rusage: a child's ru_maxrss starts from the
    # high-water mark of the forked parent, whatever this bench process had in memory.)
    res.part_peak[current] = max(res.part_peak.get(current, 0.0), last_hwm[0])
    res.write_bytes, res.read_bytes = last_io.get("write_bytes", 0), last_io.get("read_bytes", 0)
    if res.returncode != 0:
        res.error = next((l for l in reversed(res.log_tail) if l.strip()), f"exit code {res.returncode}")
    return res

