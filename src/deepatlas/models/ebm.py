"""Energy-based models: p_θ(x) = exp(−E_θ(x)) / Z_θ, sampled by Langevin dynamics and trained by
contrastive divergence with a replay buffer (Hinton 2002; Du & Mordatch 2019; Nijkamp et al. 2019).

Langevin dynamics (the unadjusted Langevin algorithm; Welling & Teh 2011, eq. 4 with the
likelihood gradient): with step ε,
    x_{k+1} = x_k − ε ∇_x E(x_k) + √(2ε) ξ_k,   ξ_k ~ N(0, I),
whose stationary distribution tends to exp(−E)/Z as ε -> 0 (checked on a Gaussian mixture whose
density is known, tests/models/test_ebm.py). Short-run EBMs decouple the two terms, x -= λ ∇E +
σ ξ with λ ≫ σ²/2 (Du & Mordatch §3.1; Nijkamp et al.): a sampler tuned for a few dozen steps.
The maximum-likelihood gradient of log p_θ is (the partition function's gradient is the model's
expectation of ∂E/∂θ):
    ∇_θ E_data[−log p_θ(x)] = E_data[∇_θ E_θ(x)] − E_{p_θ}[∇_θ E_θ(x)],
so contrastive divergence minimises  E_θ(x⁺) − E_θ(x⁻)  with x⁻ from a few Langevin steps, plus
α (E(x⁺)² + E(x⁻)²) to keep the energies bounded (Du & Mordatch eq. 3). The replay buffer starts
95% of the chains where earlier chains ended (a persistent chain, Tieleman 2008) and 5% from noise.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

Energy = Callable[[Tensor], Tensor]          # x (B, ...) -> E(x) (B,)


def langevin(energy: Energy, x: Tensor, steps: int, step_size: float, noise: float | None = None,
             grad_clip: float | None = None, clamp: tuple[float, float] | None = None,
             generator: torch.Generator | None = None) -> Tensor:
    """`steps` Langevin updates x -= ε ∇E(x) − noise·ξ; noise defaults to √(2ε) (the exact ULA).

    grad_clip bounds each element of ε∇E (short-run image samplers), clamp keeps x in a box."""
    noise = math.sqrt(2 * step_size) if noise is None else noise
    x = x.detach()
    for _ in range(steps):
        x.requires_grad_(True)
        grad = torch.autograd.grad(energy(x).sum(), x)[0]                     # ∇_x E   (B, ...)
        move = step_size * grad
        if grad_clip is not None:
            move = move.clamp(-grad_clip, grad_clip)
        x = (x.detach() - move + noise * torch.randn(x.shape, generator=generator)).detach()
        if clamp is not None:
            x = x.clamp(*clamp)
    return x


class GaussianMixtureEnergy:
    """E(x) = −log Σ_k π_k N(x; μ_k, σ_k² I) of a known mixture (normalised: Z = 1), x (B, d)."""

    def __init__(self, means: Tensor, stds: Tensor, weights: Tensor):
        if not (len(means) == len(stds) == len(weights)) or abs(float(weights.sum()) - 1) > 1e-6:
            raise ValueError(f"{len(means)} means, {len(stds)} stds, {len(weights)} weights summing to "
                             f"{float(weights.sum()):.4f}: need one of each per component, weights summing to 1")
        self.means, self.stds, self.weights = means.float(), stds.float(), weights.float()

    def log_density(self, x: Tensor) -> Tensor:
        d = x.shape[1]
        sq = torch.cdist(x, self.means).pow(2)                                  # (B, K)
        log_n = -0.5 * sq / self.stds ** 2 - d * self.stds.log() - 0.5 * d * math.log(2 * math.pi)
        return torch.logsumexp(log_n + self.weights.log(), dim=1)               # (B,)

    def __call__(self, x: Tensor) -> Tensor:
        return -self.log_density(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return self.means[k] + self.stds[k, None] * torch.randn(n, self.means.shape[1], generator=generator)

    def mean_cov(self) -> tuple[Tensor, Tensor]:
        """The mixture's exact mean (d,) and covariance (d, d)."""
        w, mu = self.weights, self.means
        mean = (w[:, None] * mu).sum(0)
        d = mu.shape[1]
        second = sum(w[k] * (self.stds[k] ** 2 * torch.eye(d) + torch.outer(mu[k], mu[k])) for k in range(len(w)))
        return mean, second - torch.outer(mean, mean)


def histogram_tv(samples: Tensor, log_density: Callable[[Tensor], Tensor], lo: float, hi: float,
                 bins: int = 30) -> float:
    """Total-variation distance between the 2-D histogram of samples (N, 2) on [lo, hi]² and the
    density's bin masses (midpoint rule, renormalised over the box): 0 = identical, 1 = disjoint."""
    edges = torch.linspace(lo, hi, bins + 1)
    mid = (edges[:-1] + edges[1:]) / 2
    gx, gy = torch.meshgrid(mid, mid, indexing="ij")
    p = log_density(torch.stack([gx.flatten(), gy.flatten()], 1)).exp()
    p = p / p.sum()
    ix = torch.bucketize(samples[:, 0].contiguous(), edges[1:-1])
    iy = torch.bucketize(samples[:, 1].contiguous(), edges[1:-1])
    inside = (samples >= lo).all(1) & (samples <= hi).all(1)
    q = torch.bincount((ix * bins + iy)[inside], minlength=bins * bins).float() / len(samples)
    return float(0.5 * (p - q).abs().sum() + 0.5 * (1 - inside.float().mean()))


class MLPEnergy(nn.Module):
    """x (B, d) -> E(x) (B,): an MLP with SiLU (smooth, so ∇_x E is too)."""

    def __init__(self, d: int = 2, width: int = 128, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(d if i == 0 else width, width), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


class ConvEnergy(nn.Module):
    """image (B, 1, S, S) -> E (B,): 3×3 convs with SiLU, two stride-2, global mean, linear."""

    def __init__(self, width: int = 32, channels: int = 1):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU(),      # S/2
                                 nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),  # S/4
                                 nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.SiLU())
        self.out = nn.Linear(2 * width, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.net(x).mean((2, 3))).squeeze(-1)


class ReplayBuffer:
    """A fixed-size store of past negative samples; draws reinit_prob of each batch from `noise`."""

    def __init__(self, noise: Callable[[int, torch.Generator], Tensor], size: int = 10000,
                 reinit_prob: float = 0.05, generator: torch.Generator | None = None):
        if not 0 <= reinit_prob <= 1:
            raise ValueError(f"reinit_prob {reinit_prob}; valid: 0 to 1")
        self.noise, self.reinit_prob = noise, reinit_prob
        self.g = generator or torch.Generator().manual_seed(0)
        self.data = noise(size, self.g)

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """(n starting points, their buffer indices); a reinit_prob share is fresh noise."""
        idx = torch.randint(0, len(self.data), (n,), generator=self.g)
        x = self.data[idx].clone()
        fresh = torch.rand(n, generator=self.g) < self.reinit_prob
        if fresh.any():
            x[fresh] = self.noise(int(fresh.sum()), self.g)
        return x, idx

    def push(self, x: Tensor, idx: Tensor) -> None:
        self.data[idx] = x.detach()


def contrastive_divergence_loss(e_pos: Tensor, e_neg: Tensor, alpha: float = 1.0) -> Tensor:
    """E(x⁺) − E(x⁻) + α (E(x⁺)² + E(x⁻)²), means over the batch (Du & Mordatch eq. 3 + §3.3)."""
    return e_pos.mean() - e_neg.mean() + alpha * (e_pos.pow(2).mean() + e_neg.pow(2).mean())


def train_ebm(energy: nn.Module, sample_real: Callable[[int, torch.Generator], Tensor], buffer: ReplayBuffer,
              steps: int, batch: int = 128, langevin_steps: int = 20, step_size: float = 0.01,
              noise: float | None = None, grad_clip: float | None = None, clamp: tuple[float, float] | None = None,
              alpha: float = 1.0, lr: float = 1e-3, seed: int = 0,
              log: Callable[[int, float, float, float], None] | None = None, log_every: int = 100) -> None:
    """Contrastive divergence with short-run Langevin negatives from the replay buffer.
    log(step, loss, mean E(x⁺), mean E(x⁻))."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(energy.parameters(), lr=lr, betas=(0.0, 0.999))
    for step in range(steps):
        x_pos = sample_real(batch, g)
        x0, idx = buffer.sample(batch)
        energy.requires_grad_(False)                      # the sampler needs ∇_x E only
        x_neg = langevin(energy, x0, langevin_steps, step_size, noise, grad_clip, clamp, g)
        energy.requires_grad_(True)
        buffer.push(x_neg, idx)
        e_pos, e_neg = energy(x_pos), energy(x_neg)
        loss = contrastive_divergence_loss(e_pos, e_neg, alpha)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log is not None and (step % log_every == 0 or step == steps - 1):
            log(step, float(loss.detach()), float(e_pos.detach().mean()), float(e_neg.detach().mean()))


def two_d_noise(lo: float = -3.0, hi: float = 3.0) -> Callable[[int, torch.Generator], Tensor]:
    """Uniform noise on [lo, hi]² (the 2-D buffer's initial and refreshed samples)."""
    return lambda n, g: lo + (hi - lo) * torch.rand(n, 2, generator=g)


def image_noise(shape: tuple[int, ...]) -> Callable[[int, torch.Generator], Tensor]:
    """Uniform noise on [−1, 1]^shape (the image buffer's samples)."""
    return lambda n, g: torch.rand((n, *shape), generator=g) * 2 - 1
