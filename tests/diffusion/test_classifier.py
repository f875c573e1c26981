"""The noise-aware classifier learns p(y | x_t, t): well above chance at low noise, near chance at t ≈ T."""
from __future__ import annotations

import torch

from deepatlas.data.images import digit_images
from deepatlas.diffusion.classifier import NoisyClassifier, train_noisy_classifier
from deepatlas.diffusion.schedule import NoiseSchedule


def test_noisy_classifier_accuracy_falls_with_noise():
    torch.set_num_threads(1)
    x, y = digit_images("train")
    xt, yt = digit_images("test")
    s = NoiseSchedule(1000)
    clf = train_noisy_classifier(x, y, s, steps=200)
    acc = {}
    with torch.no_grad():
        for t in (0, 900):
            tt = torch.full((len(xt),), t)
            x_t = s.add_noise(xt, torch.randn(xt.shape, generator=torch.Generator().manual_seed(t)), tt)
            acc[t] = (clf(x_t, tt).argmax(1) == yt).float().mean().item()
    assert acc[0] > 0.6 and acc[900] < acc[0] - 0.3, acc
    assert NoisyClassifier()(torch.zeros(2, 1, 8, 8), torch.tensor([0, 5])).shape == (2, 10)
