"""StyleGAN (Karras, Laine & Aila 2019) with StyleGAN2's weight (de)modulation (Karras et al. 2020).

Mapping network f: z -> w (§2): z is normalised (pixel norm, z / √mean(z²)) and passed through an
MLP; w lives in an intermediate latent space that need not follow a fixed distribution.
A learned affine map A turns w into per-layer styles s.

StyleGAN1's AdaIN (eq. 1) normalises each feature map with its own statistics, then styles it:
    AdaIN(x_i, y) = y_{s,i} (x_i − μ(x_i)) / σ(x_i) + y_{b,i}.
StyleGAN2 (§2.2, eq. 1–3) moves the scaling from the activations into the conv weights and
replaces the measured σ(x) by its expected value:
    modulation     w'_{ijk} = s_i · w_{ijk}                      (i input channel, j output, k tap)
    demodulation   w''_{ijk} = w'_{ijk} / √(Σ_{i,k} w'_{ijk}² + ε)
Derivation: if the input activations are i.i.d. with unit variance, output j of the modulated conv
is Σ_{i,k} w'_{ijk} x_{i,k}, whose variance is Σ_{i,k} w'_{ijk}² = σ_j²; dividing the weights by σ_j
brings every output map back to unit variance — AdaIN's normalisation, but from the weights alone
(no mean subtraction, no measured statistics: the "droplet" artifacts go away). Equivalently
(ModulatedConv2d's non-fused path): y = conv(x ⊙ s, w) / σ_j.
Noise inputs (§3.2): per-pixel N(0, 1) noise, scaled by a learned per-channel strength, added
after each conv — stochastic detail (hair, texture) that the styles need not encode.
Style mixing regularisation (§3.1): for a share of training images two latents z₁, z₂ are mapped,
and the layers before a random crossover use w₁, those after use w₂.
Truncation trick (§3.1 / App. B): w' = w̄ + ψ (w − w̄), with w̄ the running mean of f(z); ψ = 1 is
the full model, ψ -> 0 trades variety for fidelity, and ψ = 0 gives every z the same "mean" image.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pixel_norm(z: Tensor, eps: float = 1e-8) -> Tensor:
    """z / √(mean_j z_j² + ε) over the last dim (Karras et al. 2018 §4.2)."""
    return z * torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + eps)


def adain(x: Tensor, y_s: Tensor, y_b: Tensor, eps: float = 1e-5) -> Tensor:
    """StyleGAN1 eq. 1: x (B, C, H, W), styles y_s, y_b (B, C) -> y_s (x − μ) / σ + y_b per map."""
    mu = x.mean((2, 3), keepdim=True)
    sigma = (x.var((2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return y_s[:, :, None, None] * (x - mu) / sigma + y_b[:, :, None, None]


class MappingNetwork(nn.Module):
    """z (B, z_dim) -> w (B, w_dim): pixel norm, then `depth` Linear + LeakyReLU(0.2) layers (§2: 8 layers)."""

    def __init__(self, z_dim: int = 32, w_dim: int = 32, depth: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(z_dim if i == 0 else w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(pixel_norm(z))


class ModulatedConv2d(nn.Module):
    """x (B, c_in, H, W), w (B, w_dim) -> (B, c_out, H, W): a conv whose weights are styled per sample."""

    def __init__(self, c_in: int, c_out: int, kernel: int, w_dim: int, demodulate: bool = True, eps: float = 1e-8):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.affine = nn.Linear(w_dim, c_in)                      # A: w -> s
        nn.init.ones_(self.affine.bias)                          # styles start at 1 (StyleGAN2 bias_init=1)
        self.scale = 1 / math.sqrt(c_in * kernel * kernel)       # equalised learning rate (Karras 2018 §4.1)
        self.demodulate, self.eps, self.padding = demodulate, eps, kernel // 2

    def styles(self, w: Tensor) -> Tensor:
        return self.affine(w)                                    # s (B, c_in)

    def demod_coefficients(self, s: Tensor) -> Tensor:
        """σ_j = √(Σ_{i,k} (s_i w_{ijk})² + ε)   (B, c_out)."""
        wt = self.scale * self.weight                            # (c_out, c_in, k, k)
        return (wt.pow(2).sum((2, 3))[None] * s[:, None, :].pow(2)).sum(-1).add(self.eps).sqrt()

    def forward(self, x: Tensor, w: Tensor, fused: bool = False) -> Tensor:
        """fused=False (StyleGAN2's non-fused path; faster on CPU): scale the activations by s, one shared conv
        for the batch, divide each output map by σ_j. fused=True: build each sample's w'' and run a grouped conv.
        The two are equal (tests/models/test_stylegan.py)."""
        B, C, H, W = x.shape
        s = self.styles(w)                                       # (B, c_in)
        if not fused:
            y = F.conv2d(x * s[:, :, None, None], self.scale * self.weight, padding=self.padding)
            return y / self.demod_coefficients(s)[:, :, None, None] if self.demodulate else y
        # w'_{ijk} = s_i w_{ijk}, one kernel per sample                      (B, c_out, c_in, k, k)
        wt = self.scale * self.weight[None] * s[:, None, :, None, None]
        if self.demodulate:
            # w''_{ijk} = w'_{ijk} / √(Σ_{i,k} w'_{ijk}² + ε)
            wt = wt * torch.rsqrt(wt.pow(2).sum((2, 3, 4), keepdim=True) + self.eps)
        # all samples at once: a grouped conv with groups = B                (1, B·c_out, H, W)
        y = F.conv2d(x.reshape(1, B * C, H, W), wt.reshape(-1, C, *wt.shape[3:]), padding=self.padding, groups=B)
        return y.reshape(B, -1, H, W)


class NoiseInjection(nn.Module):
    """x + strength_c · n, n ~ N(0, 1) per pixel (B, 1, H, W), one learned strength per channel (start 0)."""

    def __init__(self, channels: int):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor, noise: Tensor | None) -> Tensor:
        return x if noise is None else x + self.strength * noise


class StyleLayer(nn.Module):
    """Modulated 3×3 conv -> noise -> bias -> LeakyReLU(0.2) (StyleGAN2 Fig. 2c)."""

    def __init__(self, c_in: int, c_out: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, c_out, 3, w_dim)
        self.noise = NoiseInjection(c_out)
        self.bias = nn.Parameter(torch.zeros(1, c_out, 1, 1))

    def forward(self, x: Tensor, w: Tensor, noise: Tensor | None) -> Tensor:
        return F.leaky_relu(self.noise(self.conv(x, w), noise) + self.bias, 0.2)


class ToImage(nn.Module):
    """Modulated 1×1 conv without demodulation, + bias: features -> 1 channel (StyleGAN2's tRGB)."""

    def __init__(self, c_in: int, w_dim: int, channels: int = 1):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, w) + self.bias


NOISE_MODES = ("random", "none")


class StyleGenerator(nn.Module):
    """z (B, z_dim) -> image (B, 1, 2ᴿ·base, ...) in (−1, 1): mapping, a learned constant at base×base, two style
    layers per resolution, nearest ×2 upsampling between resolutions, skip-connected image outputs
    (StyleGAN2 Fig. 7 "skip" generator). ws (B, n_ws, w_dim): layer i reads ws[:, i]; the image
    output after a resolution reads the w of the next layer (the last one its own)."""

    def __init__(self, z_dim: int = 32, w_dim: int = 32, channels: tuple[int, ...] = (64, 32), base: int = 7,
                 mapping_depth: int = 4, mixing_prob: float = 0.9, w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.base = z_dim, w_dim, base
        self.mixing_prob, self.w_avg_beta = mixing_prob, w_avg_beta
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_depth)
        self.const = nn.Parameter(torch.randn(1, channels[0], base, base))
        self.layers, self.to_image = nn.ModuleList(), nn.ModuleList()
        c_prev = channels[0]
        for c in channels:
            self.layers.extend([StyleLayer(c_prev, c, w_dim), StyleLayer(c, c, w_dim)])
            self.to_image.append(ToImage(c, w_dim))
            c_prev = c
        self.n_ws = len(self.layers) + 1
        self.register_buffer("w_avg", torch.zeros(w_dim))      # w̄, the running mean of f(z)

    @property
    def size(self) -> int:
        return self.base * 2 ** (len(self.to_image) - 1)

    def truncate(self, w: Tensor, psi: float) -> Tensor:
        """w' = w̄ + ψ (w − w̄)."""
        return self.w_avg + psi * (w - self.w_avg)

    def styles(self, z: Tensor, psi: float = 1.0, z_mix: Tensor | None = None, crossover: int | None = None) -> Tensor:
        """ws (B, n_ws, w_dim): f(z) broadcast to every layer; with z_mix, layers ≥ crossover use f(z_mix)."""
        w = self.mapping(z)                                                     # (B, w_dim)
        if self.training:                                                       # track w̄
            with torch.no_grad():
                self.w_avg.lerp_(w.mean(0), 1 - self.w_avg_beta)
        ws = self.truncate(w, psi)[:, None].repeat(1, self.n_ws, 1)             # (B, n_ws, w_dim)
        if z_mix is not None:
            if crossover is None or not 0 <= crossover <= self.n_ws:
                raise ValueError(f"crossover {crossover}; valid: 0..{self.n_ws} with z_mix given")
            ws[:, crossover:] = self.truncate(self.mapping(z_mix), psi)[:, None]
        return ws

    def synthesis(self, ws: Tensor, noise: str = "random", generator: torch.Generator | None = None) -> Tensor:
        """ws (B, n_ws, w_dim) -> images (B, 1, size, size)."""
        if noise not in NOISE_MODES:
            raise ValueError(f"noise mode {noise!r}; valid: {', '.join(NOISE_MODES)}")
        B = ws.shape[0]
        x = self.const.expand(B, -1, -1, -1)                                    # (B, c0, base, base)
        image = None
        for r, to_image in enumerate(self.to_image):
            if r:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")         # (B, c, 2H, 2W)
                image = F.interpolate(image, scale_factor=2.0, mode="bilinear", align_corners=False)
            for i in (2 * r, 2 * r + 1):
                n = (torch.randn(B, 1, *x.shape[2:], generator=generator, device=x.device)
                     if noise == "random" else None)
                x = self.layers[i](x, ws[:, i], n)
            out = to_image(x, ws[:, 2 * r + 2])
            image = out if image is None else image + out                       # skip: sum of upsampled outputs
        # tanh: the data are in [−1, 1] (DCGAN's output layer; StyleGAN's own has none — without it this
        # small model on CPU budgets collapsed to one blob in G5's first full run)
        return torch.tanh(image)

    def forward(self, z: Tensor, psi: float = 1.0, noise: str = "random") -> Tensor:
        """In training mode, style mixing regularisation: mixing_prob of the batches get a second z and a
        random crossover (torch's global generator, seeded by the training loop)."""
        if self.training and self.mixing_prob > 0 and torch.rand(()) < self.mixing_prob:
            crossover = int(torch.randint(1, self.n_ws, ()))
            ws = self.styles(z, psi, torch.randn_like(z), crossover)
        else:
            ws = self.styles(z, psi)
        return self.synthesis(ws, noise)
