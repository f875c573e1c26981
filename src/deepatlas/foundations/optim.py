"""Optimisers written from their update equations (map place F3), as torch.optim.Optimizer subclasses.

Notation: θ parameters, g_t = ∇L(θ_{t−1}) the gradient at step t (1-based), η the learning rate.

- SGD with momentum (heavy ball, Polyak 1964) in torch's convention: b_t = μ b_{t−1} + (1 − τ) g_t with
  b_1 = g_t, θ_t = θ_{t−1} − η b_t. Nesterov (Sutskever et al. 2013 form): θ_t = θ_{t−1} − η (g_t + μ b_t).
- Adam (Kingma & Ba 2015, Alg. 1) with bias correction; `weight_decay` adds λθ to the gradient (L2).
- AdamW (Loshchilov & Hutter 2019, Alg. 2): the decay is decoupled, θ ← θ − ηλθ, outside the moments.
- SAM (Foret et al. 2021, Alg. 1): ε̂ = ρ g/‖g‖₂, take the gradient at θ + ε̂, step the base optimiser
  from θ with it.
- `clip_grad_norm_`: global-norm clipping (Pascanu et al. 2013), g ← g · min(1, c / ‖g‖₂).

Each equals torch.optim step by step (tests/foundations/test_optim.py).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

Params = Iterable[Tensor] | Iterable[dict]


def _check(name: str, value: float, low: float, high: float = math.inf) -> None:
    if not (low <= value < high):
        raise ValueError(f"{name}={value} is invalid; it must be in [{low}, {high})")


def _evaluate(closure: Callable[[], Tensor] | None) -> Tensor | None:
    """torch.optim's closure protocol: re-evaluate the loss (with grad enabled) before stepping."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class SGD(Optimizer):
    """Plain, heavy-ball-momentum, or Nesterov SGD, with optional L2 weight decay (torch's convention)."""

    def __init__(self, params: Params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        _check("lr", lr, 0.0)
        _check("momentum", momentum, 0.0, 1.0)
        _check("weight_decay", weight_decay, 0.0)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"nesterov needs momentum > 0 and dampening = 0, got {momentum}, {dampening}")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = _evaluate(closure)
        for group in self.param_groups:
            lr, mu, tau, wd = group["lr"], group["momentum"], group["dampening"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd:
                    g = g + wd * p                                   # L2: ∇(L + ½λ‖θ‖²) = g + λθ
                if mu:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        buf = state["momentum_buffer"] = g.clone()   # b_1 = g_1
                    else:
                        buf = state["momentum_buffer"]
                        buf.mul_(mu).add_(g, alpha=1 - tau)          # b_t = μ b_{t−1} + (1 − τ) g_t
                    g = g + mu * buf if group["nesterov"] else buf    # Nesterov: g_t + μ b_t
                p.add_(g, alpha=-lr)                                  # θ_t = θ_{t−1} − η · (update)
        return loss


class Adam(Optimizer):
    """Adam; `decoupled=True` is AdamW. Use the `AdamW` class for the torch.optim.AdamW defaults."""

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False) -> None:
        _check("lr", lr, 0.0)
        _check("beta1", betas[0], 0.0, 1.0)
        _check("beta2", betas[1], 0.0, 1.0)
        _check("eps", eps, 0.0)
        _check("weight_decay", weight_decay, 0.0)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled=decoupled))

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = _evaluate(closure)
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)               # m_0 = 0
                    state["exp_avg_sq"] = torch.zeros_like(p)            # v_0 = 0
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                if wd and group["decoupled"]:
                    p.mul_(1 - lr * wd)                                  # AdamW: θ ← θ − ηλθ (decoupled)
                elif wd:
                    g = g + wd * p                                       # Adam + L2: g ← g + λθ
                m.mul_(b1).add_(g, alpha=1 - b1)                         # m_t = β₁ m_{t−1} + (1 − β₁) g_t
                v.mul_(b2).addcmul_(g, g, value=1 - b2)                  # v_t = β₂ v_{t−1} + (1 − β₂) g_t²
                bias1, bias2 = 1 - b1 ** t, 1 - b2 ** t
                # θ_t = θ_{t−1} − η m̂_t / (√v̂_t + ε),  m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ)
                # (grouped as η/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε): the same value, torch's rounding)
                denom = (v.sqrt() / math.sqrt(bias2)).add_(eps)
                p.addcdiv_(m, denom, value=-lr / bias1)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019); torch.optim.AdamW's default λ = 0.01."""

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, decoupled=True)


def grad_norm(params: Iterable[Tensor]) -> Tensor:
    """‖g‖₂ over all parameters' gradients together (the global norm)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    # ‖g‖₂ = sqrt(Σ_p ‖g_p‖₂²)
    return torch.sqrt(sum(g.detach().pow(2).sum() for g in grads))


def clip_grad_norm_(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """Scale all gradients by min(1, c/(‖g‖₂ + 1e-6)) in place; return the norm before clipping."""
    _check("max_norm", max_norm, 0.0)
    params = [p for p in params if p.grad is not None]
    total = grad_norm(params)
    # g ← g · min(1, c / ‖g‖)   (1e-6 guards ‖g‖ = 0, as torch does)
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in params:
        p.grad.detach().mul_(scale)
    return total


class SAM:
    """Sharpness-aware minimisation around any base optimiser.

        loss = closure(); loss.backward(); sam.first_step()     # θ ← θ + ε̂
        closure().backward(); sam.second_step()                 # θ ← θ − ε̂, base step with g(θ + ε̂)

    or `sam.step(closure)` where closure computes the loss, calls backward() and returns the loss.
    """

    def __init__(self, base: Optimizer, rho: float = 0.05) -> None:
        _check("rho", rho, 0.0)
        self.base, self.rho = base, rho
        self._eps: dict[Tensor, Tensor] = {}

    @property
    def params(self) -> list[Tensor]:
        return [p for g in self.base.param_groups for p in g["params"]]

    @torch.no_grad()
    def first_step(self) -> None:
        norm = grad_norm(self.params)
        for p in self.params:
            if p.grad is None:
                continue
            # Foret et al. 2021 eq. (2): ε̂(θ) = ρ g / ‖g‖₂   (the first-order worst case in the ρ-ball)
            e = self.rho * p.grad / norm
            p.add_(e)
            self._eps[p] = e

    @torch.no_grad()
    def second_step(self) -> None:
        for p, e in self._eps.items():
            p.sub_(e)                                   # back to θ; p.grad now holds g(θ + ε̂)
        self._eps.clear()
        self.base.step()                                # θ ← base update with ∇L(θ + ε̂)

    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        self.base.zero_grad()
        loss = closure()
        self.first_step()
        self.base.zero_grad()
        closure()
        self.second_step()
        return loss

    def zero_grad(self) -> None:
        self.base.zero_grad()
