"""Stable Diffusion txt2img / img2img on a converted pipeline directory (numpy + onnxstream only).

    sd = StableDiffusion("sd15-converted")
    image = sd("a cat on a sofa", steps=20, guidance=7.5, sampler="euler", seed=42)

Reads top to bottom like diffusers' StableDiffusionPipeline: tokenize -> text encoder -> initial latents ->
loop over timesteps (one UNet pass per step for all images: batch 2*num [uncond..., cond...] with guidance,
num without; so the UNet's weights are read once per step) -> VAE decode per image.

Random numbers: `np.random.Generator(np.random.PCG64(seed)).standard_normal(shape)` (float64, cast to float32),
so a seed gives the same image on x86 and ARM; image i of a `num` batch uses seed + i. Draw order (per image): initial noise (txt2img) or VAE-encoder sample then
add_noise noise (img2img), then one draw per step for the noisy samplers (euler_a, lcm) - the order diffusers
uses, so passing `generator=` an object whose standard_normal(shape) draws from a torch.Generator reproduces
diffusers' images exactly. img2img samples the VAE latent distribution (mean + std * noise) as diffusers does.

Sizes: the engine fixes shapes at convert time, so width/height must be the converted size and 2*num (num
without guidance) must fit a converted UNet batch size (manifest.json "unet_batches"; convert --unet-batch).

Autoencoders: decoder="vae" (the full VAE) or "taesd" (the tiny autoencoder, convert --tiny-vae) decodes the
final latents and, in img2img, encodes the init image (as diffusers' pipelines do with `pipe.vae =
AutoencoderTiny(...)`: TAESD's encoder gives a point, not a distribution, so it draws no noise). preview=FILE or
preview(step, total, images) shows the sampler's current estimate of the final latents every preview_every steps,
decoded with TAESD when the model has it (else the full VAE).
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
from .sdxl_conditioning import SDXLConditioning, micro_conditioning

NOISY_SAMPLERS = ("euler_a", "lcm")  # draw fresh noise at every step
FAMILY_DEFAULTS = {"sd1": (20, 7.5), "sd2": (20, 7.5), "sd-turbo": (1, 0.0),  # steps, guidance
                   "sdxl": (20, 5.0), "sdxl-turbo": (1, 0.0)}
DECODERS = ("vae", "taesd")


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


class BatchNoise:
    """Noise for a batch of `num` images. Given one generator per image (the default: PortableRNG(seed + i)
    for image i), image i draws only from its own generator, so `num=2, seed=s` gives the images of two
    runs with seeds s and s + 1. Given a single generator, it draws the whole batch at once (as diffusers
    does with one torch.Generator)."""

    def __init__(self, generators, num):
        self.generators = list(generators) if isinstance(generators, (list, tuple)) else [generators]
        if len(self.generators) not in (1, num):
            raise ValueError(f"pass one generator or {num} (one per image), got {len(self.generators)}")

    def standard_normal(self, shape):
        if len(self.generators) == 1:
            return np.asarray(self.generators[0].standard_normal(tuple(shape)), np.float32)
        one = (1,) + tuple(shape[1:])
        return np.concatenate([np.asarray(g.standard_normal(one), np.float32) for g in self.generators])

    def get_state(self):
        if all(hasattr(g, "get_state") for g in self.generators):
            return [g.get_state() for g in self.generators]
        return None

    def set_state(self, states):
        for g, state in zip(self.generators, states):
            g.set_state(state)


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
        # resident_bytes=0: every part streams. A text encoder runs once per picture and the UNet never fits; an int8
        # text encoder or fp16 VAE kept resident (< 128 MB) would only add to the peak while the others run.
        session = Session(path, threads=threads, resident_bytes=0)
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
        # SDXL: two text encoders, pooled text embeddings and micro-conditioning (sdxl_conditioning.py)
        self.sdxl = SDXLConditioning(self.model_dir, self.manifest) if "text_encoders" in self.manifest else None
        encoders, tokenizers = (self.sdxl.parts(), self.sdxl.tokenizer_dirs()) if self.sdxl else (["text_encoder"],
                                                                                                  ["tokenizer"])
        for part in [*encoders, "vae_decoder", *self.manifest["unet_batches"].values()]:
            if not (self.model_dir / part).is_dir():
                raise ValueError(f"the model directory is missing a part: {self.model_dir / part}")
        for name in (*tokenizers, "scheduler/scheduler_config.json"):
            if not (self.model_dir / name).exists():
                raise ValueError(f"the model directory is missing {self.model_dir / name}")
        self.tokenizer = None if self.sdxl else CLIPTokenizer.from_dir(self.model_dir / "tokenizer")
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

    def encode_prompt(self, text: str) -> dict:
        """One prompt -> the UNet's text inputs: {"encoder_hidden_states": [1, 77, D]} (SDXL: + "text_embeds")."""
        if self.sdxl:
            return self.sdxl.encode(text, self.part)
        ids = np.array([self.tokenizer.encode(text)], dtype=np.int64)  # [1, 77]
        return {"encoder_hidden_states": _first(self.part("text_encoder").run({"input_ids": ids}))}  # [1, 77, D]

    def text_conditioning(self, prompt, negative_prompt, num, use_cfg, micro) -> dict:
        """The UNet's conditioning inputs for the batch [uncond x num, cond x num] (guidance) or [cond x num]."""
        cond = self.encode_prompt(prompt)
        if self.sdxl:
            cond["time_ids"] = self.sdxl.time_ids(micro, negative=False)                 # [1, 6]
        cond = {k: np.repeat(v, num, axis=0) for k, v in cond.items()}
        if not use_cfg:
            return cond
        if self.sdxl and self.sdxl.zeros_for_empty_negative(negative_prompt):
            uncond = {k: np.zeros_like(v[:1]) for k, v in cond.items() if k != "time_ids"}
        else:
            uncond = self.encode_prompt(negative_prompt or "")
        if self.sdxl:
            uncond["time_ids"] = self.sdxl.time_ids(micro, negative=True)
        return {k: np.concatenate([np.repeat(uncond[k], num, axis=0), v]) for k, v in cond.items()}

    def unet(self, x: np.ndarray, t, cond: dict) -> np.ndarray:
        """UNet on a batch [B, C, h, w] in ONE pass (weights read once), with the converted batch size B, or
        the smallest larger one (padded with copies: more compute, still one weight read). cond: the conditioning
        inputs by name, [B, ...] each (text_conditioning)."""
        batch = x.shape[0]
        fits = [b for b in self.unet_batches if b >= batch]
        if not fits:
            raise ValueError(self.batch_error(batch))
        size = min(fits)
        if size > batch:
            pad = [0] * (size - batch)
            return self.unet(np.concatenate([x, x[pad]]), t,
                             {k: np.concatenate([v, v[pad]]) for k, v in cond.items()})[:batch]
        part = self.part(self.unet_batches[size])
        timestep = np.array([t], dtype=part.input_dtypes.get("timestep", "float32"))
        feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in cond.items()}
        return _first(part.run({"sample": np.ascontiguousarray(x, dtype=np.float32), "timestep": timestep, **feeds}))

    def batch_error(self, batch):
        have = sorted(self.unet_batches)
        with_cfg = [b // 2 for b in have if b % 2 == 0]
        return (f"this model's UNet was converted for batch sizes {have}, which serve --num up to {max(have)} "
                f"without guidance (guidance <= 1) and up to {max(with_cfg, default=0)} with guidance; "
                f"a batch of {batch} needs converting again with --unet-batch {batch} "
                f"(--num N takes batch 2N with guidance, N without)")

    @property
    def decoders(self) -> list:
        """The autoencoders this model has: ["vae"], or ["vae", "taesd"] when converted with --tiny-vae."""
        return ["vae", "taesd"] if self.manifest.get("tiny_vae") else ["vae"]

    def autoencoder(self, decoder: str):
        """"vae" | "taesd" -> (decoder part, encoder part or None, scaling factor, shift factor)."""
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
        if decoder == "vae":
            m = self.manifest
            return "vae_decoder", "vae_encoder", m["vae_scaling_factor"], m.get("vae_shift_factor") or 0.0
        tiny = self.manifest.get("tiny_vae")
        if not tiny:
            raise ValueError(f"{self.model_dir} has no TAESD decoder; convert the model again with --tiny-vae "
                             f"madebyollin/taesd (a hub id or a local AutoencoderTiny directory)")
        return tiny["decoder"], tiny.get("encoder"), tiny["scaling_factor"], tiny.get("shift_factor") or 0.0

    def vae_encode(self, image: np.ndarray, rng, num=1, decoder="vae") -> np.ndarray:
        """[1, 3, H, W] in [-1, 1] -> scaled latents [num, C, h, w]: one encoder pass, then one sample of the
        latent distribution per image (like diffusers; TAESD's encoder gives the latents themselves)."""
        _, encoder, scaling, shift = self.autoencoder(decoder)
        if encoder is None:
            raise ValueError(f"{self.model_dir} has no TAESD encoder for img2img; use decoder 'vae'")
        moments = _first(self.part(encoder).run({"sample": image}))
        if moments.shape[1] == self.latent_shape[1]:  # an older optimum export that samples inside the graph
            latents = np.repeat(moments, num, axis=0)
        else:  # mean and log-variance, as diffusers' DiagonalGaussianDistribution
            mean, logvar = np.split(moments, 2, axis=1)
            std = np.exp(np.float32(0.5) * np.clip(logvar, -30.0, 20.0)).astype(np.float32)
            latents = mean + std * rng.standard_normal((num,) + mean.shape[1:])
        return ((latents - np.float32(shift)) * np.float32(scaling)).astype(np.float32)

    def vae_decode(self, latents: np.ndarray, decoder="vae") -> np.ndarray:
        """Scaled latents [1, C, h, w] -> float32 image H x W x 3 in [0, 1] (diffusers' postprocess)."""
        part, _, scaling, shift = self.autoencoder(decoder)
        x = (latents / np.float32(scaling) + np.float32(shift)).astype(np.float32)
        image = _first(self.part(part).run({"latent_sample": x}))
        return np.clip(image / np.float32(2) + np.float32(0.5), 0, 1)[0].transpose(1, 2, 0).astype(np.float32)

    # ------------------------------------------------------------------ txt2img / img2img

    def check(self, sampler, width, height, steps, strength, init_image, decoder, preview_every):
        _, encoder, _, _ = self.autoencoder(decoder)
        if init_image is not None and encoder is None:
            raise ValueError(f"{self.model_dir} has no TAESD encoder for img2img; use decoder 'vae'")
        if preview_every < 1:
            raise ValueError(f"preview_every must be at least 1, got {preview_every}")
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
                 progress=None, generator=None, save_latents=None, resume=None, decoder="vae", preview=None,
                 preview_every=1, original_size=None, crops_coords_top_left=(0, 0), target_size=None,
                 aesthetic_score=6.0, negative_aesthetic_score=2.5):
        """Generate `num` images; returns one image (num == 1) or a list, or float32 [num, H, W, 3] for "np".

        steps/guidance default to 20/7.5 (1/0.0 for sd-turbo); guidance <= 1 skips the unconditional pass.
        latents: unit-variance initial noise [num or 1, C, h, w] (like diffusers' `latents`; img2img: the noise
        added to the encoded image). generator: anything with standard_normal(shape), or a list of `num` such
        (default: PortableRNG(seed + i) for image i, so image i of a batch is the image of a run with seed + i).
        progress(step, total, seconds_per_step) is called after every step. save_latents: file rewritten
        atomically after every step; resume: such a file to continue from (its parameters win).
        decoder: "vae" (default) or "taesd" (needs convert --tiny-vae), for the final decode and img2img's encode.
        preview: a PNG path (rewritten atomically) or a function preview(step, total, images [num, H, W, 3] in
        [0, 1]), given the sampler's estimate of the final image after every preview_every-th step (not after the
        last: the result follows); decoded with TAESD when converted, else the full VAE.
        SDXL micro-conditioning (sdxl_conditioning.py): original_size, crops_coords_top_left, target_size as
        (height, width), default the image size and (0, 0); aesthetic_score / negative_aesthetic_score (refiners)."""
        state = load_latents(resume) if resume else None
        if state is not None:
            p = state["params"]
            prompt, negative_prompt, steps, guidance, sampler = (p["prompt"], p["negative_prompt"], p["steps"],
                                                                  p["guidance"], p["sampler"])
            seed, strength, num = p["seed"], p["strength"], p["num"]
            decoder = p.get("decoder", "vae")  # files saved before decoders were selectable
            if "micro" in p:
                original_size, crops_coords_top_left, target_size = (p["micro"]["original_size"],
                                                                     p["micro"]["crops_coords_top_left"],
                                                                     p["micro"]["target_size"])
                aesthetic_score, negative_aesthetic_score = (p["micro"]["aesthetic_score"],
                                                             p["micro"]["negative_aesthetic_score"])
        default_steps, default_guidance = FAMILY_DEFAULTS.get(self.family, (20, 7.5))
        steps = default_steps if steps is None else int(steps)
        guidance = default_guidance if guidance is None else float(guidance)
        width, height = width or self.width, height or self.height
        self.check(sampler, width, height, steps, strength, init_image if state is None else None, decoder,
                   preview_every)
        if num < 1:
            raise ValueError(f"num must be at least 1, got {num}")
        use_cfg = guidance > 1  # as diffusers: guidance 1 (or Turbo's 0) needs no unconditional pass
        if not any(b >= num * (2 if use_cfg else 1) for b in self.unet_batches):
            raise ValueError(self.batch_error(num * (2 if use_cfg else 1)))
        if seed is None and generator is None:
            seed = secrets.randbits(63)
        rng = BatchNoise(generator if generator is not None else [PortableRNG(seed + i) for i in range(num)], num)
        if init_image is not None and state is None:
            init_image = load_image(init_image, width, height)
        params = dict(prompt=prompt, negative_prompt=negative_prompt, steps=steps, guidance=guidance,
                      sampler=sampler, seed=seed, width=width, height=height, strength=strength, num=num,
                      decoder=decoder,
                      img2img=init_image is not None if state is None else state["params"]["img2img"])
        micro = None
        if self.sdxl:
            self.sdxl.check(params["img2img"])
            micro = params["micro"] = micro_conditioning(height, width, original_size, crops_coords_top_left,
                                                         target_size, aesthetic_score, negative_aesthetic_score)
        self.last_params = params

        # All `num` images step together: one UNet pass per step on [uncond x num, cond x num] (or cond x num).
        cond = self.text_conditioning(prompt, negative_prompt, num, use_cfg, micro)
        sched = make_scheduler(sampler, self.scheduler_config)
        if params["img2img"]:
            timesteps = sched.img2img_timesteps(steps, strength)
        else:
            sched.set_timesteps(steps)
            if self.sdxl:
                sched.set_begin_index(0)   # as StableDiffusionXLPipeline (matters where a schedule repeats a step)
            timesteps = sched.timesteps
        shape = (num,) + self.latent_shape[1:]
        if state is not None:
            x, done = state["latents"], state["done"]
            if x.shape != shape or done > len(timesteps):
                raise ValueError(f"{resume} was saved by a run of another model or size (latents {list(x.shape)}, "
                                 f"this model's {list(shape)})")
            state["restore"](sched, rng)
        else:
            noise = None
            if latents is not None:
                noise = np.asarray(latents, np.float32)
                noise = np.broadcast_to(noise, shape) if noise.shape[0] == 1 else noise
                if noise.shape != shape:
                    raise ValueError(f"latents must have shape {shape} (or a batch of 1), got {noise.shape}")
            done = 0
            if params["img2img"]:
                init = self.vae_encode(init_image, rng, num, decoder)  # [num, C, h, w]: one encoder pass
                noise = rng.standard_normal(init.shape) if noise is None else noise
                x = sched.add_noise(init, noise.astype(np.float32), timesteps[:1])
            else:
                noise = rng.standard_normal(shape) if noise is None else noise
                x = (noise.astype(np.float32) * np.float32(sched.init_noise_sigma)).astype(np.float32)
        for i in range(done, len(timesteps)):
            start = time.perf_counter()
            t = timesteps[i]
            x_in = sched.scale_model_input(x, t)
            if use_cfg:
                eps_uncond, eps_cond = np.split(self.unet(np.concatenate([x_in, x_in]), t, cond), 2)
                eps = eps_uncond + np.float32(guidance) * (eps_cond - eps_uncond)
            else:
                eps = self.unet(x_in, t, cond)
            noise = rng.standard_normal(x.shape) if sampler in NOISY_SAMPLERS else None
            x = sched.step(eps, t, x, noise=noise)
            if save_latents:
                save_latents_file(save_latents, latents=x, done=i + 1, image_index=0, images=[],
                                  params=params, scheduler=sched, rng=rng)
            if preview is not None and (i + 1) % preview_every == 0 and i + 1 < len(timesteps):
                self.preview(preview, getattr(sched, "pred_original_sample", x), i + 1, len(timesteps))
            if progress:
                progress(i + 1, len(timesteps), time.perf_counter() - start)
        images = [self.vae_decode(x[j:j + 1], decoder) for j in range(num)]
        return self._output(np.stack(images), output_type, num)

    def preview(self, preview, latents, step, total):
        """Decode `latents` [num, C, h, w] (TAESD when converted) for preview: a path gets a PNG of the images
        side by side, written atomically; a function gets (step, total, images [num, H, W, 3])."""
        decoder = "taesd" if "taesd" in self.decoders else "vae"
        images = np.stack([self.vae_decode(latents[j:j + 1], decoder) for j in range(latents.shape[0])])
        if callable(preview):
            preview(step, total, images)
        else:
            from .images import save_png
            save_png(preview, np.concatenate(list(images), axis=1), {"step": f"{step}/{total}",
                                                                      "software": "onnxstream"})

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

