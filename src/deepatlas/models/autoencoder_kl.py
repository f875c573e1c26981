"""The KL-regularised autoencoder of latent diffusion (Rombach et al. 2022, §3.1 and App. G).

    x (B, 3, H, W) -> Encoder -> 1×1 quant_conv -> (μ, log σ²) (B, 2c, H/f, W/f)
    z = μ + σ ⊙ ε                                     (reparameterised, Kingma & Welling 2014 §2.4)
    z -> 1×1 post_quant_conv -> Decoder -> x̂ (B, 3, H, W)
The downsampling factor f = 2^(levels − 1) (f = 4 here: 32×32×3 pixels -> 8×8×4 latents).
The objective (LDM eq. in §3.1, without its perceptual and patch-GAN terms, which this CPU-sized
version leaves out):  L = ‖x − D(z)‖² + β KL(q(z | x) ‖ N(0, I)),  β small (LDM: ~1e-6) — a
"slight" KL penalty that keeps the latent space near a standard normal without forcing the
posterior onto the prior (a VAE would blur the reconstructions).
KL of a diagonal Gaussian to N(0, I), summed over the latent's channels and positions:
    KL = ½ Σ (μ² + σ² − 1 − log σ²)                                 (models/vae.py, per element)
The diffusion model then runs on z·s with s = 1/std(z) of a batch of training latents (LDM App. G,
"scaling factor"), so the latents it sees have unit variance as the noise schedule assumes.

Layout: diffusers' AutoencoderKL — Encoder: conv_in, per level `layers` ResBlocks (no time
step) and a stride-2 conv after a (0, 1, 0, 1) pad except at the last level, a middle ResBlock /
single-head self-attention / ResBlock, GN, SiLU, conv_out to 2c; the Decoder mirrors it with
`layers + 1` ResBlocks per level and nearest ×2 + conv upsampling. GroupNorm ε = 1e-6. The blocks
are models/unet.py's; weights copy one to one (tests/models/test_ldm.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.unet import Level, ResBlock, SpatialSelfAttention, Upsample
from deepatlas.models.vae import reparameterise

EPS = 1e-6          # GroupNorm ε of the autoencoder (diffusers' resnet_eps)


@dataclass
class AutoencoderKLConfig:
    in_channels: int = 3
    latent_channels: int = 4
    channels: tuple[int, ...] = (32, 64, 64)   # per level; each level but the last halves H and W
    layers: int = 1                            # ResBlocks per encoder level (decoder levels: layers + 1)
    groups: int = 8

    @property
    def factor(self) -> int:
        """Spatial downsampling factor f of the latents."""
        return 2 ** (len(self.channels) - 1)


class PaddedDownsample(nn.Module):
    """Pad one pixel right and bottom, then a 3×3 stride-2 conv without padding: H -> H/2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


def _middle(c: int, groups: int) -> nn.ModuleList:
    """ResBlock, one-head self-attention (head_dim = c), ResBlock at the lowest resolution."""
    return nn.ModuleList([ResBlock(c, c, None, groups, eps=EPS), SpatialSelfAttention(c, c, groups, eps=EPS),
                          ResBlock(c, c, None, groups, eps=EPS)])


def _run_middle(mid: nn.ModuleList, h: Tensor) -> Tensor:
    return mid[2](mid[1](mid[0](h)))


class Encoder(nn.Module):
    """(B, in, H, W) -> (B, 2·latent, H/f, W/f): the parameters of q(z | x) before quant_conv."""

    def __init__(self, cfg: AutoencoderKLConfig):
        super().__init__()
        c0, last = cfg.channels[0], len(cfg.channels) - 1
        self.conv_in = nn.Conv2d(cfg.in_channels, c0, 3, padding=1)
        self.downs = nn.ModuleList()
        c_prev = c0
        for i, c in enumerate(cfg.channels):
            self.downs.append(Level([ResBlock(c_prev if j == 0 else c, c, None, cfg.groups, eps=EPS)
                                     for j in range(cfg.layers)], [],
                                    PaddedDownsample(c) if i < last else None))
            c_prev = c
        self.mid = _middle(c_prev, cfg.groups)
        self.norm_out = nn.GroupNorm(cfg.groups, c_prev, eps=EPS)
        self.conv_out = nn.Conv2d(c_prev, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)                                             # (B, c0, H, W)
        for level in self.downs:
            for block in level.resnets:
                h = block(h)
            if level.resample is not None:
                h = level.resample(h)                                   # (B, c, H/2, W/2)
        h = _run_middle(self.mid, h)
        return self.conv_out(F.silu(self.norm_out(h)))                  # (B, 2·latent, H/f, W/f)


class Decoder(nn.Module):
    """(B, latent, H/f, W/f) -> (B, in, H, W)."""

    def __init__(self, cfg: AutoencoderKLConfig):
        super().__init__()
        rev, last = list(reversed(cfg.channels)), len(cfg.channels) - 1
        self.conv_in = nn.Conv2d(cfg.latent_channels, rev[0], 3, padding=1)
        self.mid = _middle(rev[0], cfg.groups)
        self.ups = nn.ModuleList()
        c_prev = rev[0]
        for i, c in enumerate(rev):
            self.ups.append(Level([ResBlock(c_prev if j == 0 else c, c, None, cfg.groups, eps=EPS)
                                   for j in range(cfg.layers + 1)], [], Upsample(c) if i < last else None))
            c_prev = c
        self.norm_out = nn.GroupNorm(cfg.groups, c_prev, eps=EPS)
        self.conv_out = nn.Conv2d(c_prev, cfg.in_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = _run_middle(self.mid, self.conv_in(z))                      # (B, c_last, h, w)
        for level in self.ups:
            for block in level.resnets:
                h = block(h)
            if level.resample is not None:
                h = level.resample(h)                                   # (B, c, 2h, 2w)
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class Posterior:
    """q(z | x) = N(μ, diag σ²) per latent element, μ and log σ² (B, c, h, w)."""
    mean: Tensor
    logvar: Tensor

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        return reparameterise(self.mean, self.logvar, generator)         # z = μ + σ ε

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL(q ‖ N(0, I)) = ½ Σ_{c,h,w} (μ² + σ² − 1 − log σ²)   (B,)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1 - self.logvar).sum(dim=(1, 2, 3))


class AutoencoderKL(nn.Module):
    """encode(x) -> Posterior; decode(z) -> x̂; forward(x) -> (x̂, posterior). Pixels in [-1, 1]."""

    def __init__(self, cfg: AutoencoderKLConfig = AutoencoderKLConfig()):
        super().__init__()
        bad = [c for c in cfg.channels if c % cfg.groups]
        if bad:
            raise ValueError(f"channels {bad} not divisible by GroupNorm groups {cfg.groups}")
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1)
        self.decoder = Decoder(cfg)
        # s of LDM App. G: latents are multiplied by it before diffusion (set by fit_scaling_factor)
        self.register_buffer("scaling_factor", torch.tensor(1.0))

    def encode(self, x: Tensor) -> Posterior:
        if x.shape[-1] % self.cfg.factor or x.shape[-2] % self.cfg.factor:
            raise ValueError(f"image size {tuple(x.shape[-2:])} not divisible by the downsampling factor "
                             f"{self.cfg.factor}")
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)  # (B, c, h, w) each
        return Posterior(mean, logvar.clamp(-30.0, 20.0))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z))                      # (B, in, H, W)

    def forward(self, x: Tensor, sample_posterior: bool = False) -> tuple[Tensor, Posterior]:
        post = self.encode(x)
        z = post.sample() if sample_posterior else post.mode()
        return self.decode(z), post

    def loss(self, x: Tensor, beta: float) -> tuple[Tensor, Tensor, Tensor]:
        """(total, reconstruction, KL), means over the batch: ‖x − D(z)‖² per element + β KL per element."""
        post = self.encode(x)
        rec = F.mse_loss(self.decode(post.sample()), x)
        kl = post.kl().mean() / post.mean[0].numel()
        return rec + beta * kl, rec, kl

    @torch.no_grad()
    def fit_scaling_factor(self, x: Tensor) -> float:
        """s = 1 / std(z) over a batch of training images (LDM App. G); stored in the buffer."""
        s = 1.0 / float(self.encode(x).sample().std())
        self.scaling_factor.fill_(s)
        return s

    @torch.no_grad()
    def to_latent(self, x: Tensor, sample: bool = True) -> Tensor:
        """x (B, in, H, W) -> s·z (B, c, H/f, W/f), the latents the diffusion model is trained on."""
        post = self.encode(x)
        return (post.sample() if sample else post.mode()) * self.scaling_factor

    @torch.no_grad()
    def from_latent(self, z: Tensor) -> Tensor:
        """s·z -> decoded pixels (B, in, H, W)."""
        return self.decode(z / self.scaling_factor)


def train_autoencoder(model: AutoencoderKL, x: Tensor, steps: int, beta: float = 1e-4, batch: int = 64,
                      lr: float = 2e-3, seed: int = 0, log=None, log_every: int = 50) -> list[float]:
    """Adam with linear decay on L = MSE + β KL over random batches of x (B, in, H, W) in [-1, 1];
    mirrored left–right half the time. Returns the reconstruction losses; log(step, rec, kl)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    recs = []
    model.train()
    for step in range(steps):
        xb = x[torch.randint(0, len(x), (batch,), generator=g)]
        if step % 2:
            xb = xb.flip(-1)
        loss, rec, kl = model.loss(xb, beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for group in opt.param_groups:
            group["lr"] = lr * (1 - (step + 1) / steps)
        recs.append(rec.item())
        if log is not None and (step % log_every == 0 or step == steps - 1):
            log(step, rec.item(), kl.item())
    model.eval()
    return recs
