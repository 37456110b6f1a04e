"""Pieces shared by the samplers: noise schedules, timestep spacing, config.

Everything here is numpy + stdlib.  The arithmetic deliberately mirrors how
diffusers computes the same arrays (float32 torch tensors, float64 numpy
where diffusers uses numpy) so the schedules agree bit for bit or to an ulp.

Scalar maths is done on np.float32 values with constants wrapped in F32():
under NumPy 1.x `np.float32(x) * 1.0` silently becomes float64, under NumPy 2
it stays float32; wrapping keeps both versions identical to torch's float32.
"""

import math

import numpy as np

F32 = np.float32


# ---------------------------------------------------------------- config --

def pick_config(config, defaults, overrides=None):
    """Take the keys `defaults` knows from a diffusers scheduler config.

    Same rules as diffusers' `from_config`: unknown keys (e.g. PNDM's
    `skip_prk_steps`, `_class_name`) are ignored, missing keys keep the
    class default, keys listed in `_use_default_values` are dropped, and
    `overrides` win over the config.
    """
    config = dict(config or {})
    use_default = set(config.get("_use_default_values", []) or [])
    out = dict(defaults)
    for key, value in config.items():
        if key in defaults and key not in use_default:
            out[key] = value
    for key, value in (overrides or {}).items():
        if key not in defaults:
            raise TypeError(f"unknown scheduler option {key!r}")
        out[key] = value
    return out


# ------------------------------------------------------------- schedules --

def torch_linspace_f32(start, end, steps):
    """torch.linspace(start, end, steps, dtype=float32), bit for bit.

    torch computes the step in float32 and fills the first half as
    start + step*i and the second half as end - step*(steps-1-i), with a
    fused multiply-add (one rounding).  Doing the FMA in float64 and rounding
    once to float32 reproduces it (the product is exact in float64).
    """
    a, b = F32(start), F32(end)
    if steps == 1:
        return np.array([a], dtype=np.float32)
    step = np.float64(F32((b - a) / F32(steps - 1)))
    i = np.arange(steps, dtype=np.float64)
    head = np.float64(a) + step * i
    tail = np.float64(b) - step * (steps - 1 - i)
    return np.where(i < steps // 2, head, tail).astype(np.float32)


def betas_for_alpha_bar(num_steps, max_beta=0.999):
    """The cosine ("squaredcos_cap_v2") schedule, computed in Python floats."""
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = []
    for i in range(num_steps):
        t1, t2 = i / num_steps, (i + 1) / num_steps
        betas.append(min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    return np.array(betas, dtype=np.float64).astype(np.float32)


def rescale_zero_terminal_snr(betas):
    """Rescale betas so the last step has zero SNR (arXiv 2305.08891)."""
    alphas = F32(1.0) - betas
    ac = cumprod_f32(alphas)
    abar_sqrt = np.sqrt(ac)
    first, last = abar_sqrt[0], abar_sqrt[-1]
    abar_sqrt = abar_sqrt - last
    abar_sqrt = abar_sqrt * (first / (first - last))
    abar = abar_sqrt * abar_sqrt
    alphas = np.concatenate([abar[:1], abar[1:] / abar[:-1]])
    return (F32(1) - alphas).astype(np.float32)


def cumprod_f32(x):
    # torch's CPU cumprod accumulates float32 in float64, then rounds.
    return np.cumprod(np.asarray(x, dtype=np.float64)).astype(np.float32)


def make_betas(cfg):
    """betas (float32) from trained_betas / beta_schedule, like diffusers."""
    n = cfg["num_train_timesteps"]
    if cfg.get("trained_betas") is not None:
        betas = np.asarray(cfg["trained_betas"], dtype=np.float64).astype(np.float32)
    elif cfg["beta_schedule"] == "linear":
        betas = torch_linspace_f32(cfg["beta_start"], cfg["beta_end"], n)
    elif cfg["beta_schedule"] == "scaled_linear":
        # linspace over sqrt(beta), then squared: the SD schedule.
        root = torch_linspace_f32(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n)
        betas = root * root
    elif cfg["beta_schedule"] == "squaredcos_cap_v2":
        betas = betas_for_alpha_bar(n)
    else:
        raise NotImplementedError(f"beta_schedule {cfg['beta_schedule']!r} is not supported")
    if cfg.get("rescale_betas_zero_snr"):
        betas = rescale_zero_terminal_snr(betas)
    return betas


def make_alphas_cumprod(cfg, fix_zero_snr_end=False):
    """alphas_cumprod (float32).

    The sigma-based samplers (Euler, DPM) replace a zero final alpha with
    2**-24 under zero-SNR so sigma stays finite; DDIM and LCM do not.
    """
    ac = cumprod_f32(F32(1.0) - make_betas(cfg))
    if fix_zero_snr_end and cfg.get("rescale_betas_zero_snr"):
        ac[-1] = F32(2.0 ** -24)
    return ac


def sigmas_from_alphas_cumprod(ac):
    """sigma = sqrt((1 - a) / a), float32, ascending in training time."""
    return np.sqrt((F32(1) - ac) / ac)


def spaced_timesteps(spacing, num_train, steps, steps_offset, round_linspace=False):
    """Inference timesteps (descending, float64) for the common spacings.

    "leading" gets steps_offset added, "trailing" ends at num_train-1
    (needed by SD-Turbo's 1-step sampling), "linspace" spans both ends.
    DDIM rounds the linspace values, Euler keeps them fractional.
    """
    if spacing == "linspace":
        ts = np.linspace(0, num_train - 1, steps)
        if round_linspace:
            ts = ts.round()
        return ts[::-1].copy()
    if spacing == "leading":
        ratio = num_train // steps
        return (np.arange(0, steps) * ratio).round()[::-1] + steps_offset
    if spacing == "trailing":
        ratio = num_train / steps
        return np.arange(num_train, 0, -ratio).round() - 1
    raise ValueError(
        f"timestep_spacing {spacing!r} is not supported; use 'linspace', 'leading' or 'trailing'"
    )


def karras_sigmas(sigma_min, sigma_max, steps, rho=7.0):
    """Karras et al. (2022) noise levels, float64 like diffusers."""
    ramp = np.linspace(0, 1, steps)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def exponential_sigmas(sigma_min, sigma_max, steps):
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), steps))


def sigma_to_t(sigmas, log_sigmas):
    """Fractional training timestep of each sigma, by log-sigma interpolation."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    log_sigma = np.log(np.maximum(sigmas, 1e-10)).reshape(-1)
    dists = log_sigma - log_sigmas[:, None]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high = low + 1
    w = (log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[high])
    w = np.clip(w, 0, 1)
    return ((1 - w) * low + w * high).reshape(sigmas.shape)


# --------------------------------------------------------------- helpers --

def threshold_sample(x, ratio, max_value):
    """Dynamic thresholding (Imagen): clip to the ratio-quantile of |x|."""
    b = x.shape[0]
    flat = x.reshape(b, -1)
    s = np.quantile(np.abs(flat), ratio, axis=1).astype(np.float32)
    s = np.clip(s, F32(1), F32(max_value))[:, None]
    return (np.clip(flat, -s, s) / s).reshape(x.shape).astype(x.dtype)


def index_for_timestep(timesteps, t, missing_last=False):
    """Position of t in the schedule, diffusers' way.

    With duplicates diffusers takes the second match (so img2img starting
    mid-schedule never skips a sigma); a missing t is an error, except for
    DPM-Solver which falls back to the last index.
    """
    hits = np.nonzero(timesteps == np.asarray(t).item())[0]
    if len(hits) == 0:
        if missing_last:
            return len(timesteps) - 1
        raise ValueError(f"timestep {t} is not in the schedule {timesteps.tolist()}")
    return int(hits[1] if len(hits) > 1 else hits[0])


def as_f32(x):
    return np.asarray(x, dtype=np.float32)


def need_noise(noise, like, who):
    if noise is None:
        raise ValueError(f"{who}.step needs `noise` (a standard normal array shaped like the sample)")
    noise = as_f32(noise)
    if noise.shape != like.shape:
        raise ValueError(f"noise shape {noise.shape} != sample shape {like.shape}")
    return noise


def timestep_column(values, ndim):
    """Per-batch scalars shaped to broadcast against a [B, ...] sample."""
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    return values.reshape((-1,) + (1,) * (ndim - 1))


class SchedulerBase:
    """The bits every sampler shares: config, begin index, img2img."""

    name = ""
    order = 1
    defaults = {}

    def __init__(self, config=None, **overrides):
        self.config = pick_config(config, self.defaults, overrides)
        self.num_inference_steps = None
        self.timesteps = np.zeros(0)
        self._step_index = None
        self._begin_index = None

    @property
    def step_index(self):
        return self._step_index

    @property
    def begin_index(self):
        return self._begin_index

    def set_begin_index(self, begin_index=0):
        self._begin_index = begin_index

    def img2img_timesteps(self, steps, strength):
        """Timesteps left after skipping the first (1 - strength) of them.

        Same as StableDiffusionImg2ImgPipeline: set_timesteps(steps), then
        get_timesteps(), which also sets the begin index so the step index
        starts at t_start without looking the timestep up.  Use
        `timesteps[:1]` as the add_noise timestep.
        """
        self.set_timesteps(steps)
        init_timestep = min(int(steps * strength), steps)
        t_start = max(steps - init_timestep, 0)
        self.set_begin_index(t_start * self.order)
        return self.timesteps[t_start * self.order:]

    def __repr__(self):
        return f"{type(self).__name__}({self.config})"
