"""The sampling loop: guidance algebra, inpainting keeps the known pixels, SDEdit starts at t0."""
from __future__ import annotations

import pytest
import torch

from deepatlas.diffusion.sampling import Inpaint, classifier_gradient, diffusion_loss, guided_denoiser, sample
from deepatlas.diffusion.schedule import NoiseSchedule


class Affine(torch.nn.Module):
    """A fake conditional 'network': output = a·x + label, so guidance has a closed form."""

    def forward(self, x, t, labels=None):
        lab = torch.zeros(len(x)) if labels is None else labels.float()
        return 0.5 * x + lab[:, None, None, None]


def test_classifier_free_guidance_is_eq6():
    x, t = torch.randn(4, 1, 2, 2), torch.full((4,), 10)
    labels = torch.tensor([1, 2, 3, 4])
    f = guided_denoiser(Affine(), labels, scale=3.0, null_label=0)
    # ε(∅) + w (ε(y) − ε(∅)) = 0.5x + 3·y
    torch.testing.assert_close(f(x, t), 0.5 * x + 3.0 * labels.float()[:, None, None, None])
    with pytest.raises(ValueError, match="null_label"):
        guided_denoiser(Affine(), labels, scale=2.0)


def test_classifier_gradient_of_linear_classifier():
    w = torch.randn(3, 4)
    clf = lambda x, t: x.flatten(1) @ w.T                     # logits = W x
    labels = torch.tensor([0, 2])
    x = torch.randn(2, 1, 2, 2)
    g = classifier_gradient(clf, labels)(x, torch.zeros(2))
    p = (x.flatten(1) @ w.T).softmax(-1)
    want = w[labels] - p @ w                                  # ∇ log softmax_y = w_y − Σ p_k w_k
    torch.testing.assert_close(g.flatten(1), want)


def test_inpainting_keeps_known_pixels_and_sdedit_at_t0_zero_returns_guide_like():
    s = NoiseSchedule(100, "linear")
    known = torch.rand(3, 1, 4, 4) * 2 - 1
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    x, _ = sample(lambda x, t: torch.zeros_like(x), s, known.shape, "ddim", 10,
                  generator=torch.Generator().manual_seed(0), inpaint=Inpaint(known, mask))
    torch.testing.assert_close(x[..., :2, :], known[..., :2, :])
    # SDEdit from t0 = 0 with a perfect ε-oracle gives back the guide (up to one tiny step of noise)
    x0 = known
    oracle_x, _ = sample(lambda x, t: torch.zeros_like(x), s, x0.shape, "ddim", 100, start=x0, start_t=0,
                         generator=torch.Generator().manual_seed(1))
    assert (oracle_x - x0).abs().max() < 0.05
    with pytest.raises(ValueError, match="start_t"):
        sample(lambda x, t: x, s, x0.shape, start=x0, start_t=100)
    with pytest.raises(ValueError, match="valid: ddpm, ddim"):
        sample(lambda x, t: x, s, x0.shape, sampler="euler")


def test_ddpm_chain_with_the_true_score_recovers_a_point_mass():
    """Data = a single point c: the exact ε(x_t, t) = (x_t − √ᾱ c)/√(1−ᾱ); both samplers land on c."""
    s = NoiseSchedule(200, "cosine")
    c = torch.tensor([0.3, -0.6]).reshape(1, 1, 1, 2)

    def eps(x, t):
        ab = s.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        return (x - ab.sqrt() * c) / (1 - ab).sqrt()

    for sampler, steps in (("ddpm", None), ("ddim", 20)):
        x, _ = sample(eps, s, (64, 1, 1, 2), sampler, steps, generator=torch.Generator().manual_seed(2))
        assert (x - c).abs().max() < 1e-2, sampler


def test_diffusion_loss_zero_for_an_oracle_and_label_dropout_needs_null():
    s = NoiseSchedule(50)
    x0 = torch.randn(8, 1, 2, 2)

    class Oracle(torch.nn.Module):  # knows x0, so it can return the true ε
        def forward(self, x_t, t):
            ab = s.alphas_cumprod[t].reshape(-1, 1, 1, 1)
            return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    assert diffusion_loss(Oracle(), s, x0).item() < 1e-8
    with pytest.raises(ValueError, match="null_label"):
        diffusion_loss(Affine(), s, x0, torch.zeros(8).long(), p_uncond=0.5)
