"""Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: visual explanations from deep networks via gradient-based
localization").

For class c and the feature maps A^k (k = 1..K channels) of a chosen conv layer:
    eq. (1)  α_k^c = (1/Z) Σ_i Σ_j ∂y^c / ∂A^k_ij          the channel's importance: its mean gradient
    eq. (2)  L^c   = ReLU(Σ_k α_k^c A^k)                    only features with a positive influence on c
y^c is the class score before the softmax. L^c has the layer's resolution (7×7 for the last stage
of the A1 ResNet) and is upsampled bilinearly to the image. Deeper layers see more of the image and
are more class-specific; shallower ones give finer but less discriminative maps (§3).
For a net ending in global average pooling and one linear layer, Grad-CAM at the last conv equals
CAM (Zhou et al. 2016) up to a constant: α_k^c = w_k^c / Z (tests/explain/test_gradcam.py).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from deepatlas.data.transforms import resize


def feature_layers(model: nn.Module, example: Tensor) -> list[str]:
    """Names of the submodules whose output on `example` is a feature map (B, C, H, W): Grad-CAM's choices."""
    found: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: found.append(name)
                                     if isinstance(out, Tensor) and out.dim() == 4 else None)
             for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for h in hooks:
            h.remove()
    return list(dict.fromkeys(found))


class UnknownLayer(ValueError):
    pass


def _layer(model: nn.Module, name: str, example: Tensor) -> nn.Module:
    valid = feature_layers(model, example)
    if name not in valid:
        shown = ", ".join(valid[-12:]) + (f" (and {len(valid) - 12} earlier)" if len(valid) > 12 else "")
        raise UnknownLayer(f"layer {name!r} does not give a feature map in {type(model).__name__}; "
                           f"valid: {shown or 'none (no conv layers)'}")
    return model.get_submodule(name)


def grad_cam(model: nn.Module, x: Tensor, layer: str, target: Tensor | int | None = None,
             upsample: bool = True) -> tuple[Tensor, Tensor]:
    """(maps (B, H, W) in [0, 1] per image, target classes (B,)). target=None explains the predicted class.

    The model runs in eval mode (BatchNorm uses its running statistics, so images are independent
    and one backward of Σ_b y^{c_b} gives every image its own gradients)."""
    module = _layer(model, layer, x)
    was = model.training
    model.eval()
    store: dict[str, Tensor] = {}

    def keep(mod: nn.Module, inp: tuple, out: Tensor) -> None:
        out.retain_grad()
        store["A"] = out

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(x)                                                  # (B, classes)
            if target is None:
                target = logits.argmax(-1)
            target = torch.as_tensor(target).expand(len(x)) if torch.as_tensor(target).dim() == 0 else target
            score = logits.gather(1, target.view(-1, 1)).sum()                 # Σ_b y^{c_b}
            model.zero_grad(set_to_none=True)
            score.backward()
    finally:
        handle.remove()
        model.train(was)
    A, dA = store["A"].detach(), store["A"].grad                               # (B, K, h, w)
    alpha = dA.mean(dim=(2, 3), keepdim=True)                                  # eq. (1): α_k^c (B, K, 1, 1)
    cam = torch.relu((alpha * A).sum(dim=1, keepdim=True))                     # eq. (2): L^c  (B, 1, h, w)
    if upsample:
        cam = resize(cam, tuple(x.shape[-2:]))                                 # (B, 1, H, W)
    return normalise(cam[:, 0]), target


def normalise(maps: Tensor) -> Tensor:
    """Each map scaled to [0, 1] (a constant map becomes 0)."""
    flat = maps.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(maps)
