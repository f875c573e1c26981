"""LoRA: low-rank adaptation of a frozen linear layer (map place T1; QLoRA's adapter in T2).

Hu et al. 2021 ("LoRA: Low-Rank Adaptation of Large Language Models", §4.1, eq. 3):

    h = W₀ x + ΔW x = W₀ x + (α / r) · B A x,    A ∈ R^{r×k}, B ∈ R^{d×r}, r ≪ min(d, k)

W₀ is frozen; only A (Kaiming-uniform at start) and B (zeros, so ΔW = 0 at step 0) are trained:
r(d + k) parameters instead of d·k. rsLoRA (Kalajdzievski 2023) scales by α / √r instead of α / r,
so the update's size does not shrink as r grows. Dropout acts on the adapter's input only.

Merge: W = W₀ + (α / r) B A — one dense layer again, no extra cost at inference; unmerge
subtracts the same product (the round trip is exact up to fp32 rounding of the sum).

The base may be any module that maps (..., k) -> (..., d) and says its `in_features` and
`out_features` (nn.Linear, deepatlas.quant.nf4.NF4Linear for QLoRA); merging needs a dense one.

Public API (the names, layout and scaling are peft's, so adapters move between the two):
    apply_lora(model, r, alpha, targets=("q_proj", "v_proj"), ...) -> list of wrapped names
    merge_lora(model) / unmerge_lora(model)   fold ΔW into W₀ / take it out again
    remove_lora(model)                        drop the adapters, the plain base model again
    lora_state_dict(model)                    only the adapter: {name.lora_A.weight, name.lora_B.weight}
    save_adapter(model, folder, names=...)    adapter_model.safetensors + adapter_config.json (peft's files)
    load_adapter(model, folder, names=...)    wraps the layers the file names and loads A and B
    trainable_parameters(model)               how many parameters the optimiser will update
tests/tuning/test_lora.py checks outputs, gradients and the saved files against peft.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."   # peft's key prefix in a saved adapter


class LoRALinear(nn.Module):
    """y = base(x) + (α / r) · B(A(dropout(x)))  — a frozen base and a trainable rank-r update."""

    def __init__(self, base: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 rslora: bool = False):
        super().__init__()
        if r < 1:
            raise ValueError(f"LoRA rank r must be ≥ 1, got {r}")
        if not (0.0 <= dropout < 1.0):
            raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout}")
        k, d = _features(base)
        self.base, self.r, self.alpha, self.rslora = base, r, float(alpha), rslora
        for p in base.parameters():
            p.requires_grad_(False)
        # scaling: α / r (Hu et al.) or α / √r (rsLoRA)
        self.scaling = self.alpha / (math.sqrt(r) if rslora else r)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        ref = next(base.parameters(), None)
        dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
        device = ref.device if ref is not None else None
        self.lora_A = nn.Linear(k, r, bias=False, dtype=dtype, device=device)   # A: (r, k)
        self.lora_B = nn.Linear(r, d, bias=False, dtype=dtype, device=device)   # B: (d, r)
        self.reset_lora()
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.lora_A.in_features

    @property
    def out_features(self) -> int:
        return self.lora_B.out_features

    def reset_lora(self) -> None:
        """A ~ Kaiming-uniform (a = √5, nn.Linear's default, as peft), B = 0: ΔW starts at zero."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def delta_weight(self) -> Tensor:
        """ΔW = (α / r) · B A, (out, in) in the adapter's dtype."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def merge(self) -> None:
        """W ← W₀ + ΔW: afterwards forward is one dense matmul."""
        if self.merged:
            return
        weight = _dense_weight(self.base)
        weight.data += self.delta_weight().to(weight.dtype)
        self.merged = True

    def unmerge(self) -> None:
        """W ← W − ΔW: the frozen W₀ again (to fp32 rounding)."""
        if not self.merged:
            return
        weight = _dense_weight(self.base)
        weight.data -= self.delta_weight().to(weight.dtype)
        self.merged = False

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)                                                       # W₀ x  (..., d)
        if self.merged:
            return y
        # h = W₀ x + (α / r) · B A x                                           (..., r) -> (..., d)
        a = self.lora_A(self.dropout(x).to(self.lora_A.weight.dtype))
        return y + (self.lora_B(a) * self.scaling).to(y.dtype)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, scaling={self.scaling:.4g}, merged={self.merged}"


def _features(base: nn.Module) -> tuple[int, int]:
    k, d = getattr(base, "in_features", None), getattr(base, "out_features", None)
    if k is None or d is None:
        raise TypeError(f"LoRA wraps a layer with in_features and out_features (nn.Linear, NF4Linear), "
                        f"got {type(base).__name__}")
    return int(k), int(d)


def _dense_weight(base: nn.Module) -> Tensor:
    w = getattr(base, "weight", None)
    if not isinstance(w, Tensor) or not w.is_floating_point():
        raise TypeError(f"merging needs a dense floating-point weight; {type(base).__name__} has none "
                        "(a quantised base: dequantise it first)")
    return w


def _matches(name: str, targets: str | Sequence[str]) -> bool:
    """peft's rule: a string is a regular expression matched against the whole module name;
    a list matches a module whose name is one of them or ends with '.' + one of them."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def _linear_like(m: nn.Module) -> bool:
    return not isinstance(m, LoRALinear) and hasattr(m, "in_features") and hasattr(m, "out_features") \
        and not isinstance(m, nn.Embedding)


def apply_lora(model: nn.Module, r: int = 8, alpha: float = 16.0, targets: str | Sequence[str] = ("q_proj", "v_proj"),
               dropout: float = 0.0, rslora: bool = False, trainable: Sequence[str] = (),
               freeze: bool = True) -> list[str]:
    """Wrap every linear layer whose name matches `targets` in a LoRALinear, in place.

    freeze:    every other parameter stops taking gradients (the point of LoRA)
    trainable: names (same rule as targets) of modules that stay fully trainable, e.g. a new
               classification head (peft's modules_to_save)
    Returns the wrapped module names; an empty match is an error naming the model's linears."""
    found = [(name, m) for name, m in model.named_modules() if name and _linear_like(m) and _matches(name, targets)]
    if not found:
        linears = [n for n, m in model.named_modules() if n and _linear_like(m)]
        raise ValueError(f"no linear layer matches targets {targets!r}; the model's linear layers are e.g. "
                         f"{linears[:8]}")
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
    for name, m in found:
        _set_module(model, name, LoRALinear(m, r, alpha, dropout, rslora))
    if trainable:
        keep = [m for n, m in model.named_modules() if n and _matches(n, list(trainable))]
        if not keep:
            raise ValueError(f"no module matches trainable {list(trainable)!r}")
        for m in keep:
            for p in m.parameters():
                p.requires_grad_(True)
    return [name for name, _ in found]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module, unwrap: bool = False) -> nn.Module:
    """Fold every adapter into its base weight. unwrap: also replace each LoRALinear by its
    (now merged) base layer, leaving a plain model."""
    for name, layer in lora_layers(model).items():
        layer.merge()
        if unwrap:
            _set_module(model, name, layer.base)
    return model


def remove_lora(model: nn.Module) -> nn.Module:
    """Drop every adapter (unmerged first if merged): each LoRALinear becomes its base layer again."""
    for name, layer in lora_layers(model).items():
        layer.unmerge()
        _set_module(model, name, layer.base)
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    for layer in lora_layers(model).values():
        layer.unmerge()
    return model


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Only the adapter: {module.lora_A.weight: (r, in), module.lora_B.weight: (out, r)}."""
    return {f"{name}.{part}.weight": getattr(layer, part).weight.detach().clone()
            for name, layer in lora_layers(model).items() for part in ("lora_A", "lora_B")}


def module_names(param_names: dict[str, str]) -> dict[str, str]:
    """A parameter-name map (ours 'blocks.0.self_attn.q_proj.weight' -> theirs '...query.weight'),
    such as models.bert.hf_name_map, as a module-name map (ours 'blocks.0.self_attn.q_proj' -> theirs)."""
    return {o[: -len(".weight")]: t[: -len(".weight")] for o, t in param_names.items() if o.endswith(".weight")}


def _config(layers: Iterable[LoRALinear], names: Iterable[str]) -> dict:
    layers = list(layers)
    r, alpha, rslora = layers[0].r, layers[0].alpha, layers[0].rslora
    if any((l.r, l.alpha, l.rslora) != (r, alpha, rslora) for l in layers):
        raise ValueError("save_adapter writes one r / alpha / rslora for all layers; these adapters differ")
    p = layers[0].dropout.p if isinstance(layers[0].dropout, nn.Dropout) else 0.0
    return {"peft_type": "LORA", "task_type": None, "r": r, "lora_alpha": alpha, "lora_dropout": p,
            "use_rslora": rslora, "target_modules": sorted({n.rsplit(".", 1)[-1] for n in names}),
            "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True, "modules_to_save": None,
            "base_model_name_or_path": None, "inference_mode": True}


def save_adapter(model: nn.Module, folder: str | Path, names: dict[str, str] | None = None) -> Path:
    """Write only the adapter as peft does: adapter_model.safetensors (keys
    'base_model.model.<module>.lora_A.weight') and adapter_config.json (r, lora_alpha, use_rslora,
    target_modules, ...). names: our module name -> the name in the saved file (e.g. the HF
    model's, see module_names), so peft's PeftModel.from_pretrained loads it into that model."""
    from safetensors.torch import save_file

    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA layers to save (apply_lora first)")
    names = names or {}
    missing = [n for n in layers if names and n not in names]
    if missing:
        raise ValueError(f"names has no entry for LoRA layers {missing[:4]}")
    saved = {n: names.get(n, n) for n in layers}
    tensors = {f"{PEFT_PREFIX}{saved[n]}.{part}.weight": getattr(l, part).weight.detach().contiguous().cpu()
               for n, l in layers.items() for part in ("lora_A", "lora_B")}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / ADAPTER_WEIGHTS))
    (folder / ADAPTER_CONFIG).write_text(json.dumps(_config(layers.values(), saved.values()), indent=2))
    return folder


def load_adapter(model: nn.Module, folder: str | Path, names: dict[str, str] | None = None) -> list[str]:
    """Load a saved adapter (ours or peft's) into `model`: the layers the file names are wrapped
    (if not yet) with the file's r / alpha / rslora, and A, B copied in. names as in save_adapter.
    Returns our names of the loaded layers."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for f in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        if not (folder / f).is_file():
            raise FileNotFoundError(f"{folder} has no {f}; an adapter folder holds {ADAPTER_WEIGHTS} and {ADAPTER_CONFIG}")
    cfg = json.loads((folder / ADAPTER_CONFIG).read_text())
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{folder} holds a {cfg.get('peft_type')} adapter; only LORA is read")
    tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    back = {v: k for k, v in (names or {}).items()}
    weights: dict[str, dict[str, Tensor]] = {}
    for key, t in tensors.items():
        m = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.(lora_A|lora_B)(?:\.default)?\.weight", key)
        if m is None:
            raise ValueError(f"{key!r} in {folder / ADAPTER_WEIGHTS} is not a LoRA weight")
        ours = back.get(m.group(1), m.group(1))
        weights.setdefault(ours, {})[m.group(2)] = t
    have = lora_layers(model)
    todo = [n for n in weights if n not in have]
    if todo:
        apply_lora(model, cfg["r"], cfg["lora_alpha"], targets=todo, dropout=cfg.get("lora_dropout", 0.0),
                   rslora=cfg.get("use_rslora", False))
    layers = lora_layers(model)
    for name, parts in weights.items():
        if name not in layers:
            raise ValueError(f"adapter layer {name!r} is not a linear layer of the model")
        for part, t in parts.items():
            getattr(layers[name], part).weight.data.copy_(t)
    return sorted(weights)
