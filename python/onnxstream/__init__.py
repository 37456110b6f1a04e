"""onnxstream: run ONNX networks in a few hundred MB of RAM by streaming weights from disk."""
from .graph import ModelFormatError
from .runtime.executor import InputError, Session

__version__ = "0.1.0"


def StableDiffusion(model_dir, threads=None):
    """A Stable Diffusion pipeline on a converted directory (see pipelines.stable_diffusion)."""
    from .pipelines.stable_diffusion import StableDiffusion as _StableDiffusion
    return _StableDiffusion(model_dir, threads=threads)


def convert(path, out_dir, weights="fp32", input_shapes=None, overwrite=False, progress=None, **options):
    """Convert an ONNX model into an onnxstream model directory (needs the onnx package); options for a model file:
    outputs, calibration (converter.convert).

    `path` may also be a Stable Diffusion pipeline directory (diffusers or ONNX exports); options
    (height, width, unet_batches, family, onnx_only) then go to pipelines.convert_pipeline."""
    from pathlib import Path
    if Path(path).is_dir():
        from .pipelines.convert_pipeline import convert_pipeline
        return convert_pipeline(path, out_dir, weights=weights, overwrite=overwrite, progress=progress, **options)
    from .converter import convert as _convert
    return _convert(path, out_dir, weights=weights, input_shapes=input_shapes, overwrite=overwrite,
                    progress=progress, **options)


__all__ = ["Session", "StableDiffusion", "convert", "InputError", "ModelFormatError", "__version__"]
