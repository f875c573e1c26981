"""CycleGAN (Zhu, Park, Isola & Efros 2017): translation between two domains without paired examples.

Two generators G: A -> B and F: B -> A, two discriminators D_B (on B) and D_A (on A).
Adversarial losses, least-squares form (§4 "Training details", Mao et al. 2017):
    D_B: E_b (D_B(b) − 1)² + E_a D_B(G(a))²,       G: E_a (D_B(G(a)) − 1)²      (and F, D_A alike)
Cycle consistency (eq. 2): L_cyc = E_a ‖F(G(a)) − a‖₁ + E_b ‖G(F(b)) − b‖₁ — translating there and
back must return the input, which rules out mapping every input to one plausible output.
Identity (§5.2, from Taigman et al. 2017): L_id = E_b ‖G(b) − b‖₁ + E_a ‖F(a) − a‖₁ keeps a
generator from changing an image that is already in its output domain.
Full objective (eq. 3 + identity): L_GAN(G, D_B) + L_GAN(F, D_A) + λ L_cyc + λ_id λ L_id, λ = 10,
λ_id = 0.5. Generators here are models/pix2pix.py's U-Net translators, discriminators its
PatchGAN (on single images, not pairs: there are no pairs). The paper's pool of 50 earlier fakes
for D is left out (one fresh batch per step).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from deepatlas.models.pix2pix import PatchDiscriminator, UNetTranslator


def lsgan_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """E (D(real) − 1)² + E D(fake)²."""
    return (real - 1).pow(2).mean() + fake.pow(2).mean()


def lsgan_g_loss(fake: Tensor) -> Tensor:
    """E (D(G(x)) − 1)²."""
    return (fake - 1).pow(2).mean()


class CycleGAN(nn.Module):
    """G: A -> B, F: B -> A, D_A, D_B."""

    def __init__(self, channels: tuple[int, ...] = (16, 32), d_widths: tuple[int, ...] = (32, 64, 1)):
        super().__init__()
        self.G, self.F = UNetTranslator(channels=channels), UNetTranslator(channels=channels)
        self.D_A, self.D_B = PatchDiscriminator(1, d_widths), PatchDiscriminator(1, d_widths)

    def generator_losses(self, a: Tensor, b: Tensor, lambda_cyc: float = 10.0, lambda_id: float = 0.5
                         ) -> tuple[Tensor, dict[str, float], Tensor, Tensor]:
        """(total generator loss, its parts, G(a), F(b))."""
        fake_b, fake_a = self.G(a), self.F(b)
        adv = lsgan_g_loss(self.D_B(fake_b)) + lsgan_g_loss(self.D_A(fake_a))
        cyc = (self.F(fake_b) - a).abs().mean() + (self.G(fake_a) - b).abs().mean()       # eq. 2
        idt = (self.G(b) - b).abs().mean() + (self.F(a) - a).abs().mean()
        total = adv + lambda_cyc * cyc + lambda_id * lambda_cyc * idt
        return total, {"adv": float(adv.detach()), "cycle": float(cyc.detach()), "identity": float(idt.detach())}, \
            fake_b, fake_a

    def discriminator_loss(self, a: Tensor, b: Tensor, fake_a: Tensor, fake_b: Tensor) -> Tensor:
        return (lsgan_d_loss(self.D_B(b), self.D_B(fake_b.detach()))
                + lsgan_d_loss(self.D_A(a), self.D_A(fake_a.detach()))) / 2


def train_cyclegan(model: CycleGAN, domain_a: Tensor, domain_b: Tensor, steps: int, batch: int = 32,
                   lr: float = 2e-4, lambda_cyc: float = 10.0, lambda_id: float = 0.5, seed: int = 0,
                   log: Callable[[int, dict[str, float]], None] | None = None, log_every: int = 50) -> None:
    """Alternate a generator step (both G and F) and a discriminator step (both D's); a and b batches are
    drawn independently — no pairing is ever used."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    gens = list(model.G.parameters()) + list(model.F.parameters())
    discs = list(model.D_A.parameters()) + list(model.D_B.parameters())
    opt_g = torch.optim.Adam(gens, lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discs, lr=lr, betas=(0.5, 0.999))
    for step in range(steps):
        a = domain_a[torch.randint(0, len(domain_a), (batch,), generator=g)]
        b = domain_b[torch.randint(0, len(domain_b), (batch,), generator=g)]
        loss_g, parts, fake_b, fake_a = model.generator_losses(a, b, lambda_cyc, lambda_id)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        loss_d = model.discriminator_loss(a, b, fake_a, fake_b)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        if log is not None and (step % log_every == 0 or step == steps - 1):
            log(step, {**parts, "d": float(loss_d.detach())})
