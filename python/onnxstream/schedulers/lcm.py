"""Latent Consistency Model sampler, a numpy port of diffusers' LCMScheduler.

Each step maps x_t straight to a denoised estimate (consistency function
with boundary-condition scalings c_skip/c_out) and, except at the last
step, re-noises it to the next timestep with the caller's `noise`.
Timesteps are picked from the `original_inference_steps`-point schedule the
model was distilled on; timestep_spacing and steps_offset are not used.
"""

import numpy as np

from .common import (
    F32,
    SchedulerBase,
    as_f32,
    index_for_timestep,
    make_alphas_cumprod,
    need_noise,
    threshold_sample,
    timestep_column,
)


class LCMScheduler(SchedulerBase):
    name = "lcm"
    # Same keys and defaults as diffusers.LCMScheduler.__init__.
    defaults = {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "trained_betas": None,
        "original_inference_steps": 50,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "prediction_type": "epsilon",
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
        "timestep_spacing": "leading",
        "timestep_scaling": 10.0,
        "rescale_betas_zero_snr": False,
    }

    init_noise_sigma = 1.0
    sigma_data = 0.5

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.alphas_cumprod = make_alphas_cumprod(self.config)
        self.final_alpha_cumprod = (
            F32(1.0) if self.config["set_alpha_to_one"] else self.alphas_cumprod[0]
        )
        n = self.config["num_train_timesteps"]
        self.timesteps = np.arange(0, n)[::-1].astype(np.int64)
        self.denoised = None  # x0 estimate of the latest step

    def set_timesteps(self, steps, original_inference_steps=None, strength=1.0):
        """Pick `steps` timesteps from the distillation schedule.

        `strength` < 1 is what LatentConsistencyModelImg2ImgPipeline passes
        (it shortens the origin schedule); img2img_timesteps() instead
        follows StableDiffusionImg2ImgPipeline, as the other samplers do.
        """
        c = self.config
        n_train = c["num_train_timesteps"]
        orig = original_inference_steps or c["original_inference_steps"]
        if orig > n_train:
            raise ValueError(f"original_inference_steps={orig} > num_train_timesteps={n_train}")
        if steps > n_train:
            raise ValueError(f"steps={steps} > num_train_timesteps={n_train}")
        k = n_train // orig
        origin = np.asarray(list(range(1, int(orig * strength) + 1))) * k - 1
        if len(origin) // steps < 1:
            raise ValueError(
                f"steps={steps} is more than original_inference_steps x strength = {int(orig * strength)}"
            )
        if steps > orig:
            raise ValueError(f"steps={steps} > original_inference_steps={orig}")
        self.num_inference_steps = steps
        origin = origin[::-1].copy()
        idx = np.floor(np.linspace(0, len(origin), num=steps, endpoint=False)).astype(np.int64)
        self.timesteps = origin[idx].astype(np.int64)
        self._step_index = None
        self._begin_index = None

    def _init_step_index(self, t):
        if self._begin_index is None:
            self._step_index = index_for_timestep(self.timesteps, t)
        else:
            self._step_index = self._begin_index

    def scale_model_input(self, sample, t=None):
        return as_f32(sample)

    def _boundary_scalings(self, t):
        # c_skip -> 1 and c_out -> 0 as t -> 0 so the consistency map is the identity there.
        sd2 = F32(self.sigma_data * self.sigma_data)
        st = F32(t) * F32(self.config["timestep_scaling"])
        c_skip = sd2 / (st * st + sd2)
        c_out = st / np.sqrt(st * st + sd2)
        return c_skip, c_out

    def step(self, model_output, t, sample, noise=None):
        """One LCM step; `noise` ~ N(0, 1) is required except on the last step.

        Returns the next latents.  After the last step they equal the
        denoised estimate (`self.denoised` always holds it).
        """
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps() before step()")
        c = self.config
        t = int(np.asarray(t).item())
        if self._step_index is None:
            self._init_step_index(t)
        model_output = as_f32(model_output)
        sample = as_f32(sample)
        nxt = self._step_index + 1
        prev_t = int(self.timesteps[nxt]) if nxt < len(self.timesteps) else t
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        b_t, b_prev = F32(1) - a_t, F32(1) - a_prev
        c_skip, c_out = self._boundary_scalings(t)

        pred = c["prediction_type"]
        if pred == "epsilon":
            x0 = (sample - np.sqrt(b_t) * model_output) / np.sqrt(a_t)
        elif pred == "sample":
            x0 = model_output
        elif pred == "v_prediction":
            x0 = np.sqrt(a_t) * sample - np.sqrt(b_t) * model_output
        else:
            raise ValueError(f"prediction_type {pred!r} is not supported")
        if c["thresholding"]:
            x0 = threshold_sample(x0, c["dynamic_thresholding_ratio"], c["sample_max_value"])
        elif c["clip_sample"]:
            r = F32(c["clip_sample_range"])
            x0 = np.clip(x0, -r, r)

        denoised = c_out * x0 + c_skip * sample
        self.denoised = self.pred_original_sample = denoised  # the final latents' estimate (previews)
        if self._step_index != self.num_inference_steps - 1:
            noise = need_noise(noise, sample, "LCMScheduler")
            prev = np.sqrt(a_prev) * denoised + np.sqrt(b_prev) * noise
        else:
            prev = denoised
        self._step_index += 1
        return prev

    def add_noise(self, original, noise, t):
        """x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) noise (img2img start latents)."""
        original, noise = as_f32(original), as_f32(noise)
        a = self.alphas_cumprod[np.asarray(t, dtype=np.int64).reshape(-1)]
        sqrt_a = timestep_column(np.sqrt(a), original.ndim)
        sqrt_b = timestep_column(np.sqrt(F32(1) - a), original.ndim)
        return sqrt_a * original + sqrt_b * noise
