"""cmake and ninja for building the C++ core in tests and benches: from their PyPI packages (in the test extra), so
every machine builds the same way whether or not the venv's bin is on PATH; else the ones on PATH."""
import importlib
import shutil
from pathlib import Path


def find(name: str):
    """Path of `name` ("cmake" or "ninja"), or None."""
    try:
        module = importlib.import_module(name)
        path = Path(module.CMAKE_BIN_DIR if name == "cmake" else module.BIN_DIR) / name
        if path.is_file():
            return str(path)
    except (ImportError, AttributeError):
        pass
    return shutil.which(name)
