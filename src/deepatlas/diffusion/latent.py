"""Text-to-image diffusion on captioned shape scenes, in latent or pixel space (G9): captions, training,
sampling with negative prompts, and the run folder that `deepatlas generate-images --prompt` reads.

    FOLDER/text2image.json   {"kind": "text2image", "setup": Text2ImageSetup as a dict, "words": [...], ...}
    FOLDER/text2image.pt     the TextToImage state_dict (text encoder, U-Net, autoencoder + its s)

Scenes: one medium or large object per 32×32 image from data/shapes.py on a plain mid-grey background
(or the detection places' noisy texture), pixels mapped to [-1, 1]. Captions name the colour and the
shape ("a red circle"), or only one of them ("a circle", "a red shape"), or nothing (the empty
prompt ∅ of classifier-free guidance, with probability p_uncond — Ho & Salimans 2022 Algorithm 1
with the label dropped to ∅). The shapes are mirror-symmetric and the captions say nothing of
position, so training batches are mirrored left–right half the time.

Latent space (LDM, Rombach et al. 2022): the autoencoder (models/autoencoder_kl.py) is trained
first with L = MSE + β KL, then frozen; s = 1/std(z) is fitted on training latents (App. G); the
training images' posteriors are encoded once and the diffusion model learns z = s μ (the posterior
mean; latent_sample=True draws z = s(μ + σ ε) afresh every step as LDM does — there σ is tiny,
while this CPU-trained autoencoder's σ·s ≈ 0.27 left ε_θ an error of 0.64 at t = 50 in G9's
first full run). The
diffusion loss is diffusion/sampling.diffusion_loss (L_simple, Ho et al. 2020 Alg. 1) on z, or on
the pixels in pixel space, with the target the model's cfg.prediction (v by default).
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from deepatlas.data.shapes import COLOURS, SHAPES, shapes_dataset
from deepatlas.diffusion.sampling import diffusion_loss, guided_denoiser, sample_batched
from deepatlas.diffusion.schedule import NoiseSchedule
from deepatlas.diffusion.store import save_model_folder
from deepatlas.models.autoencoder_kl import AutoencoderKLConfig, train_autoencoder
from deepatlas.models.ldm import PromptTokenizer, TextToImage, TextToImageConfig

META, WEIGHTS = "text2image.json", "text2image.pt"
KIND = "text2image"
WORDS = ["a", "shape", *COLOURS, *SHAPES]
PAIRS = [(c, s) for c in COLOURS for s in SHAPES]


def tokenizer() -> PromptTokenizer:
    return PromptTokenizer(WORDS, context=TextToImageConfig.context)


def full_caption(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def captions_of(colour: str, shape: str) -> list[str]:
    """The training captions of one object: both attributes twice (half the draws), each alone once."""
    return [full_caption(colour, shape), full_caption(colour, shape), f"a {shape}", f"a {colour} shape"]


@dataclass
class Text2ImageSetup:
    model: TextToImageConfig = field(default_factory=TextToImageConfig)
    T: int = 1000
    schedule: str = "linear"
    steps: int = 1500                     # diffusion training steps
    batch: int = 64
    lr: float = 2e-3
    p_uncond: float = 0.1                 # caption dropped to ∅ (classifier-free guidance)
    ae_steps: int = 1000                  # autoencoder training steps (latent space only)
    ae_beta: float = 1e-4                 # β of the KL term, per latent element
    ae_lr: float = 2e-3
    ae_batch: int = 32
    latent_sample: bool = False           # diffuse s(μ + σε) (LDM) rather than s μ: with a short-trained
                                          # autoencoder σ·s ≈ 0.27, noise ε_θ cannot predict at small t
    n_train: int = 2000
    background: str = "plain"             # scene_data's: plain mid-grey, or data/shapes.py's texture
    seed: int = 0


def scene_data(split: str, n: int, size: int, seed: int = 0,
               background: str = "plain") -> tuple[Tensor, list[tuple[str, str]]]:
    """(images (N, 3, size, size) in [-1, 1], [(colour, shape)] per image) of one-object scenes whose object
    is medium or large: the first n such scenes of the split (a small one, 2.6–3.5 px in radius at 32 px,
    is hardly a shape at all). background "textured" keeps data/shapes.py's noisy texture; "plain" paints
    every background pixel mid-grey (0 in [-1, 1]), so the object is all there is to denoise."""
    d = shapes_dataset(split, 2 * n, size=size, seed=seed, max_objects=1, min_objects=1, background=background)
    keep = [i for i, o in enumerate(d.objects) if o[0].size != "small"][:n]
    return d.images[keep] * 2 - 1, [(d.objects[i][0].colour, d.objects[i][0].shape) for i in keep]


@dataclass
class Trained:
    model: TextToImage
    schedule: NoiseSchedule
    losses: list[float]
    ae_losses: list[float]
    train_seconds: float                  # diffusion training
    ae_seconds: float                     # autoencoder training (0 in pixel space)


def train_text_to_image(setup: Text2ImageSetup, log=print, device: str | torch.device = "cpu") -> Trained:
    """Autoencoder first (latent space), then the text encoder and U-Net jointly (LDM eq. 3). The batches'
    indices are drawn on the CPU, so a run on another device sees the same batches in the same order."""
    cfg = setup.model
    x, attrs = scene_data("train", setup.n_train, cfg.image_size, setup.seed, setup.background)
    x = x.to(device)
    tok = tokenizer()
    torch.manual_seed(setup.seed)
    model = TextToImage(cfg, len(tok), tok.EOT).to(device)
    ae_losses, ae_seconds = [], 0.0
    both = torch.cat([x, x.flip(-1)])                                   # mirrored copies (same captions)
    if model.autoencoder is not None:
        t0 = time.perf_counter()
        ae_losses = train_autoencoder(model.autoencoder, x, setup.ae_steps, setup.ae_beta, batch=setup.ae_batch,
                                      lr=setup.ae_lr, seed=setup.seed,
                                      log=lambda s, r, k: log(f"  autoencoder step {s}: mse {r:.4f}, kl {k:.3f}"),
                                      log_every=max(1, setup.ae_steps // 4))
        ae_seconds = time.perf_counter() - t0
        model.autoencoder.requires_grad_(False)
        s = model.autoencoder.fit_scaling_factor(x[:512])
        with torch.no_grad():
            post = model.autoencoder.encode(both)
            mean, std = post.mean, (0.5 * post.logvar).exp()           # q(z | x) of every training image
        log(f"  autoencoder: {setup.ae_steps} steps in {ae_seconds:.0f} s, scaling factor s = {s:.3f}")
    caps = [captions_of(c, s) for c, s in attrs] * 2
    schedule = NoiseSchedule(setup.T, setup.schedule)
    params = list(model.text.parameters()) + list(model.unet.parameters())
    opt = torch.optim.AdamW(params, lr=setup.lr, weight_decay=0.0)
    rng, g = random.Random(setup.seed), torch.Generator().manual_seed(setup.seed)
    losses = []
    t0 = time.perf_counter()
    model.train()
    for step in range(setup.steps):
        idx = torch.randint(0, len(both), (setup.batch,), generator=g)
        if model.autoencoder is not None and setup.latent_sample:       # z = s (μ + σ ε), fresh ε each step
            eps = torch.randn(mean[idx].shape, generator=g).to(device)
            x0 = (mean[idx] + std[idx] * eps) * model.autoencoder.scaling_factor
        elif model.autoencoder is not None:                             # z = s μ, the posterior mean
            x0 = mean[idx] * model.autoencoder.scaling_factor
        else:
            x0 = both[idx]
        texts = ["" if rng.random() < setup.p_uncond else rng.choice(caps[i]) for i in idx.tolist()]
        # ‖target − f_θ(z_t, t, τ(y))‖², target ε or v (cfg.prediction)
        loss = diffusion_loss(model, schedule, x0, tok(texts).to(device), cfg.prediction)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        for group in opt.param_groups:                                  # warm-up 5%, then linear decay
            group["lr"] = setup.lr * min((step + 1) / max(1, setup.steps // 20), 1 - step / setup.steps)
        losses.append(loss.item())
        if step % max(1, setup.steps // 5) == 0 or step == setup.steps - 1:
            log(f"  {cfg.space} diffusion step {step}: loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
    model.eval()
    return Trained(model, schedule, losses, ae_losses, time.perf_counter() - t0, ae_seconds)


def generate(model: TextToImage, schedule: NoiseSchedule, prompts: list[str], negative: list[str] | str = "",
             scale: float = 3.0, steps: int = 25, seed: int = 0, batch: int = 100, sampler: str = "ddim",
             eta: float = 0.0, latent_clip: float | None = 3.0) -> Tensor:
    """Images (n, 3, H, W) in [-1, 1] for prompts (n,), DDIM (or DDPM) with classifier-free guidance scale w
    whose unconditional branch reads the negative prompt(s) (∅, the empty prompt, by default):
        ε̃ = ε(z_t, t, τ(neg)) + w (ε(z_t, t, τ(prompt)) − ε(z_t, t, τ(neg))).
    Drawn on the model's device (the images come back there)."""
    if scale < 0:
        raise ValueError(f"guidance scale {scale}; valid: ≥ 0 (0 = the negative prompt alone, 1 = no guidance)")
    tok = tokenizer()
    negs = [negative] * len(prompts) if isinstance(negative, str) else list(negative)
    if len(negs) != len(prompts):
        raise ValueError(f"{len(negs)} negative prompts for {len(prompts)} prompts; give one, or one per prompt")
    device = next(model.parameters()).device
    ids, neg_ids = tok(prompts).to(device), tok(negs).to(device)

    def denoiser_for(rows: slice):
        return guided_denoiser(model, ids[rows], scale, negative=neg_ids[rows])

    # x̂_0 is clipped to the data's range with ε̂ re-derived from the clipped x̂_0 (G8): [-1, 1] for pixels,
    # ±latent_clip for the unit-variance latents (Stable Diffusion does not clip; a short-trained ε_θ leaves
    # a residual at high noise that DDIM multiplies by √(ᾱ_0/ᾱ_T) ≈ 100 over the chain: std ≈ 12 unclipped)
    clip = 1.0 if model.autoencoder is None else latent_clip
    z = sample_batched(denoiser_for, schedule, len(prompts), model.cfg.sample_shape, batch=batch, seed=seed,
                       sampler=sampler, steps=steps, eta=eta, clip=clip, clipped_eps=clip is not None,
                       prediction=model.cfg.prediction, device=device)
    return model.to_pixels(z)


# ---------------------------------------------------------------- the run folder

class NoTextModel(FileNotFoundError):
    """The folder holds no saved text-to-image model."""


def setup_from_dict(d: dict) -> Text2ImageSetup:
    d = dict(d)
    m = dict(d.pop("model"))
    m.setdefault("prediction", "epsilon")          # folders saved before TextToImageConfig.prediction: ε
    a = m.pop("autoencoder")
    ae = AutoencoderKLConfig(**{**a, "channels": tuple(a["channels"])})
    model = TextToImageConfig(**{**m, "channels": tuple(m["channels"]), "attention": tuple(m["attention"])},
                              autoencoder=ae)
    return Text2ImageSetup(model=model, **d)


def save_text_to_image(folder: Path, model: TextToImage, setup: Text2ImageSetup, **extra) -> Path:
    meta = {"kind": KIND, "setup": dataclasses.asdict(setup), "words": WORDS, **extra}
    return save_model_folder(folder, model, meta, META, WEIGHTS)


def is_text_run(folder: Path) -> bool:
    return (Path(folder) / META).is_file()


def load_text_to_image(folder: Path) -> tuple[TextToImage, NoiseSchedule, Text2ImageSetup, dict]:
    """(model in eval mode, schedule, setup, metadata); NoTextModel / ValueError say what is wrong."""
    folder = Path(folder)
    if not (folder / META).is_file() or not (folder / WEIGHTS).is_file():
        raise NoTextModel(f"{folder} holds no text-to-image model ({META} + {WEIGHTS}); run "
                          "`deepatlas run latent-diffusion` and give its run folder")
    try:
        meta = json.loads((folder / META).read_text())
        if meta.get("kind") != KIND:
            raise ValueError(f"kind {meta.get('kind')!r}, expected {KIND!r}")
        setup = setup_from_dict(meta["setup"])
        tok = tokenizer()
        model = TextToImage(setup.model, len(tok), tok.EOT)
        model.load_state_dict(torch.load(folder / WEIGHTS, weights_only=True))
    except (KeyError, TypeError, ValueError, RuntimeError, EOFError) as err:
        raise ValueError(f"{folder} has a damaged text-to-image model ({type(err).__name__}: {err})") from None
    return model.eval(), NoiseSchedule(setup.T, setup.schedule), setup, meta
