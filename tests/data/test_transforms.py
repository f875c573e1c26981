"""Image transforms: resize against F.interpolate, crops against slices of the padded image."""
import pytest
import torch
import torch.nn.functional as F

from deepatlas.data.transforms import (Compose, RandomCrop, RandomHorizontalFlip, normalize, random_crop,
                                       random_hflip, resize)


@pytest.mark.parametrize("size", [(28, 28), (14, 14), (40, 33), (7, 50), (1, 1)])
def test_resize_equals_torch_bilinear(size):
    x = torch.randn(3, 2, 28, 21)
    torch.testing.assert_close(resize(x, size), F.interpolate(x, size=size, mode="bilinear", align_corners=False))


def test_normalize_per_channel_and_errors():
    x = torch.rand(4, 3, 5, 5)
    y = normalize(x, [0.1, 0.2, 0.3], [0.5, 1.0, 2.0])
    torch.testing.assert_close(y[:, 2], (x[:, 2] - 0.3) / 2.0)
    with pytest.raises(ValueError, match="3 channels"):
        normalize(x, [0.1, 0.2], 1.0)
    with pytest.raises(ValueError, match="std must be > 0"):
        normalize(x, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        normalize(x[0], 0.0, 1.0)


def test_random_crop_is_a_window_of_the_padded_image():
    x = torch.randn(16, 2, 8, 8)
    g = torch.Generator().manual_seed(0)
    y = random_crop(x, 8, padding=2, generator=g)
    padded = F.pad(x, (2, 2, 2, 2))
    offsets = set()
    for b in range(16):  # each crop equals exactly one 8×8 window of its padded image
        hits = [(i, j) for i in range(5) for j in range(5) if torch.equal(padded[b, :, i:i + 8, j:j + 8], y[b])]
        assert hits, f"image {b}: crop is not a window of the padded image"
        offsets.add(hits[0])
    assert len(offsets) > 3  # offsets differ between images
    torch.testing.assert_close(random_crop(x, 8, 0), x)       # no padding, full size: identity
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(random_crop(x, 6, 1, g1), random_crop(x, 6, 1, g2))   # deterministic per seed
    with pytest.raises(ValueError, match="must fit"):
        random_crop(x, 13, padding=2)


def test_flip_mirrors_and_compose_is_deterministic():
    x = torch.randn(64, 1, 4, 4)
    torch.testing.assert_close(random_hflip(x, p=1.0), torch.flip(x, dims=[-1]))
    torch.testing.assert_close(random_hflip(x, p=0.0), x)
    y = random_hflip(x, p=0.5, generator=torch.Generator().manual_seed(1))
    flipped = [torch.equal(y[b], x[b].flip(-1)) for b in range(64)]
    assert 16 < sum(flipped) < 48 and all(f or torch.equal(y[b], x[b]) for b, f in enumerate(flipped))
    aug = Compose([RandomCrop(4, padding=1), RandomHorizontalFlip(), lambda t: t * 2])
    a = aug(x, generator=torch.Generator().manual_seed(3))
    b = aug(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape


def test_gaussian_blur_equals_scipy_gaussian_filter():
    from scipy.ndimage import gaussian_filter

    from deepatlas.data.transforms import gaussian_blur

    x = torch.rand(3, 2, 9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigmas = [0.7, 1.3, 0.0]
    got = gaussian_blur(x, torch.tensor(sigmas))
    for i, s in enumerate(sigmas):
        want = x[i].numpy() if s == 0 else gaussian_filter(x[i].numpy(), sigma=(0, s, s), mode="nearest",
                                                           truncate=3.0, radius=(0, 4, 4))
        assert torch.allclose(got[i], torch.from_numpy(want), atol=1e-12), s
    assert torch.equal(gaussian_blur(x, 0.0), x)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(x, [-1.0])
    with pytest.raises(ValueError, match="one per image"):
        gaussian_blur(x, [1.0, 2.0])
