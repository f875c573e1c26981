"""StyleGAN: fused = non-fused modulated conv, demodulation's unit variance as derived, AdaIN,
truncation at ψ = 0 gives the mean image, style mixing takes coarse/fine layers from each latent."""
from __future__ import annotations

import pytest
import torch

from deepatlas.models.stylegan import MappingNetwork, ModulatedConv2d, StyleGenerator, adain, pixel_norm


def _conv(demodulate=True, k=3, c_in=16, c_out=8) -> ModulatedConv2d:
    torch.manual_seed(0)
    conv = ModulatedConv2d(c_in, c_out, k, w_dim=12, demodulate=demodulate)
    with torch.no_grad():
        conv.affine.weight.mul_(3.0)                    # styles far from 1: a real test of the modulation
    return conv


@pytest.mark.parametrize("demodulate", [True, False])
def test_fused_grouped_conv_equals_scaled_activations(demodulate):
    conv = _conv(demodulate)
    x, w = torch.randn(3, 16, 9, 9), torch.randn(3, 12)
    torch.testing.assert_close(conv(x, w, fused=True), conv(x, w, fused=False), atol=1e-5, rtol=1e-5)


def test_demodulation_normalises_output_variance_as_derived():
    """i.i.d. unit-variance inputs: Var(out_j) = Σ_{i,k} (s_i w_ijk)² = σ_j² without demodulation, 1 with it.
    Taps inside the image only (no zero padding): a 1-pixel border is cropped."""
    x, w = torch.randn(4, 16, 66, 66), torch.randn(4, 12)
    plain, demod = _conv(False), _conv(True)
    with torch.no_grad():
        y0 = plain(x, w)[:, :, 1:-1, 1:-1]
        y1 = demod(x, w)[:, :, 1:-1, 1:-1]
        sigma = demod.demod_coefficients(demod.styles(w))                       # (B, c_out)
    std0, std1 = y0.std((2, 3)), y1.std((2, 3))
    assert float((std0 / sigma - 1).abs().max()) < 0.05                          # σ_j predicted
    assert float((std1 - 1).abs().max()) < 0.05                                  # normalised to 1
    assert float(sigma.std()) > 0.2                                              # channels really differed


def test_adain_sets_each_maps_statistics_and_demodulation_approximates_it():
    x = 3 * torch.randn(2, 4, 32, 32) + 5
    ys, yb = torch.rand(2, 4) + 0.5, torch.randn(2, 4)
    out = adain(x, ys, yb)
    torch.testing.assert_close(out.mean((2, 3)), yb, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std((2, 3), unbiased=False), ys, atol=1e-3, rtol=0)
    # demodulation replaces the measured σ of the modulated conv's output with its expected value
    conv = _conv(False, k=1)
    xin, w = torch.randn(2, 16, 64, 64), torch.randn(2, 12)
    with torch.no_grad():
        y = conv(xin, w)
        measured = y.std((2, 3))
        expected = conv.demod_coefficients(conv.styles(w))
    torch.testing.assert_close(measured, expected, rtol=0.05, atol=0)


def test_mapping_normalises_z():
    m = MappingNetwork(8, 8, 2)
    z = torch.randn(5, 8)
    torch.testing.assert_close(m(3 * z), m(z), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pixel_norm(z).pow(2).mean(-1), torch.ones(5), atol=1e-5, rtol=0)


def _generator() -> StyleGenerator:
    torch.manual_seed(0)
    g = StyleGenerator(z_dim=8, w_dim=8, channels=(16, 8), base=4, mapping_depth=2)
    with torch.no_grad():
        g.w_avg.copy_(torch.randn(8))
        for layer in g.layers:
            layer.noise.strength.fill_(0.5)
    return g.eval()


def test_truncation_psi_zero_gives_the_mean_image():
    g = _generator()
    z1, z2 = torch.randn(3, 8), torch.randn(3, 8)
    with torch.no_grad():
        a, b = g(z1, psi=0.0, noise="none"), g(z2, psi=0.0, noise="none")
        mean_image = g.synthesis(g.w_avg.expand(1, g.n_ws, 8), noise="none")
        full1, full2 = g(z1, noise="none"), g(z2, noise="none")
    assert a.shape == (3, 1, 8, 8)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, mean_image.expand_as(a))
    assert float((full1 - full2).abs().mean()) > 1e-3                      # ψ = 1: the latents matter
    ws = g.styles(z1, psi=0.5)
    torch.testing.assert_close(ws[:, 0], g.w_avg + 0.5 * (g.mapping(z1) - g.w_avg))


def test_style_mixing_takes_layers_before_the_crossover_from_z1():
    g = _generator()
    z1, z2 = torch.randn(2, 8), torch.randn(2, 8)
    with torch.no_grad():
        ws = g.styles(z1, z_mix=z2, crossover=2)
        w1, w2 = g.mapping(z1), g.mapping(z2)
        torch.testing.assert_close(ws[:, :2], w1[:, None].expand(2, 2, 8))
        torch.testing.assert_close(ws[:, 2:], w2[:, None].expand(2, g.n_ws - 2, 8))
        torch.testing.assert_close(g.synthesis(g.styles(z1, z_mix=z2, crossover=g.n_ws), "none"),
                                   g.synthesis(g.styles(z1), "none"))
    with pytest.raises(ValueError, match="crossover"):
        g.styles(z1, z_mix=z2, crossover=99)


def test_noise_inputs_vary_detail_only_through_their_strength():
    g = _generator()
    z = torch.randn(2, 8)
    with torch.no_grad():
        a = g(z, noise="random")
        b = g(z, noise="random")
        assert float((a - b).abs().max()) > 1e-4
        for layer in g.layers:
            layer.noise.strength.zero_()
        torch.testing.assert_close(g(z, noise="random"), g(z, noise="none"))
    with pytest.raises(ValueError, match="noise mode"):
        g.synthesis(g.styles(z), noise="const")


def test_training_mode_tracks_w_avg():
    g = _generator().train()
    g.w_avg.zero_()
    g.mixing_prob = 0.0
    z = torch.randn(64, 8)
    g(z)
    torch.testing.assert_close(g.w_avg, (1 - g.w_avg_beta) * g.mapping(z).mean(0).detach())
