"""The e-ink picture frame (`onnxstream frame`): schedule, prompts, dithering to panel palettes, display."""
