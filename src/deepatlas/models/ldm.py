"""Latent diffusion with text conditioning (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models"), map place G9: the model pieces; training and sampling are in
diffusion/latent.py.

    image x -> E (models/autoencoder_kl.py) -> z = s·E(x)      (B, 4, H/4, W/4), s = 1/std(z)
    caption y -> τ_θ(y) (B, S, d)                                the text encoder's token states
    ε_θ(z_t, t, τ_θ(y))                                          U-Net with cross-attention (models/unet.py)
    L_LDM = E_{E(x), y, ε, t} ‖ε − ε_θ(z_t, t, τ_θ(y))‖²         (LDM eq. 3; τ_θ and ε_θ trained jointly)
Sampling runs the reverse chain in z and decodes once at the end: x̂ = D(z_0 / s).
With space="pixel" the same U-Net runs on the pixels themselves (LDM's f = 1 baseline).

τ_θ is M1's CLIP text tower (models/clip.py: token + learned position embeddings, causal pre-norm
Transformer blocks, final LayerNorm) read at every token, as Stable Diffusion reads CLIP's
last_hidden_state. With pooled_text, its end-of-text state (CLIP's pooled embedding) is also
projected and added to the time embedding, as SDXL adds its pooled text embedding:
    temb = MLP(sinusoid(t)) + MLP(τ_θ(y)[eot])

Classifier-free guidance with a negative prompt (Ho & Salimans 2022 eq. 6, with the unconditional
branch's empty prompt ∅ replaced by the negative prompt n, as diffusers' StableDiffusionPipeline
does with negative_prompt_embeds):
    ε̃ = ε_θ(z_t, t, τ(n)) + w (ε_θ(z_t, t, τ(y)) − ε_θ(z_t, t, τ(n)))       n = ∅ without a negative prompt
so each step moves away from what n describes as much as it moves towards y
(diffusion/sampling.guided_denoiser with `negative`; diffusion/latent.py builds it from the prompts).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from deepatlas.diffusion.schedule import check_prediction
from deepatlas.models.autoencoder_kl import AutoencoderKL, AutoencoderKLConfig
from deepatlas.models.clip import CLIPTextEncoder
from deepatlas.models.unet import UNet, UNetConfig

SPACES = ("latent", "pixel")


class PromptTokenizer:
    """Word-level ids (N, context): <sot> words <eot> <pad>…; the empty prompt is <sot> <eot>."""

    SPECIAL = ("<sot>", "<eot>", "<pad>")
    SOT, EOT, PAD = 0, 1, 2

    def __init__(self, words: list[str], context: int = 8):
        self.words = sorted(set(words))
        self.vocab = {w: i for i, w in enumerate(self.SPECIAL + tuple(self.words))}
        self.context = context

    def __len__(self) -> int:
        return len(self.vocab)

    def __call__(self, texts: list[str]) -> Tensor:
        out = torch.full((len(texts), self.context), self.PAD, dtype=torch.long)
        for i, text in enumerate(texts):
            words = text.lower().split()
            if len(words) + 2 > self.context:
                raise ValueError(f"prompt {text!r} has {len(words)} words; at most {self.context - 2} fit")
            bad = [w for w in words if w not in self.vocab or w in self.SPECIAL]
            if bad:
                raise ValueError(f"words {bad} of prompt {text!r} are not in the vocabulary; valid words: "
                                 f"{', '.join(self.words)}")
            out[i, :len(words) + 2] = torch.tensor([self.SOT] + [self.vocab[w] for w in words] + [self.EOT])
        return out


class TextTokens(CLIPTextEncoder):
    """τ_θ: (B, S) ids -> (B, S, dim), the final-LayerNorm states of every token; `pooled(ids, tokens)`
    (CLIPTextEncoder's) reads the end-of-text state from them."""

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if ids.shape[1] > self.context:
            raise ValueError(f"text of {ids.shape[1]} tokens; the text encoder's context is {self.context}")
        h = self.token_embed(ids) + self.pos_embed[:ids.shape[1]]           # (B, S, D)
        for block in self.blocks:
            h = block(h, causal=True)       # causal: the padding after <eot> never changes earlier tokens
        return self.norm(h)                                                  # (B, S, D)


@dataclass
class TextToImageConfig:
    space: str = "latent"                  # latent (diffusion on s·E(x)) | pixel (on x itself)
    image_size: int = 32
    image_channels: int = 3
    autoencoder: AutoencoderKLConfig = field(default_factory=AutoencoderKLConfig)
    channels: tuple[int, ...] = (32, 64, 64)
    attention: tuple[bool, ...] = (False, True, True)
    layers: int = 1
    head_dim: int = 16
    text_dim: int = 32
    text_depth: int = 1
    context: int = 8                        # prompt tokens incl. <sot> and <eot>
    # also add the pooled text (the <eot> state) to the U-Net's time embedding, as SDXL does: a path
    # through every ResBlock, not only through cross-attention at the attention levels
    pooled_text: bool = False
    # what ε_θ's network outputs (diffusion/schedule.PREDICTIONS): v = √ᾱ ε − √(1−ᾱ) x_0 (Salimans & Ho
    # 2022), as Stable Diffusion 2 predicts. An ε-network's error at high noise is multiplied by
    # √((1−ᾱ)/ᾱ) ≈ 157 in x̂_0 at t = 950 (a 300-step ε model: MSE 0.07 there, the DDIM chain's std 18.6
    # unclipped); v's x̂_0 = √ᾱ x_t − √(1−ᾱ) v̂ is bounded by v̂'s error
    prediction: str = "v_prediction"

    def unet_config(self) -> UNetConfig:
        if self.space not in SPACES:
            raise ValueError(f"space {self.space!r}; valid: {', '.join(SPACES)}")
        check_prediction(self.prediction)
        c = self.autoencoder.latent_channels if self.space == "latent" else self.image_channels
        return UNetConfig(in_channels=c, out_channels=c, channels=self.channels, attention=self.attention,
                          layers=self.layers, groups=min(8, self.channels[0]), head_dim=self.head_dim,
                          context_dim=self.text_dim, pooled_dim=self.text_dim if self.pooled_text else 0)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what the diffusion model generates: latents or pixels."""
        if self.space == "latent":
            f = self.autoencoder.factor
            return self.autoencoder.latent_channels, self.image_size // f, self.image_size // f
        return self.image_channels, self.image_size, self.image_size


class TextToImage(nn.Module):
    """forward(x_t, t, ids) = ε_θ(x_t, t, τ_θ(ids)); `autoencoder` is None in pixel space."""

    def __init__(self, cfg: TextToImageConfig, vocab_size: int, eot_id: int):
        super().__init__()
        self.cfg = cfg
        self.text = TextTokens(vocab_size, eot_id, context=cfg.context, dim=cfg.text_dim, depth=cfg.text_depth,
                               heads=max(1, cfg.text_dim // 16), mlp_dim=2 * cfg.text_dim)
        self.unet = UNet(cfg.unet_config())
        self.autoencoder = AutoencoderKL(cfg.autoencoder) if cfg.space == "latent" else None

    def forward(self, x: Tensor, t: Tensor | int, ids: Tensor) -> Tensor:
        tokens = self.text(ids)                                         # (B, S, text_dim)
        pooled = self.text.pooled(ids, tokens) if self.cfg.pooled_text else None
        return self.unet(x, t, context=tokens, pooled=pooled)          # (B, C, h, w)

    @torch.no_grad()
    def to_diffusion_space(self, x: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> what the diffusion model is trained on (s·z or x)."""
        return x if self.autoencoder is None else self.autoencoder.to_latent(x)

    @torch.no_grad()
    def to_pixels(self, z: Tensor) -> Tensor:
        """The sampler's output -> images in [-1, 1] (decoded once, at the end, in latent space)."""
        return z if self.autoencoder is None else self.autoencoder.from_latent(z).clamp(-1, 1)

