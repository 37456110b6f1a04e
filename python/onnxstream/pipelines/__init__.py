"""Stable Diffusion on the engine: convert_pipeline (PC side), stable_diffusion (board side), cli_sd."""
