"""The numpy samplers must match diffusers' schedulers step for step.

Every case builds the diffusers scheduler from the same scheduler config
(`from_config`, as a pipeline does when you swap schedulers), feeds both the
same model outputs and the same noise, and compares timesteps, sigmas and
the latents after every step.  Nothing expected is hard-coded.
"""

import inspect
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from diffusers import (  # noqa: E402
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    StableDiffusionImg2ImgPipeline,
)

from onnxstream.schedulers import SAMPLERS, make_scheduler  # noqa: E402

diffusers.utils.logging.set_verbosity_error()  # from_config warns about PNDM-only keys
# diffusers' own np.array(tensor) calls warn under numpy 2; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SHAPE = (1, 4, 8, 8)
ATOL = 1e-5

# Real scheduler_config.json contents.
SD15 = {  # runwayml/stable-diffusion-v1-5
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
SD21 = {  # stabilityai/stable-diffusion-2-1 (768, v-prediction; no timestep_spacing key)
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
SD_TURBO = {  # stabilityai/sd-turbo
    "_class_name": "EulerDiscreteScheduler",
    "_diffusers_version": "0.24.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "trailing",
    "trained_betas": None,
    "use_karras_sigmas": False,
}
LCM_DREAMSHAPER = {  # SimianLuo/LCM_Dreamshaper_v7
    "_class_name": "LCMScheduler",
    "_diffusers_version": "0.22.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "dynamic_thresholding_ratio": 0.995,
    "num_train_timesteps": 1000,
    "original_inference_steps": 50,
    "prediction_type": "epsilon",
    "rescale_betas_zero_snr": False,
    "sample_max_value": 1.0,
    "set_alpha_to_one": True,
    "steps_offset": 1,
    "thresholding": False,
    "timestep_scaling": 10.0,
    "timestep_spacing": "leading",
    "trained_betas": None,
}
# Synthetic configs for the remaining code paths of common.py.
ZSNR_VPRED = {  # zero-terminal-SNR v-prediction finetune style
    "_class_name": "DDIMScheduler",
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
}
COSINE = {"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "linspace"}
TRAINED_SAMPLE = {  # trained_betas + x0-prediction; clip_sample left at class defaults
    "trained_betas": np.linspace(0.0001, 0.02, 1000).tolist(),
    "prediction_type": "sample",
    "timestep_spacing": "leading",
    "steps_offset": 1,
}

CONFIGS = {
    "sd15": SD15,
    "sd21": SD21,
    "sd_turbo": SD_TURBO,
    "lcm": LCM_DREAMSHAPER,
    "zsnr_vpred": ZSNR_VPRED,
    "cosine": COSINE,
    "trained_sample": TRAINED_SAMPLE,
}

DPM_FORCED = {"algorithm_type": "dpmsolver++", "solver_order": 2}
DIFFUSERS = {
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {**DPM_FORCED, "use_karras_sigmas": False}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {**DPM_FORCED, "use_karras_sigmas": True}),
    "lcm": (LCMScheduler, {}),
}

STEPS = [1, 2, 4, 20, 25]

MAX_DIFF = {"latents": 0.0, "rel": 0.0, "sigmas": 0.0, "compared": 0}


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print(
        f"\n[schedulers] {MAX_DIFF['compared']} arrays compared; max |diff| latents "
        f"{MAX_DIFF['latents']:.3g} (max rel {MAX_DIFF['rel']:.3g}), sigmas {MAX_DIFF['sigmas']:.3g}"
    )


def unsupported(name, config):
    # diffusers' EulerAncestral has no x0-prediction branch (NotImplementedError).
    return name == "euler_a" and config.get("prediction_type") == "sample"


def build(name, config, overrides=None):
    overrides = overrides or {}
    cls, forced = DIFFUSERS[name]
    theirs = cls.from_config(config, **{**forced, **overrides})
    ours = make_scheduler(name, config, **overrides)
    return ours, theirs


def close(ours, theirs, what, inputs=None):
    """max |ours - theirs| <= 1e-5 * max(1, |values|, |step inputs|)."""
    theirs = theirs.detach().numpy() if torch.is_tensor(theirs) else np.asarray(theirs)
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape, what
    # Where diffusers' own formula breaks down (NaN) ours must do the same.
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=what)
    ok = ~np.isnan(theirs)
    ours, theirs = ours[ok].astype(np.float64), theirs[ok].astype(np.float64)
    diff = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    scale = max(1.0, float(np.max(np.abs(theirs)))) if theirs.size else 1.0
    if inputs is not None:
        inputs = inputs.detach().numpy() if torch.is_tensor(inputs) else np.asarray(inputs)
        if not np.isnan(inputs).all():
            scale = max(scale, float(np.nanmax(np.abs(inputs))))
    if what == "sigmas":
        MAX_DIFF["sigmas"] = max(MAX_DIFF["sigmas"], diff)
    else:
        MAX_DIFF["latents"] = max(MAX_DIFF["latents"], diff)
        MAX_DIFF["rel"] = max(MAX_DIFF["rel"], diff / scale)
    MAX_DIFF["compared"] += 1
    # 1e-5 absolute for unit-scale latents, relative for sigma-scaled ones.
    # torch's float32 sqrt is not always correctly rounded (numpy's is), so
    # sigmas can be an ulp apart; Euler latents reach ~60 (or ~16000 with a
    # zero-SNR schedule, where the first step cancels down to ~20), hence the
    # scale includes the step's input magnitude.
    assert diff <= ATOL * scale, f"{what}: max |diff| {diff} (scale {scale})"


def same_timesteps(ours, theirs):
    theirs = theirs.numpy()
    assert ours.dtype == theirs.dtype
    if ours.dtype.kind == "f":
        # Float timesteps derived from sigmas (Karras, continuous) can be an ulp off.
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(ours, theirs)


def check_schedule(ours, theirs):
    same_timesteps(ours.timesteps, theirs.timesteps)
    if hasattr(theirs, "sigmas"):
        close(ours.sigmas, theirs.sigmas, "sigmas")
    np.testing.assert_allclose(ours.alphas_cumprod, theirs.alphas_cumprod.numpy(), rtol=1e-6, atol=1e-9)
    assert np.isclose(float(ours.init_noise_sigma), float(theirs.init_noise_sigma), rtol=1e-6)


def ill_conditioned(name, config):
    # Zero-SNR makes sigma_max 4096: Euler's first step cancels ~1.6e4-sized
    # terms down to ~20, so a 1-ulp sigma difference (torch sqrt) leaves a 1e-3
    # gap that the rest of an independent chain carries along.  For these the
    # loop restarts each step from diffusers' latents (per-step agreement).
    return name in ("euler", "euler_a") and bool(config.get("rescale_betas_zero_snr"))


def run_loop(ours, theirs, ts_ours, ts_theirs, lat_ours, lat_theirs, rng, eta=None, resync=False):
    """The pipeline's denoising loop, on both schedulers in lockstep."""
    accepts = inspect.signature(theirs.step).parameters
    assert len(ts_ours) == len(ts_theirs)
    for i, (t_o, t_t) in enumerate(zip(ts_ours, ts_theirs)):
        assert np.isclose(t_o, t_t.item(), rtol=1e-6, atol=1e-6)
        x_o = ours.scale_model_input(lat_ours, t_o)
        x_t = theirs.scale_model_input(lat_theirs, t_t)
        close(x_o, x_t, f"scale_model_input step {i}")

        model_out = rng.standard_normal(SHAPE).astype(np.float32)
        # Whatever diffusers draws from a generator seeded like this, ours gets too.
        seed = 1000 + i
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))
        kwargs = {}
        if "generator" in accepts:
            kwargs["generator"] = torch.Generator().manual_seed(seed)
        if eta is not None:
            kwargs["eta"] = eta
        before = lat_theirs
        lat_theirs = theirs.step(torch.from_numpy(model_out), t_t, lat_theirs, **kwargs).prev_sample
        lat_ours = ours.step(model_out, t_o, lat_ours, noise=noise.numpy())
        assert lat_ours.dtype == np.float32
        close(lat_ours, lat_theirs, f"latents after step {i} (t={t_o})", inputs=before)
        if resync:
            lat_ours = lat_theirs.numpy().copy()
    return lat_ours


def txt2img(name, config, steps, overrides=None, eta=None, seed=0):
    ours, theirs = build(name, config, overrides)
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    check_schedule(ours, theirs)
    rng = np.random.default_rng(seed)
    lat0 = rng.standard_normal(SHAPE).astype(np.float32)
    lat_ours = lat0 * ours.init_noise_sigma
    lat_theirs = torch.from_numpy(lat0) * theirs.init_noise_sigma
    close(lat_ours, lat_theirs, "initial latents")
    ts = theirs.timesteps
    if len(ts) > 1 and bool((ts == ts[0]).sum() > 1):
        # A repeated first timestep (DPM Karras on zero-SNR / cosine schedules):
        # the lookup takes the 2nd match and later runs off the end, in
        # diffusers and in ours alike.  Start at index 0 as SDXL's pipeline does.
        ours.set_begin_index(0)
        theirs.set_begin_index(0)
    run_loop(ours, theirs, ours.timesteps, theirs.timesteps, lat_ours, lat_theirs, rng, eta,
             resync=ill_conditioned(name, config))


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("name", list(DIFFUSERS))
def test_txt2img_loop(name, config_name, steps):
    config = CONFIGS[config_name]
    if unsupported(name, config):
        pytest.skip("diffusers does not implement this combination")
    txt2img(name, config, steps)


@pytest.mark.parametrize("strength", [0.3, 0.75, 1.0])
@pytest.mark.parametrize("steps", [1, 4, 25])
@pytest.mark.parametrize("config_name", ["sd15", "sd21", "sd_turbo", "lcm", "zsnr_vpred"])
@pytest.mark.parametrize("name", list(DIFFUSERS))
def test_img2img(name, config_name, steps, strength):
    config = CONFIGS[config_name]
    ours, theirs = build(name, config)
    ts_ours = ours.img2img_timesteps(steps, strength)
    theirs.set_timesteps(steps)
    # The real pipeline method, run against a stand-in pipeline object.
    ts_theirs, n = StableDiffusionImg2ImgPipeline.get_timesteps(
        SimpleNamespace(scheduler=theirs), steps, strength, "cpu"
    )
    same_timesteps(ts_ours, ts_theirs)
    assert n == len(ts_ours)
    assert ours.begin_index == getattr(theirs, "begin_index", ours.begin_index)
    if len(ts_ours) == 0:
        return  # strength too low for even one step: nothing to noise or denoise
    rng = np.random.default_rng(1)
    init = rng.standard_normal(SHAPE).astype(np.float32)
    noise = rng.standard_normal(SHAPE).astype(np.float32)
    lat_ours = ours.add_noise(init, noise, ts_ours[:1])
    lat_theirs = theirs.add_noise(torch.from_numpy(init), torch.from_numpy(noise), ts_theirs[:1])
    close(lat_ours, lat_theirs, "add_noise")
    if unsupported(name, config):
        return
    run_loop(ours, theirs, ts_ours, ts_theirs, lat_ours, lat_theirs, rng,
             resync=ill_conditioned(name, config))


# Non-default options the samplers also honour.
OPTIONS = [
    ("euler", "sd15", {"use_karras_sigmas": True}),
    ("euler", "sd15", {"use_exponential_sigmas": True}),
    ("euler", "sd21", {"timestep_spacing": "leading"}),
    ("euler", "sd21", {"timestep_type": "continuous", "final_sigmas_type": "sigma_min"}),
    ("euler", "sd15", {"interpolation_type": "log_linear"}),
    ("euler_a", "sd15", {"timestep_spacing": "leading"}),
    ("euler_a", "cosine", {"timestep_spacing": "trailing"}),
    ("ddim", "sd15", {"timestep_spacing": "linspace"}),
    ("ddim", "sd15", {"thresholding": True, "sample_max_value": 1.5}),
    ("ddim", "sd21", {"clip_sample": True, "clip_sample_range": 0.8}),
    ("dpmpp_2m", "sd15", {"timestep_spacing": "leading"}),
    ("dpmpp_2m", "sd15", {"timestep_spacing": "trailing"}),
    ("dpmpp_2m", "sd21", {"solver_type": "heun"}),
    ("dpmpp_2m", "sd15", {"solver_order": 3}),
    ("dpmpp_2m", "sd15", {"solver_order": 1}),
    ("dpmpp_2m", "sd15", {"final_sigmas_type": "sigma_min", "lower_order_final": False}),
    ("dpmpp_2m", "sd15", {"euler_at_final": True}),
    ("dpmpp_2m", "sd15", {"thresholding": True, "sample_max_value": 1.5, "prediction_type": "sample"}),
    ("dpmpp_2m", "sd15", {"lambda_min_clipped": -5.1}),
    ("dpmpp_2m_karras", "cosine", {}),
    ("dpmpp_2m_karras", "sd21", {"final_sigmas_type": "sigma_min"}),
    ("lcm", "sd15", {"clip_sample": True}),
    ("lcm", "lcm", {"thresholding": True, "prediction_type": "sample"}),
    ("lcm", "lcm", {"original_inference_steps": 100, "timestep_scaling": 5.0}),
]


@pytest.mark.parametrize("steps", [4, 25])
@pytest.mark.parametrize("name,config_name,overrides", OPTIONS)
def test_options(name, config_name, overrides, steps):
    txt2img(name, CONFIGS[config_name], steps, overrides, seed=2)


@pytest.mark.parametrize("steps", [1, 4, 25])
@pytest.mark.parametrize("config_name", ["sd15", "sd21"])
def test_ddim_eta(config_name, steps):
    txt2img("ddim", CONFIGS[config_name], steps, {"eta": 0.7}, eta=0.7, seed=3)


@pytest.mark.parametrize("strength", [0.5, 1.0])
@pytest.mark.parametrize("steps", [1, 4, 8])
def test_lcm_strength_schedule(steps, strength):
    # LatentConsistencyModelImg2ImgPipeline's way: strength goes to set_timesteps.
    ours, theirs = build("lcm", LCM_DREAMSHAPER)
    ours.set_timesteps(steps, strength=strength)
    theirs.set_timesteps(steps, strength=strength)
    np.testing.assert_array_equal(ours.timesteps, theirs.timesteps.numpy())


def test_sd_turbo_one_step():
    # Trailing spacing makes the single step start at the last training step.
    ours = make_scheduler("euler", SD_TURBO)
    ours.set_timesteps(1)
    theirs = EulerDiscreteScheduler.from_config(SD_TURBO)
    theirs.set_timesteps(1)
    assert ours.timesteps.tolist() == theirs.timesteps.tolist()
    assert ours.timesteps[0] == SD_TURBO["num_train_timesteps"] - 1
    assert ours.sigmas[-1] == 0 and ours.init_noise_sigma == ours.sigmas[0]


def test_unknown_sampler():
    with pytest.raises(ValueError) as err:
        make_scheduler("heun", SD15)
    for valid in SAMPLERS:
        assert valid in str(err.value)


def test_noise_required():
    for name in ("euler_a", "lcm"):
        s = make_scheduler(name, SD15)
        s.set_timesteps(4)
        t = s.timesteps[0]
        x = np.zeros(SHAPE, np.float32)
        with pytest.raises(ValueError):
            s.step(x, t, s.scale_model_input(x, t))


def test_names_match_diffusers_table():
    assert set(SAMPLERS) == set(DIFFUSERS)


@pytest.mark.parametrize("name", list(DIFFUSERS))
def test_defaults_match_diffusers(name):
    # Same config keys and class defaults as the diffusers constructor.
    cls, _ = DIFFUSERS[name]
    params = inspect.signature(cls.__init__).parameters
    theirs = {k: p.default for k, p in params.items() if k not in ("self", "kwargs")}
    ours_cls, _ = SAMPLERS[name]
    assert ours_cls.defaults == theirs
