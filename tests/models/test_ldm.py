"""G9's pieces equal diffusers' on tiny random configs with the weights copied:
the KL autoencoder = AutoencoderKL (encoder moments, posterior, KL, decoder, whole forward),
the text-conditional U-Net = UNet2DConditionModel (whole network: cross-attention blocks, mid
block, resnets, time embedding), GEGLU = diffusers' FeedForward."""
from __future__ import annotations

import pytest
import torch

from deepatlas.diffusion.reference import (diffusers_cond_twin, from_diffusers_cond_unet, from_diffusers_vae)
from deepatlas.models.autoencoder_kl import AutoencoderKL, AutoencoderKLConfig
from deepatlas.models.unet import UNet, UNetConfig
from deepatlas.nn.ffn import FeedForward

diffusers = pytest.importorskip("diffusers", reason="parity needs diffusers: pip install diffusers")


def _perturb(module) -> None:
    """Random weights everywhere (diffusers zero-inits nothing we rely on, but be explicit)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))


def _load(ours, state) -> None:
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)


@pytest.mark.parametrize("cfg", [AutoencoderKLConfig(channels=(8, 16, 16), latent_channels=4, layers=1, groups=4),
                                 AutoencoderKLConfig(in_channels=1, channels=(8, 16), latent_channels=2, layers=2,
                                                     groups=8)])
def test_autoencoder_kl_equals_diffusers(cfg):
    torch.manual_seed(0)
    n = len(cfg.channels)
    ref = diffusers.AutoencoderKL(in_channels=cfg.in_channels, out_channels=cfg.in_channels,
                                  down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                                  block_out_channels=cfg.channels, layers_per_block=cfg.layers,
                                  latent_channels=cfg.latent_channels, norm_num_groups=cfg.groups, sample_size=16).eval()
    _perturb(ref)
    ours = AutoencoderKL(cfg).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    _load(ours, {**from_diffusers_vae(ref.state_dict()), "scaling_factor": torch.tensor(ref.config.scaling_factor)})
    x = torch.randn(2, cfg.in_channels, 16, 16)
    with torch.no_grad():
        want_post = ref.encode(x).latent_dist
        post = ours.encode(x)
        torch.testing.assert_close(post.mean, want_post.mean, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(post.logvar, want_post.logvar, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(post.kl(), want_post.kl(), atol=1e-4, rtol=1e-5)
        z = torch.randn_like(post.mean)
        torch.testing.assert_close(ours.decode(z), ref.decode(z).sample, atol=1e-5, rtol=1e-4)
        got, _ = ours(x)
        torch.testing.assert_close(got, ref(x).sample, atol=1e-5, rtol=1e-4)
    assert post.mean.shape == (2, cfg.latent_channels, 16 // cfg.factor, 16 // cfg.factor)


@pytest.mark.parametrize("cfg", [
    UNetConfig(in_channels=4, out_channels=4, channels=(16, 32), attention=(False, True), layers=1, groups=8,
               head_dim=8, context_dim=24),
    UNetConfig(in_channels=3, out_channels=3, channels=(8, 16, 16), attention=(True, True, False), layers=2,
               groups=4, head_dim=4, context_dim=12),
    # with a pooled text embedding added to temb (diffusers class_embed_type="projection")
    UNetConfig(in_channels=4, out_channels=4, channels=(16, 32), attention=(False, True), layers=1, groups=8,
               head_dim=8, context_dim=24, pooled_dim=24),
])
def test_text_unet_equals_diffusers_unet2dconditionmodel(cfg):
    torch.manual_seed(0)
    ref = diffusers_cond_twin(cfg, sample_size=8).eval()
    _perturb(ref)
    ours = UNet(cfg).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    _load(ours, from_diffusers_cond_unet(ref.state_dict()))
    x, ctx = torch.randn(3, cfg.in_channels, 8, 8), torch.randn(3, 5, cfg.context_dim)
    pooled = torch.randn(3, cfg.pooled_dim) if cfg.pooled_dim else None
    t = torch.tensor([0, 250, 999])
    with torch.no_grad():
        want = ref(x, t, encoder_hidden_states=ctx, class_labels=pooled).sample
        got = ours(x, t, context=ctx, pooled=pooled)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    if pooled is not None:   # the pooled text matters too
        with torch.no_grad():
            assert (ours(x, t, context=ctx, pooled=torch.randn_like(pooled)) - got).abs().max() > 1e-3
    # the text matters: another context changes the output
    with torch.no_grad():
        assert (ours(x, t, context=torch.randn_like(ctx), pooled=pooled) - got).abs().max() > 1e-3


def test_geglu_equals_diffusers_feedforward():
    from diffusers.models.attention import FeedForward as DFeedForward

    torch.manual_seed(0)
    ref = DFeedForward(16, activation_fn="geglu").eval()
    ours = FeedForward(16, 64, "geglu").eval()
    up, gate = ref.net[0].proj.weight.chunk(2), ref.net[0].proj.bias.chunk(2)
    ours.load_state_dict({"up_proj.weight": up[0], "gate_proj.weight": up[1], "up_proj.bias": gate[0],
                          "gate_proj.bias": gate[1], "down_proj.weight": ref.net[2].weight,
                          "down_proj.bias": ref.net[2].bias})
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(ours(x), ref(x))


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="text-conditional: pass context"):
        UNet(UNetConfig(channels=(8, 16), groups=4, head_dim=4, context_dim=6))(torch.zeros(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match="without cross-attention"):
        UNet(UNetConfig(channels=(8, 16), groups=4, head_dim=4))(torch.zeros(1, 1, 4, 4), 0, context=torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="not divisible by the downsampling factor 4"):
        AutoencoderKL(AutoencoderKLConfig(channels=(8, 8, 8), groups=4)).encode(torch.zeros(1, 3, 10, 10))
