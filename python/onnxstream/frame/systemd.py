"""`onnxstream frame --install-systemd`: a unit so the frame starts at boot and restarts after a crash.

As root: a system unit in /etc/systemd/system that runs as the user who called sudo. Otherwise a user unit in
~/.config/systemd/user (with `loginctl enable-linger` it runs at boot without anyone logging in). The unit
runs the same `onnxstream frame` command line, with absolute paths; its output goes to the journal.
"""
from __future__ import annotations

import os
import pwd
import re
import sys
from pathlib import Path

from ..pipelines.images import write_atomic

NAME = "onnxstream-frame.service"


def quote(arg: str) -> str:
    """One ExecStart= word: systemd splits on spaces, honours double quotes and expands % and $ (doubled here)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[\w./=:+,@-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_text(argv: list[str], system_user: str | None) -> str:
    """argv: the frame's arguments after `frame`, paths already absolute; system_user: User= of a system unit."""
    command = " ".join(quote(a) for a in [sys.executable, "-m", "onnxstream", "frame", *argv])
    lines = ["[Unit]", "Description=onnxstream e-ink picture frame", "After=local-fs.target time-sync.target", "",
             "[Service]", "Type=simple", f"ExecStart={command}", f"WorkingDirectory={os.getcwd().replace('%', '%%')}",
             # stdout unbuffered into the journal; no .pyc files written to the SD card
             "Environment=PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
             "Nice=10", "Restart=on-failure", "RestartSec=60"]
    if system_user:
        lines.append(f"User={system_user}")
    lines += ["", "[Install]", f"WantedBy={'multi-user.target' if system_user else 'default.target'}", ""]
    return "\n".join(lines)


def install(argv: list[str]) -> Path:
    """Write the unit (atomically) and print it and the commands that enable it."""
    if os.geteuid() == 0:
        user = os.environ.get("SUDO_USER") or "root"
        path = Path("/etc/systemd/system") / NAME
        commands = ["systemctl daemon-reload", f"systemctl enable --now {NAME}", f"journalctl -u {NAME} -f"]
    else:
        user = None
        path = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user" / NAME
        name = pwd.getpwuid(os.getuid()).pw_name
        commands = ["systemctl --user daemon-reload", f"systemctl --user enable --now {NAME}",
                    f"sudo loginctl enable-linger {name}   # start at boot, without logging in",
                    f"journalctl --user -u {NAME} -f"]
    text = unit_text(argv, user)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode())
    print(f"wrote {path}:\n\n{text}\nnow run:\n" + "\n".join(f"  {c}" for c in commands), flush=True)
    return path
