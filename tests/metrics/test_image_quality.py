"""PSNR and SSIM equal torchmetrics'; sharpness ranks a blurred image below the original."""
from __future__ import annotations

import pytest
import torch

from deepatlas.metrics.image_quality import psnr, sharpness, ssim, translation_scores


@pytest.mark.parametrize("sigma", [0.8, 1.5])
def test_ssim_and_psnr_equal_torchmetrics(sigma):
    tm = pytest.importorskip("torchmetrics.functional.image")
    g = torch.Generator().manual_seed(0)
    target = torch.rand(4, 1, 20, 20, generator=g) * 2 - 1
    pred = (target + 0.3 * torch.randn(4, 1, 20, 20, generator=g)).clamp(-1, 1)
    ref = tm.structural_similarity_index_measure(pred, target, data_range=2.0, sigma=sigma,
                                                 reduction="none")
    torch.testing.assert_close(ssim(pred, target, sigma=sigma), ref, atol=1e-5, rtol=1e-5)
    ref_psnr = tm.peak_signal_noise_ratio(pred, target, data_range=2.0, reduction="none", dim=(1, 2, 3))
    torch.testing.assert_close(psnr(pred, target), ref_psnr, atol=1e-4, rtol=1e-5)


def test_identical_images_score_perfectly_and_blur_is_less_sharp():
    x = torch.rand(2, 1, 14, 14) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2))
    s = translation_scores(x, x)
    assert s["l1"] == 0 and s["ssim"] == pytest.approx(1.0) and s["psnr"] > 100
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    assert (sharpness(blurred) < sharpness(x)).all()
    with pytest.raises(ValueError, match="window"):
        ssim(x[..., :3, :3], x[..., :3, :3])
