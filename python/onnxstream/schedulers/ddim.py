"""DDIM sampler, a numpy port of diffusers' DDIMScheduler.

Works in alpha space (no input scaling): predict x0 and the noise, then
re-noise x0 to the previous timestep's alpha.  eta=0 (the pipeline default)
is deterministic; eta>0 mixes in the `noise` passed to `step`.
"""

import numpy as np

from .common import (
    F32,
    SchedulerBase,
    as_f32,
    make_alphas_cumprod,
    need_noise,
    spaced_timesteps,
    threshold_sample,
    timestep_column,
)


class DDIMScheduler(SchedulerBase):
    name = "ddim"
    # Same keys and defaults as diffusers.DDIMScheduler.__init__.
    defaults = {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "trained_betas": None,
        "clip_sample": True,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "prediction_type": "epsilon",
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "clip_sample_range": 1.0,
        "sample_max_value": 1.0,
        "timestep_spacing": "leading",
        "rescale_betas_zero_snr": False,
    }

    init_noise_sigma = 1.0

    def __init__(self, config=None, eta=0.0, **overrides):
        super().__init__(config, **overrides)
        # eta is a step() argument in diffusers (the pipelines pass eta=0.0).
        self.eta = float(eta)
        self.alphas_cumprod = make_alphas_cumprod(self.config)
        # Alpha "before" the first training step: 1 or alphas_cumprod[0].
        self.final_alpha_cumprod = (
            F32(1.0) if self.config["set_alpha_to_one"] else self.alphas_cumprod[0]
        )
        n = self.config["num_train_timesteps"]
        self.timesteps = np.arange(0, n)[::-1].astype(np.int64)

    def set_timesteps(self, steps):
        c = self.config
        if steps > c["num_train_timesteps"]:
            raise ValueError(f"steps={steps} > num_train_timesteps={c['num_train_timesteps']}")
        self.num_inference_steps = steps
        self.timesteps = spaced_timesteps(
            c["timestep_spacing"], c["num_train_timesteps"], steps, c["steps_offset"],
            round_linspace=True,
        ).astype(np.int64)
        self._step_index = None
        self._begin_index = None

    def scale_model_input(self, sample, t=None):
        return as_f32(sample)

    def _alpha_prev(self, prev_t):
        return self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod

    def step(self, model_output, t, sample, noise=None):
        """One DDIM step from t to t - num_train/steps; `noise` only for eta > 0."""
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps() before step()")
        c = self.config
        t = int(np.asarray(t).item())
        model_output = as_f32(model_output)
        sample = as_f32(sample)
        prev_t = t - c["num_train_timesteps"] // self.num_inference_steps
        a_t = self.alphas_cumprod[t]
        a_prev = self._alpha_prev(prev_t)
        b_t = F32(1) - a_t

        pred = c["prediction_type"]
        if pred == "epsilon":
            x0 = (sample - np.sqrt(b_t) * model_output) / np.sqrt(a_t)
            eps = model_output
        elif pred == "sample":
            x0 = model_output
            eps = (sample - np.sqrt(a_t) * x0) / np.sqrt(b_t)
        elif pred == "v_prediction":
            x0 = np.sqrt(a_t) * sample - np.sqrt(b_t) * model_output
            eps = np.sqrt(a_t) * model_output + np.sqrt(b_t) * sample
        else:
            raise ValueError(f"prediction_type {pred!r} is not supported")

        if c["thresholding"]:
            x0 = threshold_sample(x0, c["dynamic_thresholding_ratio"], c["sample_max_value"])
        elif c["clip_sample"]:
            r = F32(c["clip_sample_range"])
            x0 = np.clip(x0, -r, r)
        self.pred_original_sample = x0  # the step's estimate of the final latents (previews)

        # sigma_t of the DDIM paper (eq. 16), scaled by eta.
        variance = ((F32(1) - a_prev) / b_t) * (F32(1) - a_t / a_prev)
        std = F32(self.eta) * np.sqrt(variance)
        direction = np.sqrt(F32(1) - a_prev - std * std) * eps
        prev = np.sqrt(a_prev) * x0 + direction
        if self.eta > 0:
            prev = prev + std * need_noise(noise, sample, "DDIMScheduler")
        return prev

    def add_noise(self, original, noise, t):
        """x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) noise (img2img start latents)."""
        original, noise = as_f32(original), as_f32(noise)
        a = self.alphas_cumprod[np.asarray(t, dtype=np.int64).reshape(-1)]
        sqrt_a = timestep_column(np.sqrt(a), original.ndim)
        sqrt_b = timestep_column(np.sqrt(F32(1) - a), original.ndim)
        return sqrt_a * original + sqrt_b * noise
