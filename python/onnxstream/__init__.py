"""onnxstream: run ONNX networks in a few hundred MB of RAM by streaming weights from disk."""
from .graph import ModelFormatError
from .runtime.executor import InputError, Session

__version__ = "0.1.0"


def convert(path, out_dir, weights="fp32", input_shapes=None, overwrite=False, progress=None):
    """Convert an ONNX model into an onnxstream model directory (needs the onnx package)."""
    from .converter import convert as _convert
    return _convert(path, out_dir, weights=weights, input_shapes=input_shapes, overwrite=overwrite,
                    progress=progress)


__all__ = ["Session", "convert", "InputError", "ModelFormatError", "__version__"]
