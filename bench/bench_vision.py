"""A1 / V1 speed: our ResNet-18 and ViT-tiny training steps against the same architectures written
in plain torch.nn, and our im2col conv2d against F.conv2d (issue 10, "Speed").

* resnet18_train_step: models/cnn.ResNet(depths=(2, 2, 2, 2), widths=(64, 128, 256, 512)) with the
  28×28 stem (one 3×3 conv), batch 128 of 1×28×28 images, cross-entropy, AdamW; the peer is the
  same network from nn.Conv2d / nn.BatchNorm2d / nn.ReLU with our module names, so our weights
  load into it and the two outputs are checked equal first. Goal ≥ 0.95×: our conv layer is a thin
  wrapper over F.conv2d on its fast path, so the two sides run the same kernels and the ratio of
  two equal computations sits at 1.0 ± noise; the goal says the wrapper costs under 5%.
* vit_tiny_train_step: models/vit.ViT(dim 192, depth 12, heads 3, MLP 768, patch 4: 49 patches + the
  class token), batch 128, against nn.TransformerEncoder(norm_first=True, GELU) with the same
  weights (q/k/v packed into in_proj) and the same patch embedding, class token and positions;
  outputs checked equal first. Goal ≥ 0.95×, for the same reason.
* im2col_conv2d_vs_torch: forward + backward of one 3×3 conv, 64 → 64 channels on (128, 64, 28, 28),
  our im2col + matmul path (nn/conv.py, fast=False) against F.conv2d. Ours is the path to read, not
  to run: it materialises the (B, C·k·k, H·W) patch matrix (231 MB here) that oneDNN's direct
  convolution never builds, and pays that memory traffic twice (the backward folds it back with
  F.fold). Reported as a ratio; the goal of 0.1 only flags a collapse.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import interleaved_median_times, result

BATCH = 128


def _images(n: int = BATCH, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def _compare_train_steps(name: str, ours: nn.Module, peer: nn.Module, peer_name: str) -> dict:
    """Check the two networks (same weights) agree, then time their AdamW train steps in turns."""
    x, y = _images()
    with torch.no_grad():
        diff = (ours.eval()(x[:8]) - peer.eval()(x[:8])).abs().max().item()
    if diff > 1e-4:
        raise AssertionError(f"{peer_name} differs from ours by {diff:.2e}")
    ours.train(), peer.train()
    steps = {"ours": _train_step(ours, torch.optim.AdamW(ours.parameters(), 1e-3), x, y),
             "peer": _train_step(peer, torch.optim.AdamW(peer.parameters(), 1e-3), x, y)}
    t = interleaved_median_times(steps, warmup=1, repeats=3)
    return result(name, "images/s", BATCH / t["ours"], BATCH / t["peer"], peer_name, 0.95, higher_is_better=True)


# ---- ResNet-18 -------------------------------------------------------------------------------
def _plain_conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))


class _PlainBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = _plain_conv_bn(c_in, c_out, 3, stride)
        self.conv2 = _plain_conv_bn(c_out, c_out, 3, 1, relu=False)
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out
                         else _plain_conv_bn(c_in, c_out, 1, stride, relu=False))

    def forward(self, x):
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class _PlainResNet(nn.Module):
    def __init__(self, depths=(2, 2, 2, 2), widths=(64, 128, 256, 512)):
        super().__init__()
        self.stem = _plain_conv_bn(1, widths[0], 3)
        stages, c = [], widths[0]
        for s, (n, w) in enumerate(zip(depths, widths)):
            stages.append(nn.Sequential(*[_PlainBlock(c if i == 0 else w, w, 2 if s > 0 and i == 0 else 1)
                                          for i in range(n)]))
            c = w
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x.mean(dim=(2, 3)))


def resnet18_train_step() -> dict:
    from deepatlas.models.cnn import ResNet

    torch.manual_seed(0)
    ours = ResNet(depths=(2, 2, 2, 2), widths=(64, 128, 256, 512))
    peer = _PlainResNet()
    peer.load_state_dict(ours.state_dict())
    return _compare_train_steps("resnet18_train_step_b128_28px", ours, peer, "the same ResNet-18 in plain torch.nn")


# ---- ViT-tiny --------------------------------------------------------------------------------
class _PlainViT(nn.Module):
    """The same ViT from torch.nn parts: nn.TransformerEncoder(norm_first=True, GELU)."""

    def __init__(self, dim=192, depth=12, heads=3, mlp=768, patch=4):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (28 // patch) ** 2, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, mlp, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True, layer_norm_eps=1e-6)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        tokens = self.proj(x).flatten(2).transpose(1, 2)                          # (B, N, D)
        z = torch.cat([self.cls_token.expand(x.size(0), -1, -1), tokens], 1) + self.pos_embed
        return self.head(self.norm(self.encoder(z))[:, 0])


def _copy_vit(ours: nn.Module, peer: _PlainViT) -> None:
    with torch.no_grad():
        peer.proj.load_state_dict(ours.patch_embed.proj.state_dict())
        peer.cls_token.copy_(ours.cls_token), peer.pos_embed.copy_(ours.pos_embed)
        peer.norm.load_state_dict(ours.norm.state_dict()), peer.head.load_state_dict(ours.head.state_dict())
        for mine, theirs in zip(ours.blocks, peer.encoder.layers):
            a = mine.self_attn
            theirs.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            theirs.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
            theirs.self_attn.out_proj.load_state_dict(a.o_proj.state_dict())
            theirs.linear1.load_state_dict(mine.ffn.up_proj.state_dict())
            theirs.linear2.load_state_dict(mine.ffn.down_proj.state_dict())
            theirs.norm1.load_state_dict(mine.norm1.state_dict()), theirs.norm2.load_state_dict(mine.norm2.state_dict())


def vit_tiny_train_step() -> dict:
    from deepatlas.models.vit import ViT

    torch.manual_seed(0)
    ours = ViT(patch_size=4, dim=192, depth=12, heads=3, mlp_dim=768)
    peer = _PlainViT()
    _copy_vit(ours, peer)
    return _compare_train_steps("vit_tiny_train_step_b128_28px", ours, peer, "the same ViT-tiny as nn.TransformerEncoder")


# ---- im2col conv2d ---------------------------------------------------------------------------
def im2col_conv2d_vs_torch() -> dict:
    from deepatlas.nn.conv import conv2d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 64, 28, 28, generator=g, requires_grad=True)
    w = torch.randn(64, 64, 3, 3, generator=g, requires_grad=True)

    def run(fast: bool):
        def fn():
            x.grad = w.grad = None
            conv2d(x, w, None, 1, 1, fast=fast).sum().backward()
        return fn

    out = conv2d(x, w, None, 1, 1, fast=False)
    ref = F.conv2d(x, w, None, 1, 1)
    if not torch.allclose(out, ref, atol=1e-3, rtol=1e-4):
        raise AssertionError(f"im2col conv differs from F.conv2d by {(out - ref).abs().max().item():.2e}")
    t = interleaved_median_times({"ours": run(False), "peer": run(True)}, warmup=1, repeats=5)
    return result("im2col_conv2d_fwd_bwd_64ch_28px_b128", "s", t["ours"], t["peer"],
                  "F.conv2d (oneDNN)", 0.1)


BENCHMARKS = [resnet18_train_step, vit_tiny_train_step, im2col_conv2d_vs_torch]
