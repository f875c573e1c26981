"""Knowledge distillation (map place T6): Hinton's soft targets and a DistilBERT-style student.

Hinton, Vinyals & Dean 2015 ("Distilling the Knowledge in a Neural Network", §2):
    p_i^T = exp(v_i / T) / Σ_j exp(v_j / T)      teacher's soft targets at temperature T
    q_i^T = exp(z_i / T) / Σ_j exp(z_j / T)      student's
    L = α · T² · KL(p^T ‖ q^T) + (1 − α) · CE(q¹, y)
The T² keeps the soft term's gradients the same size as T changes: ∂KL/∂z_i = (q_i − p_i) / T,
≈ (z_i − v_i) / (N T²) for large T and zero-mean logits (§2.1), so T² · KL has T-free gradients.

DistilBERT (Sanh et al. 2019, §3): the student has half the teacher's layers and starts from
every other one of them (layers 0, 2, 4, ...), with the teacher's embeddings and head.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """KL(p^T ‖ q^T) averaged over the batch, from its definition Σ_i p_i (log p_i − log q_i)."""
    log_p = F.log_softmax(teacher_logits.float() / T, dim=-1)                  # log p^T  (B, C)
    log_q = F.log_softmax(student_logits.float() / T, dim=-1)                  # log q^T  (B, C)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor | None = None,
                      T: float = 4.0, alpha: float = 0.9) -> Tensor:
    """L = α · T² · KL(p^T ‖ q^T) + (1 − α) · CE(student, labels)  (labels None: α = 1)."""
    if T <= 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    soft = T * T * soft_kl(student_logits, teacher_logits.detach(), T)
    if labels is None or alpha == 1.0:
        return soft
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


def every_other_layer(teacher: nn.Module, attr: str = "blocks", keep: Sequence[int] | None = None) -> nn.Module:
    """A copy of `teacher` keeping only the layers `keep` of its ModuleList `attr` (default 0, 2, 4, ...):
    DistilBERT's initialisation. A `config.n_layer` / `depth` attribute follows the new count."""
    layers = getattr(teacher, attr, None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(teacher).__name__}.{attr} is not a ModuleList of layers")
    keep = list(range(0, len(layers), 2)) if keep is None else list(keep)
    if not keep or any(not 0 <= i < len(layers) for i in keep):
        raise ValueError(f"keep {keep} must name layers among 0..{len(layers) - 1}")
    student = copy.deepcopy(teacher)
    setattr(student, attr, nn.ModuleList(copy.deepcopy(layers[i]) for i in keep))
    cfg = getattr(student, "config", None)
    if cfg is not None and hasattr(cfg, "n_layer"):
        student.config = copy.copy(cfg)
        student.config.n_layer = len(keep)
    return student


def parameter_count(model: nn.Module, nonzero: bool = False) -> int:
    """All parameters, or only the non-zero ones (a pruned model's effective size)."""
    return sum(int((p != 0).sum()) if nonzero else p.numel() for p in model.parameters())
