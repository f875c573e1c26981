"""The GPU paths, where torch sees a CUDA device (CI has none; they run when a GPU is lent):
the training loop in each precision (fp16 with GradScaler exists only here), exact resume with the
GPU's RNG in the checkpoint, and G9's text-to-image model trained and sampled on the GPU. Cached =
uncached decoding on the GPU is tests/generation/test_decode.py's test with device "cuda"."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from deepatlas.core.checkpoint import load_checkpoint
from deepatlas.core.train import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: these check the GPU paths (fp16, CUDA RNG state)")


def make_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 1)).cuda()


def get_batch(step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + micro)
    x = torch.randn(32, 8, generator=g)
    return x.cuda(), (0.3 * x.sum(dim=1, keepdim=True)).tanh().cuda()


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x).float(), y)


def config(**kw) -> TrainConfig:
    base = dict(steps=60, lr=1e-2, warmup=3, schedule="cosine", grad_accum=2, clip=1.0, progress=False, seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_each_precision_learns_on_the_gpu(precision):
    result = train(make_mlp(), mse, get_batch, config(precision=precision))
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert all(torch.isfinite(torch.tensor(result.losses))), result.losses
    assert last < 0.5 * first, (precision, first, last)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_exact_resume_on_the_gpu(crash_and_resume, precision):
    """Dropout draws from the GPU's generator: the checkpoint must hold its state (and fp16's loss scale)."""
    seen = {}

    def look(folder):
        seen["meta"] = json.loads(next(folder.glob("step-*/meta.json")).read_text())
        seen["extra"] = load_checkpoint(folder, make_mlp())["extra"]
        torch.cuda.manual_seed_all(1234)          # the GPU's RNG elsewhere must not matter

    cfg = config(steps=12, checkpoint_every=6, precision=precision)
    straight, straight_model, resumed, fresh = crash_and_resume(make_mlp, mse, get_batch, cfg, 6, look)
    assert len(seen["meta"]["rng"]["cuda"]) == torch.cuda.device_count()    # the GPU generators' states
    assert ("grad_scaler" in seen["extra"]) == (precision == "fp16")
    assert resumed.losses == straight.losses
    for a, b in zip(straight_model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_text_to_image_trains_and_samples_on_the_gpu():
    from deepatlas.diffusion.latent import Text2ImageSetup, generate, train_text_to_image
    from deepatlas.models.autoencoder_kl import AutoencoderKLConfig
    from deepatlas.models.ldm import TextToImageConfig

    setup = Text2ImageSetup(model=TextToImageConfig(space="latent", image_size=16, channels=(8, 16),
                                                    attention=(False, True), head_dim=8, text_dim=16,
                                                    autoencoder=AutoencoderKLConfig(channels=(8, 16),
                                                                                    latent_channels=4)),
                            steps=40, batch=8, ae_steps=20, n_train=64)
    trained = train_text_to_image(setup, log=lambda *a: None, device="cuda")
    assert next(trained.model.parameters()).is_cuda and all(torch.isfinite(torch.tensor(trained.losses)))
    x = generate(trained.model, trained.schedule, ["a red circle", "a star"], negative="a blue shape", steps=5)
    assert x.is_cuda and x.shape == (2, 3, 16, 16) and bool(x.abs().max() <= 1)
