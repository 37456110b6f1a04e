"""Diffusion samplers in pure numpy, numerically matching diffusers.

    sched = make_scheduler("euler_a", scheduler_config_dict)
    sched.set_timesteps(20)
    latents = noise * sched.init_noise_sigma
    for t in sched.timesteps:
        x_in = sched.scale_model_input(latents, t)
        eps = unet(x_in, t)                       # (with CFG etc.)
        latents = sched.step(eps, t, latents, noise=rng.standard_normal(latents.shape))

`noise` is only needed by euler_a and lcm (and ddim with eta > 0); the
caller owns the RNG.  For img2img use `img2img_timesteps(steps, strength)`
and `add_noise(init_latents, noise, timesteps[:1])`.

The step index is found by looking the first timestep up, like
StableDiffusionPipeline.  If a schedule repeats its first timestep (DPM Karras
on zero-SNR or cosine schedules) that lookup picks the 2nd match and the loop
runs off the end, exactly as in diffusers; call `set_begin_index(0)` after
`set_timesteps` (what SDXL's pipeline does) to avoid it.

`config` is a model's diffusers scheduler_config.json (any `_class_name`);
each sampler takes the keys the matching diffusers class would take.
"""

from .ddim import DDIMScheduler
from .dpmpp_2m import DPMPP2MScheduler
from .euler import EulerScheduler
from .euler_ancestral import EulerAncestralScheduler
from .lcm import LCMScheduler

# name -> (class, options forced on top of the model config)
SAMPLERS = {
    "euler": (EulerScheduler, {}),
    "euler_a": (EulerAncestralScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpmpp_2m": (DPMPP2MScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "dpmpp_2m_karras": (DPMPP2MScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "lcm": (LCMScheduler, {}),
}


def make_scheduler(name, config=None, **overrides):
    """Build sampler `name` from a diffusers scheduler config dict.

    Extra keyword options override config keys (e.g. timestep_spacing=
    "trailing"); `eta` is also accepted for ddim.
    """
    try:
        cls, forced = SAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"unknown sampler {name!r}; valid names: {', '.join(SAMPLERS)}"
        ) from None
    return cls(config or {}, **{**forced, **overrides})


__all__ = [
    "make_scheduler",
    "SAMPLERS",
    "EulerScheduler",
    "EulerAncestralScheduler",
    "DDIMScheduler",
    "DPMPP2MScheduler",
    "LCMScheduler",
]
