"""Euler sampler (k-diffusion style), a numpy port of diffusers' EulerDiscreteScheduler.

Works in sigma space: x is scaled by 1/sqrt(sigma^2+1) before the UNet and
moved along the denoising direction from sigma_i to sigma_{i+1}.  With
timestep_spacing="trailing" and steps=1 this is SD-Turbo's sampler.
"""

import numpy as np

from .common import (
    F32,
    SchedulerBase,
    as_f32,
    exponential_sigmas,
    index_for_timestep,
    karras_sigmas,
    make_alphas_cumprod,
    sigma_to_t,
    sigmas_from_alphas_cumprod,
    spaced_timesteps,
    timestep_column,
    torch_linspace_f32,
)


class EulerScheduler(SchedulerBase):
    name = "euler"
    # Same keys and defaults as diffusers.EulerDiscreteScheduler.__init__.
    defaults = {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "trained_betas": None,
        "prediction_type": "epsilon",
        "interpolation_type": "linear",
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "sigma_min": None,
        "sigma_max": None,
        "timestep_spacing": "linspace",
        "timestep_type": "discrete",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
        "final_sigmas_type": "zero",
    }

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        if c["use_beta_sigmas"]:
            raise NotImplementedError("use_beta_sigmas needs scipy; not supported")
        if c["use_karras_sigmas"] and c["use_exponential_sigmas"]:
            raise ValueError("use only one of use_karras_sigmas / use_exponential_sigmas")
        self.alphas_cumprod = make_alphas_cumprod(c, fix_zero_snr_end=True)
        # Until set_timesteps: the full training schedule, as diffusers has it.
        sigmas = sigmas_from_alphas_cumprod(self.alphas_cumprod)[::-1]
        self.sigmas = np.concatenate([sigmas, np.zeros(1, np.float32)])
        n = c["num_train_timesteps"]
        self.timesteps = np.linspace(0, n - 1, n)[::-1].astype(np.float32)

    @property
    def init_noise_sigma(self):
        # Latents start as N(0, 1) * this.  "leading" schedules do not start
        # at the top sigma, so they use the variance-preserving total.
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
        log_sigmas = np.log(table)
        if c["interpolation_type"] == "linear":
            sigmas = np.interp(timesteps, np.arange(0, len(table)), table)
        elif c["interpolation_type"] == "log_linear":
            # diffusers uses a float32 torch.linspace here (and keeps steps+1 values).
            sigmas = np.exp(torch_linspace_f32(np.log(table[-1]), np.log(table[0]), steps + 1))
        else:
            raise ValueError(f"interpolation_type {c['interpolation_type']!r} is not supported")

        if c["use_karras_sigmas"] or c["use_exponential_sigmas"]:
            lo = c["sigma_min"] if c["sigma_min"] is not None else float(sigmas[-1])
            hi = c["sigma_max"] if c["sigma_max"] is not None else float(sigmas[0])
            if c["use_karras_sigmas"]:
                sigmas = karras_sigmas(lo, hi, steps)
            else:
                sigmas = exponential_sigmas(lo, hi, steps)
            timesteps = sigma_to_t(sigmas, log_sigmas)

        if c["final_sigmas_type"] == "sigma_min":
            last = np.sqrt((F32(1) - self.alphas_cumprod[0]) / self.alphas_cumprod[0])
        elif c["final_sigmas_type"] == "zero":
            last = 0.0
        else:
            raise ValueError(f"final_sigmas_type {c['final_sigmas_type']!r} is not supported")
        self.sigmas = np.concatenate([sigmas, [last]]).astype(np.float32)

        if c["timestep_type"] == "continuous" and c["prediction_type"] == "v_prediction":
            # Continuous-time v models take 0.25*log(sigma) as the timestep.
            self.timesteps = (F32(0.25) * np.log(self.sigmas[:-1])).astype(np.float32)
        else:
            self.timesteps = np.asarray(timesteps).astype(np.float32)
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
        """One Euler step from sigma_i to sigma_{i+1}; `noise` is unused."""
        if self._step_index is None:
            self._init_step_index(t)
        model_output = as_f32(model_output)
        sample = as_f32(sample)
        sigma = self.sigmas[self._step_index]
        pred = self.config["prediction_type"]
        if pred in ("epsilon",):
            x0 = sample - sigma * model_output
        elif pred == "v_prediction":
            s2p1 = sigma * sigma + F32(1)
            x0 = model_output * (-sigma / np.sqrt(s2p1)) + sample / s2p1
        elif pred in ("sample", "original_sample"):
            x0 = model_output
        else:
            raise ValueError(f"prediction_type {pred!r} is not supported")
        self.pred_original_sample = x0  # the step's estimate of the final latents (previews)
        derivative = (sample - x0) / sigma
        dt = self.sigmas[self._step_index + 1] - sigma
        prev = sample + derivative * dt
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
