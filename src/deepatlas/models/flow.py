"""RealNVP (Dinh, Sohl-Dickstein & Bengio 2017): an exact likelihood by change of variables.

A bijection f from data x to latents z = f(x) with a simple prior p_Z = N(0, I) gives (eq. 3)
    log p_X(x) = log p_Z(f(x)) + log |det ∂f(x)/∂xᵀ|.
The affine coupling layer (eq. 7–8) keeps the pixels under a binary mask b and moves the others
by an affine map whose scale and shift are computed from the kept ones:
    y = b ⊙ x + (1 − b) ⊙ (x ⊙ exp(s(b ⊙ x)) + t(b ⊙ x)),
so its Jacobian is triangular and log |det| = Σ (1 − b) ⊙ s(b ⊙ x) — no determinant computed.
Its inverse is as cheap: x = b ⊙ y + (1 − b) ⊙ (y − t(b ⊙ y)) ⊙ exp(−s(b ⊙ y)).
Masks (§3.4): a spatial checkerboard, and a channel mask (the first half of the channels).
Multi-scale (§3.6): squeeze (B, C, H, W) -> (B, 4C, H/2, W/2) (each 2×2 block into channels), and
after each scale half of the channels are factored out straight to the prior.
Data (§4.1): discrete pixels are dequantised with uniform noise, x = (k + u)/L, u ~ U[0, 1), and
mapped to logit space y = logit(α + (1 − 2α) x) (its log-det enters the likelihood). Because the
density of the dequantised data lower-bounds the discrete probability (Theis et al. 2016),
    log P(k) ≥ E_u log p(x) − D log L,   bits/dim = −log₂ P(k) / D.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)


def checkerboard_mask(h: int, w: int, parity: int = 0) -> Tensor:
    """(1, 1, h, w) mask b with b = 1 where (i + j) % 2 == parity."""
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((i + j) % 2 == parity).float()[None, None]


def channel_mask(c: int, parity: int = 0) -> Tensor:
    """(1, c, 1, 1) mask: 1 on the first half of the channels (parity 0) or the second (parity 1)."""
    b = (torch.arange(c) < c // 2).float()
    return (b if parity == 0 else 1 - b)[None, :, None, None]


def squeeze(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2×2 spatial block becomes 4 channels (§3.6)."""
    B, C, H, W = x.shape
    if H % 2 or W % 2:
        raise ValueError(f"squeeze needs even H and W, got {H}×{W}")
    x = x.reshape(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4)       # (B, C, 2, 2, H/2, W/2)
    return x.reshape(B, 4 * C, H // 2, W // 2)


def unsqueeze(x: Tensor) -> Tensor:
    """The inverse of squeeze: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    B, C4, H, W = x.shape
    x = x.reshape(B, C4 // 4, 2, 2, H, W).permute(0, 1, 4, 2, 5, 3)           # (B, C, H, 2, W, 2)
    return x.reshape(B, C4 // 4, 2 * H, 2 * W)


class CouplingNet(nn.Module):
    """(b ⊙ x, b) -> (s, t), each (B, C, H, W): 3×3 convs, the last zero-initialised (identity flow)."""

    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c + 1, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, 2 * c, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(1, c, 1, 1))          # s = scale · tanh(raw): bounded scales

    def forward(self, xb: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(torch.cat([xb, b.expand(xb.shape[0], 1, *xb.shape[2:])], dim=1))
        raw_s, t = h.chunk(2, dim=1)
        return self.scale * torch.tanh(raw_s), t


class AffineCoupling(nn.Module):
    """RealNVP eq. 8 with a fixed mask (checkerboard (1, 1, H, W) or channel (1, C, 1, 1))."""

    def __init__(self, c: int, mask: Tensor, hidden: int = 64):
        super().__init__()
        self.register_buffer("mask", mask)
        self.st = CouplingNet(c, hidden)

    def _st(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        # the net also sees the checkerboard itself (where the kept pixels are); a channel mask: a plane of ones
        b = self.mask if self.mask.shape[1] == 1 else torch.ones_like(self.mask[:, :1])
        s, t = self.st(kept, b)
        return s * (1 - self.mask), t * (1 - self.mask)           # only the moved pixels are scaled/shifted

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C, H, W) -> (y, log|det| (B,))."""
        s, t = self._st(x * self.mask)
        # y = b ⊙ x + (1 − b) ⊙ (x ⊙ exp(s) + t)          (s, t are already 0 where b = 1)
        y = x * self.mask + (1 - self.mask) * (x * s.exp() + t)
        return y, s.flatten(1).sum(1)                             # log|det| = Σ (1 − b) ⊙ s

    def inverse(self, y: Tensor) -> Tensor:
        s, t = self._st(y * self.mask)                            # b ⊙ y = b ⊙ x: the same s, t
        return y * self.mask + (1 - self.mask) * (y - t) * (-s).exp()


def logit_transform(x: Tensor, alpha: float = 0.05) -> tuple[Tensor, Tensor]:
    """x ∈ [0, 1] -> y = logit(α + (1 − 2α) x), with log|dy/dx| summed per example (B,)."""
    p = alpha + (1 - 2 * alpha) * x
    y = p.log() - (1 - p).log()
    # dy/dx = (1 − 2α) / (p (1 − p))
    logdet = (math.log(1 - 2 * alpha) - p.log() - (1 - p).log()).flatten(1).sum(1)
    return y, logdet


def logit_inverse(y: Tensor, alpha: float = 0.05) -> Tensor:
    return (torch.sigmoid(y) - alpha) / (1 - 2 * alpha)


class RealNVP(nn.Module):
    """Multi-scale RealNVP on (C, H, W) images with pixels in [0, 1].

    Each of the first n_scales − 1 scales: `coupling` checkerboard couplings (alternating parity),
    squeeze, `coupling` channel couplings (alternating), then half the channels leave to the prior.
    The last scale: coupling + 1 checkerboard couplings. forward(x) -> (z (B, D), log|det| (B,))."""

    def __init__(self, shape: tuple[int, int, int] = (1, 8, 8), n_scales: int = 2, coupling: int = 3,
                 hidden: int = 64, alpha: float = 0.05):
        super().__init__()
        C, H, W = shape
        if H % 2 ** (n_scales - 1) or W % 2 ** (n_scales - 1):
            raise ValueError(f"{H}×{W} images cannot be squeezed {n_scales - 1} times (n_scales={n_scales})")
        self.shape, self.alpha, self.dim = shape, alpha, C * H * W
        self.scales = nn.ModuleList()
        c, h, w = C, H, W
        for scale in range(n_scales):
            last = scale == n_scales - 1
            checker = nn.ModuleList([AffineCoupling(c, checkerboard_mask(h, w, i % 2), hidden)
                                     for i in range(coupling + (1 if last else 0))])
            channel = nn.ModuleList()
            if not last:
                c, h, w = 4 * c, h // 2, w // 2
                channel = nn.ModuleList([AffineCoupling(c, channel_mask(c, i % 2), hidden) for i in range(coupling)])
                c = c // 2                                        # half the channels factored out
            self.scales.append(nn.ModuleList([checker, channel]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C, H, W) in [0, 1] -> (z (B, D), log|det ∂z/∂x| (B,))."""
        h, logdet = logit_transform(x, self.alpha)
        out = []
        for i, (checker, channel) in enumerate(self.scales):
            for layer in checker:
                h, ld = layer(h)
                logdet = logdet + ld
            if i < len(self.scales) - 1:
                h = squeeze(h)                                    # volume-preserving: log|det| = 0
                for layer in channel:
                    h, ld = layer(h)
                    logdet = logdet + ld
                z_out, h = h.chunk(2, dim=1)                      # (B, c/2, h, w) each
                out.append(z_out.flatten(1))
        out.append(h.flatten(1))
        return torch.cat(out, dim=1), logdet                      # (B, D), (B,)

    def inverse(self, z: Tensor) -> Tensor:
        """z (B, D) -> x (B, C, H, W) in [0, 1]."""
        C, H, W = self.shape
        sizes, shapes, c, h, w = [], [], C, H, W                  # the factored-out pieces' shapes
        for i in range(len(self.scales) - 1):
            c, h, w = 2 * c, h // 2, w // 2
            shapes.append((c, h, w))
            sizes.append(c * h * w)
        shapes.append((c, h, w))
        sizes.append(c * h * w)
        pieces = list(z.split(sizes, dim=1))
        x = pieces[-1].reshape(-1, *shapes[-1])
        for i in range(len(self.scales) - 1, -1, -1):
            checker, channel = self.scales[i]
            if i < len(self.scales) - 1:
                x = torch.cat([pieces[i].reshape(-1, *shapes[i]), x], dim=1)
                for layer in reversed(channel):
                    x = layer.inverse(x)
                x = unsqueeze(x)
            for layer in reversed(checker):
                x = layer.inverse(x)
        return logit_inverse(x, self.alpha)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) (B,) of x in [0, 1]^D: log N(f(x); 0, I) + log|det ∂f/∂x| (eq. 3)."""
        z, logdet = self(x)
        return -0.5 * (z.pow(2) + LOG_2PI).sum(1) + logdet

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """n images from z ~ N(0, T² I) (T < 1: the "reduced temperature" of Kingma & Dhariwal 2018 §5)."""
        z = temperature * torch.randn(n, self.dim, generator=generator)
        return self.inverse(z).clamp(0, 1)


def dequantise(k: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """Integer pixels k ∈ {0..L−1} -> (k + u)/L ∈ [0, 1), u ~ U[0, 1) (uniform dequantisation)."""
    return (k + torch.rand(k.shape, generator=generator)) / levels


def bits_per_dim(log_prob_unit: Tensor, dim: int, levels: int) -> Tensor:
    """−log₂ P(k) / D from the density of the dequantised x = (k + u)/L in [0, 1)^D:
    log P(k) ≥ log p(x) − D log L (the 1/L rescaling's Jacobian)."""
    return -(log_prob_unit - dim * math.log(levels)) / (dim * math.log(2))


def train_flow(flow: RealNVP, counts: Tensor, levels: int, steps: int, batch: int = 64, lr: float = 1e-3,
               weight_decay: float = 0.0, seed: int = 0,
               log: Callable[[int, float], None] | None = None, log_every: int = 100) -> None:
    """Adam on the mean negative log-likelihood (in bits/dim) of freshly dequantised batches."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(flow.parameters(), lr=lr, weight_decay=weight_decay)
    for step in range(steps):
        x = dequantise(counts[torch.randint(0, len(counts), (batch,), generator=g)], levels, g)
        loss = bits_per_dim(flow.log_prob(x), flow.dim, levels).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 100.0)
        opt.step()
        for group in opt.param_groups:                            # cosine decay to 0
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (step + 1) / steps))
        if log is not None and (step % log_every == 0 or step == steps - 1):
            log(step, float(loss.detach()))


@torch.no_grad()
def evaluate_bits_per_dim(flow: RealNVP, counts: Tensor, levels: int, repeats: int = 4,
                      generator: torch.Generator | None = None) -> float:
    """Mean bits/dim of counts (N, C, H, W), averaged over `repeats` dequantisation draws."""
    return float(torch.stack([bits_per_dim(flow.log_prob(dequantise(counts, levels, generator)), flow.dim, levels)
                              for _ in range(repeats)]).mean())
