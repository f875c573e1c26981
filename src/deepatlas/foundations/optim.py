"""Optimisers written from their update equations (map place F3), as torch.optim.Optimizer subclasses.

Notation: θ parameters, g_t = ∇L(θ_{t−1}) the gradient at step t (1-based), η the learning rate.

- SGD with momentum (heavy ball, Polyak 1964) in torch's convention: b_t = μ b_{t−1} + (1 − τ) g_t with
  b_1 = g_t, θ_t = θ_{t−1} − η b_t. Nesterov (Sutskever et al. 2013 form): θ_t = θ_{t−1} − η (g_t + μ b_t).
- Adam (Kingma & Ba 2015, Alg. 1) with bias correction; `weight_decay` adds λθ to the gradient (L2).
- AdamW (Loshchilov & Hutter 2019, Alg. 2): the decay is decoupled, θ ← θ − ηλθ, outside the moments.
- SAM (Foret et al. 2021, Alg. 1): ε̂ = ρ g/‖g‖₂, take the gradient at θ + ε̂, step the base optimiser
  from θ with it.
- `clip_grad_norm_`: global-norm clipping (Pascanu et al. 2013), g ← g · min(1, c / ‖g‖₂).
- Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers"): momentum for a weight
  matrix, then its orthogonalisation by a quintic Newton–Schulz iteration, O = UVᵀ of the
  momentum's SVD UΣVᵀ (approximately), θ ← θ − η √max(1, rows/cols) O. Matrices only: embeddings,
  the output head, gains and biases stay with AdamW (`MuonWithAdamW` holds both).

Each equals torch.optim step by step (tests/foundations/test_optim.py).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from deepatlas.core.hardware import speed_dtype

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


# Newton–Schulz coefficients (a, b, c) of Jordan et al. 2024: chosen to maximise the slope at 0,
# so 5 steps push every singular value into roughly [0.7, 1.2] rather than exactly to 1.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: Tensor, steps: int = 5, coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                  eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """≈ UVᵀ for g = UΣVᵀ (the nearest semi-orthogonal matrix), by the quintic iteration
    X ← a X + (b A + c A²) X with A = X Xᵀ, on the wide orientation (rows ≤ cols).

    dtype=bfloat16 as in the reference (torch.optim.Muon, Jordan's muon.py): the iteration is
    stable in low precision, and bf16 matmuls are cheaper."""
    if g.dim() != 2:
        raise ValueError(f"Newton–Schulz orthogonalises matrices; got a tensor of shape {tuple(g.shape)}")
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T                                          # iterate on X Xᵀ of the smaller side
    x = x / x.norm().clamp(min=eps)                     # ‖X‖_F ≤ 1 bounds the spectral norm by 1
    for _ in range(steps):
        gram = x @ x.T                                   # A = X Xᵀ
        # X ← a X + (b A + c A²) X   (the quintic p(σ) = aσ + bσ³ + cσ⁵ on each singular value)
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def newton_schulz_batched(g: Tensor, steps: int = 5, coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                          eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """newton_schulz on a stack (n, rows, cols) of same-shaped matrices at once (baddbmm): the
    same iteration, 3 batched products per step instead of 3n small ones. Equal to newton_schulz
    up to bf16 rounding of the batched kernels (tests/foundations/test_optim.py)."""
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT                                                  # (n, r, r)
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


class Muon(Optimizer):
    """Muon for 2-D weights. Per step t, with momentum μ and Nesterov's look-ahead:

        B_t = μ B_{t−1} + (1 − μ) g_t              (an EMA of the gradient; torch's `lerp` form)
        U_t = (1 − μ) g_t + μ B_t  (nesterov)  or  B_t
        O_t = NewtonSchulz(U_t)                     (≈ the orthogonal factor of U_t)
        θ_t = (1 − ηλ) θ_{t−1} − η √max(1, rows/cols) O_t

    Equal to torch.optim.Muon step by step with ns_dtype=bfloat16, the reference's
    (tests/foundations/test_optim.py). ns_dtype=None iterates in bf16 where this CPU multiplies
    bf16 in hardware and in fp32 elsewhere (core/hardware.py: without AMX or AVX-512 BF16 a bf16
    matmul is ~50× slower than fp32, and fp32 only makes the iteration more exact). batched=True
    orthogonalises all same-shaped matrices of a group together (newton_schulz_batched): for
    small models, where the per-matrix products are tiny, the number of calls is the cost."""

    def __init__(self, params: Params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, batched: bool = False,
                 ns_dtype: torch.dtype | None = None) -> None:
        _check("lr", lr, 0.0)
        _check("momentum", momentum, 0.0, 1.0)
        _check("weight_decay", weight_decay, 0.0)
        _check("ns_steps", ns_steps, 1)
        if ns_dtype not in (None, torch.bfloat16, torch.float32):
            raise ValueError(f"ns_dtype {ns_dtype}; valid: None (bf16 where it is fast), torch.bfloat16, torch.float32")
        self.ns_dtype = speed_dtype() if ns_dtype is None else ns_dtype
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      nesterov=nesterov, ns_steps=ns_steps, batched=batched))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon updates matrices only; got a parameter of shape {tuple(p.shape)} "
                                     "(give vectors, embeddings and the head to AdamW: MuonWithAdamW)")

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = _evaluate(closure)
        for group in self.param_groups:
            lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
            params, updates = [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.lerp_(g, 1 - mu)                                   # B_t = μ B_{t−1} + (1 − μ) g_t
                update = g.lerp(buf, mu) if group["nesterov"] else buf  # (1 − μ) g_t + μ B_t
                params.append(p)
                updates.append(update)
            if group["batched"]:
                orthogonal = _orthogonalise_by_shape(updates, group["ns_steps"], self.ns_dtype)
            else:
                orthogonal = [newton_schulz(u, group["ns_steps"], dtype=self.ns_dtype) for u in updates]
            for p, o in zip(params, orthogonal):
                p.mul_(1 - lr * wd)                                    # decoupled decay
                # √max(1, rows/cols): a tall matrix's orthogonal update has smaller entries; this keeps
                # the update's RMS the same for every shape (Jordan's "original" adjustment)
                p.add_(o, alpha=-lr * math.sqrt(max(1.0, p.size(0) / p.size(1))))
        return loss


def _orthogonalise_by_shape(updates: list[Tensor], steps: int, dtype: torch.dtype) -> list[Tensor]:
    """newton_schulz_batched over the updates grouped by shape, back in the original order."""
    out: list[Tensor | None] = [None] * len(updates)
    by_shape: dict[tuple, list[int]] = {}
    for i, u in enumerate(updates):
        by_shape.setdefault(tuple(u.shape), []).append(i)
    for index in by_shape.values():
        for i, o in zip(index, newton_schulz_batched(torch.stack([updates[i] for i in index]), steps, dtype=dtype)):
            out[i] = o
    return out


class MuonWithAdamW:
    """Muon for the hidden matrices, AdamW for everything else, stepped together.

    `param_groups` lists both optimisers' groups; each has an "lr_scale" and the training loop
    sets group["lr"] = schedule(step) · lr_scale, so one schedule drives both (Muon's rate is
    10-40× AdamW's: its update has entries of RMS ≈ 1/√cols whatever the gradient's scale).
    It has the parts of torch.optim.Optimizer that core.train and core.checkpoint use."""

    def __init__(self, muon_params: list[Tensor], adamw_groups: list[dict], muon_lr: float, adamw_lr: float,
                 betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.0,
                 momentum: float = 0.95, batched: bool = True) -> None:
        self.muon = Muon(muon_params, lr=muon_lr, weight_decay=weight_decay, momentum=momentum, batched=batched)
        self.adamw = torch.optim.AdamW(adamw_groups, lr=adamw_lr, betas=betas)
        for g in self.muon.param_groups:
            g["lr_scale"] = muon_lr / adamw_lr
        for g in self.adamw.param_groups:
            g.setdefault("lr_scale", 1.0)

    @property
    def param_groups(self) -> list[dict]:
        return self.muon.param_groups + self.adamw.param_groups

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = _evaluate(closure)
        self.muon.step()
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        """torch.optim's layout ({"state": {index: ...}, "param_groups": [...]}), AdamW's parameter
        indices after Muon's, each group tagged with its part (core.checkpoint saves it as it is)."""
        m, a = self.muon.state_dict(), self.adamw.state_dict()
        n = sum(len(g["params"]) for g in m["param_groups"])
        state = {**m["state"], **{i + n: s for i, s in a["state"].items()}}
        groups = ([{**g, "part": "muon"} for g in m["param_groups"]] +
                  [{**g, "part": "adamw", "params": [i + n for i in g["params"]]} for g in a["param_groups"]])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state: dict) -> None:
        groups = {part: [g for g in state["param_groups"] if g.get("part") == part] for part in ("muon", "adamw")}
        n = sum(len(g["params"]) for g in groups["muon"])
        strip = lambda g: {k: v for k, v in g.items() if k != "part"}  # noqa: E731
        self.muon.load_state_dict({"state": {i: s for i, s in state["state"].items() if int(i) < n},
                                   "param_groups": [strip(g) for g in groups["muon"]]})
        self.adamw.load_state_dict({"state": {int(i) - n: s for i, s in state["state"].items() if int(i) >= n},
                                    "param_groups": [{**strip(g), "params": [i - n for i in g["params"]]}
                                                     for g in groups["adamw"]]})


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
