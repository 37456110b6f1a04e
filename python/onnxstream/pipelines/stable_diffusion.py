"""Stable Diffusion txt2img / img2img on a converted pipeline directory (numpy + onnxstream only).

    sd = StableDiffusion("sd15-converted")
    image = sd("a cat on a sofa", steps=20, guidance=7.5, sampler="euler", seed=42)

Reads top to bottom like diffusers' StableDiffusionPipeline: tokenize -> text encoder -> initial latents ->
loop over timesteps (one batch-2 UNet pass for [uncond, cond], guidance, scheduler step) -> VAE decode.

Random numbers: `np.random.Generator(np.random.PCG64(seed)).standard_normal(shape)` (float64, cast to float32),
so a seed gives the same image on x86 and ARM. Draw order: initial noise (txt2img) or VAE-encoder sample then
add_noise noise (img2img), then one draw per step for the noisy samplers (euler_a, lcm) - the order diffusers
uses, so passing `generator=` an object whose standard_normal(shape) draws from a torch.Generator reproduces
diffusers' images exactly. img2img samples the VAE latent distribution (mean + std * noise) as diffusers does.

Sizes: the engine fixes shapes at convert time, so width/height must be the converted size (manifest.json).
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import numpy as np

from ..schedulers import SAMPLERS, make_scheduler
from ..tokenizer import CLIPTokenizer
from .images import load_image
from .latents_file import load_latents
from .latents_file import save_latents as save_latents_file

NOISY_SAMPLERS = ("euler_a", "lcm")  # draw fresh noise at every step
FAMILY_DEFAULTS = {"sd1": (20, 7.5), "sd2": (20, 7.5), "sd-turbo": (1, 0.0)}  # steps, guidance


class PortableRNG:
    """Seeded standard normal draws that are identical on every platform (PCG64 + numpy's ziggurat)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.generator = np.random.Generator(np.random.PCG64(seed))

    def standard_normal(self, shape):
        return self.generator.standard_normal(shape).astype(np.float32)

    def get_state(self):
        return self.generator.bit_generator.state

    def set_state(self, state):
        self.generator.bit_generator.state = state


class OnnxRuntimePart:
    """A part kept as model.onnx (convert --onnx-only), run with onnxruntime: a reference path for tests."""

    def __init__(self, path: Path, threads=None):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        types = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32"}
        self.input_dtypes = {i.name: types.get(i.type, "float32") for i in self.session.get_inputs()}

    def run(self, feeds):
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(None, feeds)))


def load_part(path: Path, threads=None):
    if (path / "graph.json").is_file():
        from ..runtime.executor import Session
        session = Session(path, threads=threads)
        session.input_dtypes = {v.name: v.dtype for v in session.inputs}
        return session
    if (path / "model.onnx").is_file():
        return OnnxRuntimePart(path / "model.onnx", threads)
    raise ValueError(f"the model directory is missing a part: {path} (no graph.json)")


def _first(outputs: dict) -> np.ndarray:
    return next(iter(outputs.values()))


class StableDiffusion:
    def __init__(self, model_dir, threads=None):
        self.model_dir = Path(model_dir)
        manifest = self.model_dir / "manifest.json"
        if not manifest.is_file():
            raise ValueError(f"{self.model_dir} is not a converted pipeline (no manifest.json); "
                             f"make one with: onnxstream convert DIFFUSERS_DIR {self.model_dir}")
        self.manifest = json.loads(manifest.read_text())
        self.threads = threads
        for part in ["text_encoder", "vae_decoder", *self.manifest["unet_batches"].values()]:
            if not (self.model_dir / part).is_dir():
                raise ValueError(f"the model directory is missing a part: {self.model_dir / part}")
        for name in ("tokenizer", "scheduler/scheduler_config.json"):
            if not (self.model_dir / name).exists():
                raise ValueError(f"the model directory is missing {self.model_dir / name}")
        self.tokenizer = CLIPTokenizer.from_dir(self.model_dir / "tokenizer")
        self.scheduler_config = json.loads((self.model_dir / "scheduler" / "scheduler_config.json").read_text())
        self.family = self.manifest["family"]
        self.width, self.height = self.manifest["width"], self.manifest["height"]
        self.latent_shape = (1, self.manifest["latent_channels"], self.manifest["latent_height"],
                             self.manifest["latent_width"])
        self.unet_batches = {int(b): name for b, name in self.manifest["unet_batches"].items()}
        self._parts = {}

    def part(self, name):
        if name not in self._parts:  # opened on first use: img2img-only parts cost nothing in txt2img
            self._parts[name] = load_part(self.model_dir / name, self.threads)
        return self._parts[name]

    # ------------------------------------------------------------------ the networks

    def encode_prompt(self, text: str) -> np.ndarray:
        ids = np.array([self.tokenizer.encode(text)], dtype=np.int64)  # [1, 77]
        return _first(self.part("text_encoder").run({"input_ids": ids}))  # [1, 77, D]

    def unet(self, x: np.ndarray, t, context: np.ndarray) -> np.ndarray:
        """UNet on a batch [B, C, h, w] (B = 1 or 2), using the converted batch size (split or padded if need be)."""
        batch = x.shape[0]
        if batch not in self.unet_batches:
            if batch == 2:  # only a batch-1 UNet: two passes
                return np.concatenate([self.unet(x[i:i + 1], t, context[i:i + 1]) for i in range(2)])
            # only a batch-2 UNet: pad with a copy (costs a second image's compute, but reads weights once)
            return self.unet(np.concatenate([x, x]), t, np.concatenate([context, context]))[:1]
        part = self.part(self.unet_batches[batch])
        timestep = np.array([t], dtype=part.input_dtypes.get("timestep", "float32"))
        return _first(part.run({"sample": np.ascontiguousarray(x, dtype=np.float32), "timestep": timestep,
                                "encoder_hidden_states": context}))

    def vae_encode(self, image: np.ndarray, rng) -> np.ndarray:
        """[1, 3, H, W] in [-1, 1] -> scaled latents, sampled from the latent distribution like diffusers."""
        moments = _first(self.part("vae_encoder").run({"sample": image}))
        if moments.shape[1] == self.latent_shape[1]:  # an older optimum export that samples inside the graph
            latents = moments
        else:  # mean and log-variance, as diffusers' DiagonalGaussianDistribution
            mean, logvar = np.split(moments, 2, axis=1)
            std = np.exp(np.float32(0.5) * np.clip(logvar, -30.0, 20.0)).astype(np.float32)
            latents = mean + std * rng.standard_normal(mean.shape)
        shift = self.manifest.get("vae_shift_factor") or 0.0
        return ((latents - np.float32(shift)) * np.float32(self.manifest["vae_scaling_factor"])).astype(np.float32)

    def vae_decode(self, latents: np.ndarray) -> np.ndarray:
        """Scaled latents [1, C, h, w] -> float32 image H x W x 3 in [0, 1] (diffusers' postprocess)."""
        shift = self.manifest.get("vae_shift_factor") or 0.0
        x = (latents / np.float32(self.manifest["vae_scaling_factor"]) + np.float32(shift)).astype(np.float32)
        image = _first(self.part("vae_decoder").run({"latent_sample": x}))
        return np.clip(image / np.float32(2) + np.float32(0.5), 0, 1)[0].transpose(1, 2, 0).astype(np.float32)

    # ------------------------------------------------------------------ txt2img / img2img

    def check(self, sampler, width, height, steps, strength, init_image):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if width % 8 or height % 8 or width < 64 or height < 64:
            raise ValueError(f"width and height must be multiples of 8 and at least 64, got {width}x{height}")
        if (width, height) != (self.width, self.height):
            raise ValueError(f"this model was converted for {self.width}x{self.height} images, not {width}x{height} "
                             f"(shapes are fixed at convert time: convert again with --width {width} --height {height})")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if init_image is not None and not (0 < strength <= 1 and int(steps * strength) >= 1):
            raise ValueError(f"strength must be in (0, 1] and leave at least one step (steps * strength >= 1), "
                             f"got strength {strength} with {steps} steps")

    def __call__(self, prompt, negative_prompt=None, steps=None, guidance=None, sampler="euler", seed=None,
                 width=None, height=None, latents=None, init_image=None, strength=0.8, output_type="pil", num=1,
                 progress=None, generator=None, save_latents=None, resume=None):
        """Generate `num` images; returns one image (num == 1) or a list, or float32 [num, H, W, 3] for "np".

        steps/guidance default to 20/7.5 (1/0.0 for sd-turbo); guidance <= 1 skips the unconditional pass.
        latents: unit-variance initial noise [num or 1, C, h, w] (like diffusers' `latents`; img2img: the noise
        added to the encoded image). generator: anything with standard_normal(shape) (default PortableRNG(seed)).
        progress(step, total, seconds_per_step) is called after every step. save_latents: file rewritten
        atomically after every step; resume: such a file to continue from (its parameters win)."""
        state = load_latents(resume) if resume else None
        if state is not None:
            p = state["params"]
            prompt, negative_prompt, steps, guidance, sampler = (p["prompt"], p["negative_prompt"], p["steps"],
                                                                  p["guidance"], p["sampler"])
            seed, strength, num = p["seed"], p["strength"], p["num"]
        default_steps, default_guidance = FAMILY_DEFAULTS.get(self.family, (20, 7.5))
        steps = default_steps if steps is None else int(steps)
        guidance = default_guidance if guidance is None else float(guidance)
        width, height = width or self.width, height or self.height
        self.check(sampler, width, height, steps, strength, init_image if state is None else None)
        if seed is None and generator is None:
            seed = secrets.randbits(63)
        rng = generator or PortableRNG(seed)
        if init_image is not None and state is None:
            init_image = load_image(init_image, width, height)
        params = dict(prompt=prompt, negative_prompt=negative_prompt, steps=steps, guidance=guidance,
                      sampler=sampler, seed=seed, width=width, height=height, strength=strength, num=num,
                      img2img=init_image is not None if state is None else state["params"]["img2img"])
        self.last_params = params

        use_cfg = guidance > 1  # as diffusers: guidance 1 (or Turbo's 0) needs no unconditional pass
        context = self.encode_prompt(prompt)
        if use_cfg:
            context = np.concatenate([self.encode_prompt(negative_prompt or ""), context])  # [uncond, cond]

        first_image = state["image_index"] if state else 0
        images = list(state["images"]) if state else []
        for index in range(first_image, num):
            sched = make_scheduler(sampler, self.scheduler_config)
            if params["img2img"]:
                timesteps = sched.img2img_timesteps(steps, strength)
            else:
                sched.set_timesteps(steps)
                timesteps = sched.timesteps
            if state is not None and index == first_image:
                x, done = state["latents"], state["done"]
                state["restore"](sched, rng)
            else:
                noise = latents[index if len(latents) > 1 else 0][None] if latents is not None else None
                done = 0
                if params["img2img"]:
                    init = self.vae_encode(init_image, rng)
                    noise = rng.standard_normal(init.shape) if noise is None else noise
                    x = sched.add_noise(init, noise.astype(np.float32), timesteps[:1])
                else:
                    noise = rng.standard_normal(self.latent_shape) if noise is None else noise
                    x = (noise.astype(np.float32) * np.float32(sched.init_noise_sigma)).astype(np.float32)
            for i in range(done, len(timesteps)):
                start = time.perf_counter()
                t = timesteps[i]
                x_in = sched.scale_model_input(x, t)
                if use_cfg:
                    eps_uncond, eps_cond = np.split(self.unet(np.concatenate([x_in, x_in]), t, context), 2)
                    eps = eps_uncond + np.float32(guidance) * (eps_cond - eps_uncond)
                else:
                    eps = self.unet(x_in, t, context)
                noise = rng.standard_normal(x.shape) if sampler in NOISY_SAMPLERS else None
                x = sched.step(eps, t, x, noise=noise)
                if save_latents:
                    save_latents_file(save_latents, latents=x, done=i + 1, image_index=index, images=images,
                                      params=params, scheduler=sched, rng=rng)
                if progress:
                    progress(index * len(timesteps) + i + 1, num * len(timesteps), time.perf_counter() - start)
            images.append(self.vae_decode(x))
        return self._output(np.stack(images), output_type, num)

    @staticmethod
    def _output(images, output_type, num):
        if output_type == "np":
            return images
        if output_type != "pil":
            raise ValueError(f"output_type must be 'pil' or 'np', not {output_type!r}")
        from PIL import Image
        from .images import to_uint8
        pil = [Image.fromarray(to_uint8(im)) for im in images]
        return pil[0] if num == 1 else pil

