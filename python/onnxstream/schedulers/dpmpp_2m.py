"""DPM-Solver++ multistep (2M), a numpy port of diffusers' DPMSolverMultistepScheduler.

Only algorithm_type="dpmsolver++" (the data-prediction solver the "DPM++ 2M"
name refers to), solver_order 1-3, solver_type midpoint/heun.  The solver is
multistep: it keeps the last x0 predictions, so one instance serves one
sampling loop (set_timesteps resets it).  Use use_karras_sigmas=True for
"DPM++ 2M Karras".
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
    threshold_sample,
    timestep_column,
)


class DPMPP2MScheduler(SchedulerBase):
    name = "dpmpp_2m"
    # Same keys and defaults as diffusers.DPMSolverMultistepScheduler.__init__.
    defaults = {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "trained_betas": None,
        "solver_order": 2,
        "prediction_type": "epsilon",
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
        "algorithm_type": "dpmsolver++",
        "solver_type": "midpoint",
        "lower_order_final": True,
        "euler_at_final": False,
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "use_lu_lambdas": False,
        "use_flow_sigmas": False,
        "flow_shift": 1.0,
        "final_sigmas_type": "zero",
        "lambda_min_clipped": -float("inf"),
        "variance_type": None,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
        "use_dynamic_shifting": False,
        "time_shift_type": "exponential",
    }

    init_noise_sigma = 1.0

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        if c["algorithm_type"] == "deis":  # diffusers maps deis configs to dpmsolver++
            c["algorithm_type"] = "dpmsolver++"
        if c["solver_type"] in ("logrho", "bh1", "bh2"):  # likewise for UniPC/DEIS configs
            c["solver_type"] = "midpoint"
        if c["algorithm_type"] != "dpmsolver++":
            raise NotImplementedError(f"algorithm_type {c['algorithm_type']!r}: only 'dpmsolver++'")
        if c["solver_type"] not in ("midpoint", "heun"):
            raise NotImplementedError(f"solver_type {c['solver_type']!r} is not supported")
        if c["solver_order"] not in (1, 2, 3):
            raise ValueError("solver_order must be 1, 2 or 3")
        for flag in ("use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas", "use_dynamic_shifting"):
            if c[flag]:
                raise NotImplementedError(f"{flag} is not supported")
        if c["use_karras_sigmas"] and c["use_exponential_sigmas"]:
            raise ValueError("use only one of use_karras_sigmas / use_exponential_sigmas")
        if c["variance_type"] in ("learned", "learned_range"):
            raise NotImplementedError("learned variance (6-channel UNet) is not supported")

        self.alphas_cumprod = make_alphas_cumprod(c, fix_zero_snr_end=True)
        # lambda = log(alpha/sigma), only used to honour lambda_min_clipped.
        with np.errstate(divide="ignore"):
            self.lambda_t = np.log(np.sqrt(self.alphas_cumprod)) - np.log(
                np.sqrt(F32(1) - self.alphas_cumprod)
            )
        self.sigmas = sigmas_from_alphas_cumprod(self.alphas_cumprod)
        n = c["num_train_timesteps"]
        self.timesteps = np.linspace(0, n - 1, n, dtype=np.float32)[::-1].copy()
        self._reset_state()

    def _reset_state(self):
        self.model_outputs = [None] * self.config["solver_order"]
        self.lower_order_nums = 0
        self._step_index = None
        self._begin_index = None

    def set_timesteps(self, steps):
        c = self.config
        n_train = c["num_train_timesteps"]
        clipped = np.searchsorted(self.lambda_t[::-1], c["lambda_min_clipped"], side="left")
        last_t = int(n_train - clipped)
        spacing = c["timestep_spacing"]
        # DPM's own spacing: one extra point is generated then the t=0 end dropped.
        if spacing == "linspace":
            ts = np.linspace(0, last_t - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
        elif spacing == "leading":
            ratio = last_t // (steps + 1)
            ts = (np.arange(0, steps + 1) * ratio).round()[::-1][:-1].astype(np.int64)
            ts += c["steps_offset"]
        elif spacing == "trailing":
            ratio = n_train / steps
            ts = np.arange(last_t, 0, -ratio).round().astype(np.int64) - 1
        else:
            raise ValueError(
                f"timestep_spacing {spacing!r} is not supported; use 'linspace', 'leading' or 'trailing'"
            )

        table = sigmas_from_alphas_cumprod(self.alphas_cumprod)
        log_sigmas = np.log(table)
        if c["use_karras_sigmas"] or c["use_exponential_sigmas"]:
            # Spread sigmas over the whole trained range, then map back to t.
            desc = table[::-1]
            lo, hi = float(desc[-1]), float(desc[0])
            if c["use_karras_sigmas"]:
                sigmas = karras_sigmas(lo, hi, steps)
            else:
                sigmas = exponential_sigmas(lo, hi, steps)
            ts = sigma_to_t(sigmas, log_sigmas)
            if c["use_karras_sigmas"] and c["beta_schedule"] != "squaredcos_cap_v2":
                ts = ts.round()
        else:
            sigmas = np.interp(ts, np.arange(0, len(table)), table)

        if c["final_sigmas_type"] == "sigma_min":
            last = np.sqrt((F32(1) - self.alphas_cumprod[0]) / self.alphas_cumprod[0])
        elif c["final_sigmas_type"] == "zero":
            last = 0.0
        else:
            raise ValueError(f"final_sigmas_type {c['final_sigmas_type']!r} is not supported")
        self.sigmas = np.concatenate([sigmas, [last]]).astype(np.float32)
        self.timesteps = np.asarray(ts).astype(np.int64)
        self.num_inference_steps = len(self.timesteps)
        self._reset_state()

    @staticmethod
    def _alpha_sigma(sigma):
        # VP parametrisation: x = alpha * x0 + sigma_t * eps, alpha^2 + sigma_t^2 = 1.
        alpha = F32(1) / np.sqrt(sigma * sigma + F32(1))
        return alpha, sigma * alpha

    def _lambda(self, sigma):
        alpha, sigma_t = self._alpha_sigma(sigma)
        with np.errstate(divide="ignore"):  # sigma = 0 at the end -> lambda = +inf
            return alpha, sigma_t, np.log(alpha) - np.log(sigma_t)

    def _init_step_index(self, t):
        if self._begin_index is None:
            self._step_index = index_for_timestep(self.timesteps, t, missing_last=True)
        else:
            self._step_index = self._begin_index

    def scale_model_input(self, sample, t=None):
        return as_f32(sample)

    def _to_x0(self, model_output, sample):
        c = self.config
        sigma = self.sigmas[self._step_index]
        alpha, sigma_t = self._alpha_sigma(sigma)
        pred = c["prediction_type"]
        if pred == "epsilon":
            x0 = (sample - sigma_t * model_output) / alpha
        elif pred == "sample":
            x0 = model_output
        elif pred == "v_prediction":
            x0 = alpha * sample - sigma_t * model_output
        else:
            raise ValueError(f"prediction_type {pred!r} is not supported")
        if c["thresholding"]:
            x0 = threshold_sample(x0, c["dynamic_thresholding_ratio"], c["sample_max_value"])
        return x0

    def _first_order(self, x0, sample):
        i = self._step_index
        alpha_t, sigma_t, lam_t = self._lambda(self.sigmas[i + 1])
        _, sigma_s, lam_s = self._lambda(self.sigmas[i])
        h = lam_t - lam_s
        return (sigma_t / sigma_s) * sample - (alpha_t * (np.exp(-h) - F32(1))) * x0

    def _second_order(self, sample):
        i = self._step_index
        alpha_t, sigma_t, lam_t = self._lambda(self.sigmas[i + 1])
        _, sigma_s0, lam_s0 = self._lambda(self.sigmas[i])
        _, _, lam_s1 = self._lambda(self.sigmas[i - 1])
        m0, m1 = self.model_outputs[-1], self.model_outputs[-2]
        h, h_0 = lam_t - lam_s0, lam_s0 - lam_s1
        with np.errstate(divide="ignore"):  # h = 0 on a repeated sigma: inf like torch
            r0 = h_0 / h
        d0, d1 = m0, (F32(1) / r0) * (m0 - m1)
        em1 = np.exp(-h) - F32(1)
        if self.config["solver_type"] == "midpoint":
            return (sigma_t / sigma_s0) * sample - (alpha_t * em1) * d0 - F32(0.5) * (alpha_t * em1) * d1
        return (sigma_t / sigma_s0) * sample - (alpha_t * em1) * d0 + (alpha_t * (em1 / h + F32(1))) * d1

    def _third_order(self, sample):
        i = self._step_index
        alpha_t, sigma_t, lam_t = self._lambda(self.sigmas[i + 1])
        _, sigma_s0, lam_s0 = self._lambda(self.sigmas[i])
        _, _, lam_s1 = self._lambda(self.sigmas[i - 1])
        _, _, lam_s2 = self._lambda(self.sigmas[i - 2])
        m0, m1, m2 = self.model_outputs[-1], self.model_outputs[-2], self.model_outputs[-3]
        h, h_0, h_1 = lam_t - lam_s0, lam_s0 - lam_s1, lam_s1 - lam_s2
        with np.errstate(divide="ignore"):
            r0, r1 = h_0 / h, h_1 / h
        d1_0, d1_1 = (F32(1) / r0) * (m0 - m1), (F32(1) / r1) * (m1 - m2)
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (F32(1) / (r0 + r1)) * (d1_0 - d1_1)
        em1 = np.exp(-h) - F32(1)
        return (
            (sigma_t / sigma_s0) * sample
            - (alpha_t * em1) * m0
            + (alpha_t * (em1 / h + F32(1))) * d1
            - (alpha_t * ((em1 + h) / (h * h) - F32(0.5))) * d2
        )

    def step(self, model_output, t, sample, noise=None):
        """One multistep DPM-Solver++ update; `noise` is unused (deterministic)."""
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps() before step()")
        if self._step_index is None:
            self._init_step_index(t)
        c = self.config
        n = len(self.timesteps)
        i = self._step_index
        # Near the end of short schedules fall back to lower orders for stability.
        lower_final = i == n - 1 and (
            c["euler_at_final"]
            or (c["lower_order_final"] and n < 15)
            or c["final_sigmas_type"] == "zero"
        )
        lower_second = i == n - 2 and c["lower_order_final"] and n < 15

        sample = as_f32(sample)
        x0 = self._to_x0(as_f32(model_output), sample)
        self.model_outputs = self.model_outputs[1:] + [x0]
        self.pred_original_sample = x0  # the step's estimate of the final latents (previews)

        order = c["solver_order"]
        if order == 1 or self.lower_order_nums < 1 or lower_final:
            prev = self._first_order(x0, sample)
        elif order == 2 or self.lower_order_nums < 2 or lower_second:
            prev = self._second_order(sample)
        else:
            prev = self._third_order(sample)
        if self.lower_order_nums < order:
            self.lower_order_nums += 1
        self._step_index += 1
        return prev.astype(np.float32, copy=False)

    def add_noise(self, original, noise, t):
        """x_t = alpha(t) x_0 + sigma_t(t) noise (img2img start latents)."""
        original, noise = as_f32(original), as_f32(noise)
        ts = np.asarray(t).reshape(-1)
        if self._begin_index is None:
            idx = [index_for_timestep(self.timesteps, x, missing_last=True) for x in ts]
        elif self._step_index is not None:
            idx = [self._step_index] * len(ts)
        else:
            idx = [self._begin_index] * len(ts)
        alpha, sigma_t = self._alpha_sigma(self.sigmas[idx])
        alpha = timestep_column(alpha, original.ndim)
        sigma_t = timestep_column(sigma_t, original.ndim)
        return alpha * original + sigma_t * noise
