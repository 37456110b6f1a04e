"""Euler ancestral sampler, a numpy port of diffusers' EulerAncestralDiscreteScheduler.

Like Euler, but each step goes down to a lower sigma_down and then adds
fresh noise of size sigma_up, so sigma_down^2 + sigma_up^2 = sigma_next^2.
The caller passes that noise to `step`, keeping the RNG in its hands.
"""

import numpy as np

from .common import (
    F32,
    SchedulerBase,
    as_f32,
    index_for_timestep,
    make_alphas_cumprod,
    need_noise,
    sigmas_from_alphas_cumprod,
    spaced_timesteps,
    timestep_column,
)


class EulerAncestralScheduler(SchedulerBase):
    name = "euler_a"
    # Same keys and defaults as diffusers.EulerAncestralDiscreteScheduler.__init__.
    defaults = {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "trained_betas": None,
        "prediction_type": "epsilon",
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
    }

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.alphas_cumprod = make_alphas_cumprod(self.config, fix_zero_snr_end=True)
        sigmas = sigmas_from_alphas_cumprod(self.alphas_cumprod)[::-1]
        self.sigmas = np.concatenate([sigmas, np.zeros(1, np.float32)])
        n = self.config["num_train_timesteps"]
        self.timesteps = np.linspace(0, n - 1, n)[::-1].copy()

    @property
    def init_noise_sigma(self):
        max_sigma = self.sigmas.max()
        if self.config["timestep_spacing"] in ("linspace", "trailing"):
            return max_sigma
        return np.sqrt(max_sigma * max_sigma + F32(1))

    def set_timesteps(self, steps):
        c = self.config
        self.num_inference_steps = steps
        timesteps = spaced_timesteps(
            c["timestep_spacing"], c["num_train_timesteps"], steps, c["steps_offset"]
        ).astype(np.float32)
        table = sigmas_from_alphas_cumprod(self.alphas_cumprod)
        sigmas = np.interp(timesteps, np.arange(0, len(table)), table)
        self.sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
        self.timesteps = timesteps
        self._step_index = None
        self._begin_index = None

    def _init_step_index(self, t):
        if self._begin_index is None:
            self._step_index = index_for_timestep(self.timesteps, t)
        else:
            self._step_index = self._begin_index

    def scale_model_input(self, sample, t):
        if self._step_index is None:
            self._init_step_index(t)
        sigma = self.sigmas[self._step_index]
        return as_f32(sample) / np.sqrt(sigma * sigma + F32(1))

    def step(self, model_output, t, sample, noise=None):
        """One ancestral step; `noise` ~ N(0, 1) shaped like `sample` is required."""
        if self._step_index is None:
            self._init_step_index(t)
        model_output = as_f32(model_output)
        sample = as_f32(sample)
        noise = need_noise(noise, sample, "EulerAncestralScheduler")
        sigma = self.sigmas[self._step_index]
        pred = self.config["prediction_type"]
        if pred == "epsilon":
            x0 = sample - sigma * model_output
        elif pred == "v_prediction":
            s2p1 = sigma * sigma + F32(1)
            x0 = model_output * (-sigma / np.sqrt(s2p1)) + sample / s2p1
        else:
            raise ValueError(f"prediction_type {pred!r} is not supported by euler_a")

        self.pred_original_sample = x0  # the step's estimate of the final latents (previews)
        s_from, s_to = sigma, self.sigmas[self._step_index + 1]
        # Split the next noise level into a deterministic part and fresh noise.
        sigma_up = np.sqrt(s_to * s_to * (s_from * s_from - s_to * s_to) / (s_from * s_from))
        sigma_down = np.sqrt(s_to * s_to - sigma_up * sigma_up)
        derivative = (sample - x0) / sigma
        prev = sample + derivative * (sigma_down - sigma)
        prev = prev + noise * sigma_up
        self._step_index += 1
        return prev

    def add_noise(self, original, noise, t):
        """x_t = x_0 + sigma(t) * noise (img2img start latents)."""
        original, noise = as_f32(original), as_f32(noise)
        ts = np.asarray(t).reshape(-1)
        if self._begin_index is None:
            idx = [index_for_timestep(self.timesteps, x) for x in ts]
        elif self._step_index is not None:
            idx = [self._step_index] * len(ts)
        else:
            idx = [self._begin_index] * len(ts)
        sigma = timestep_column(self.sigmas[idx], original.ndim)
        return original + noise * sigma
