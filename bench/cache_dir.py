"""The benchmarks' caches: a directory is built in a temp dir beside it and renamed into place when complete, so an
interrupted build never leaves a half-written cache that a later run would trust."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_dir(dest: Path, build) -> Path:
    """dest, built first by build(tmp) into a temp dir beside it when it does not exist yet."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        build(tmp)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
