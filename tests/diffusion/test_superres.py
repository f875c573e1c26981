"""SR3 conditioning: the loss is zero for an oracle, and the sampler reads the low-res image."""
from __future__ import annotations

import torch

from deepatlas.diffusion.schedule import NoiseSchedule
from deepatlas.diffusion.superres import downsample, sr3_loss, sr3_unet, super_resolve, upsample


def test_upsample_downsample_shapes_and_constant_images():
    low = torch.full((2, 1, 7, 7), 0.3)
    assert upsample(low, 14).shape == (2, 1, 14, 14)
    torch.testing.assert_close(upsample(low, 14), torch.full((2, 1, 14, 14), 0.3))
    torch.testing.assert_close(downsample(upsample(low, 14)), low)


def test_oracle_that_knows_the_high_res_image_from_the_condition():
    """Constant images (a different value each) are their own up(down(x)): ε is recoverable from
    [x_t, cond] alone, so an oracle reading the condition channel has loss 0."""
    s = NoiseSchedule(50)
    high = (torch.rand(4, 1, 1, 1) * 2 - 1).expand(4, 1, 8, 8).contiguous()

    class Oracle(torch.nn.Module):
        def forward(self, xc, t):
            x_t, cond = xc[:, :1], xc[:, 1:]
            ab = s.alphas_cumprod[t].reshape(-1, 1, 1, 1)
            return (x_t - ab.sqrt() * cond) / (1 - ab).sqrt()

    assert sr3_loss(Oracle(), s, high).item() < 1e-8
    # sampling with the oracle returns the condition
    x = super_resolve(Oracle(), s, downsample(high), 8, "ddim", 10, torch.Generator().manual_seed(0))
    assert (x - high).abs().max() < 1e-2


def test_sr3_unet_reads_two_channels():
    net = sr3_unet((8, 16))
    out = net(torch.randn(3, 2, 8, 8), torch.tensor([1, 5, 9]))
    assert out.shape == (3, 1, 8, 8)
