"""The environment of a child process the tests start: it imports onnxstream from where the tests found it (the
installed package, or python/ with PYTHONPATH=python for an in-place build), never the other one."""
import os
from pathlib import Path

import onnxstream

PACKAGE_PARENT = str(Path(onnxstream.__file__).resolve().parent.parent)


def child_env(**extra) -> dict:
    path = os.pathsep.join(p for p in (PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
