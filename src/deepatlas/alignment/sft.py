"""Supervised fine-tuning (SFT, map place T3): next-token loss on the responses only.

InstructGPT (Ouyang et al. 2022) step 1; the loss of a packed window with response mask m_t:

    L = − Σ_t m_t · log π_θ(y_t | x_≤t)  /  Σ_t m_t          (m_t = 1 on answer tokens + <|im_end|>)

so a prompt token's logits get exactly zero gradient (tests/alignment/test_sft.py). With m_t = 1
on every real token it is plain language-model fine-tuning of the whole conversation
("full-sequence loss"), the comparison T3 measures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.alignment.base import ChatLM
from deepatlas.alignment.data import Example, is_correct, on_task, pack, prompt_text, render_example
from deepatlas.chat.template import IM_END
from deepatlas.core.train import TrainConfig, train
from deepatlas.generation.decode import SamplingSettings, generate


def masked_lm_loss(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """logits (B, T, V), targets (B, T), mask (B, T) -> mean CE over the positions with mask 1."""
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")  # (B·T,)
    m = mask.flatten().to(nll.dtype)
    return (nll * m).sum() / m.sum().clamp(min=1.0)


def sft_loss(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    x, y, mask = batch
    return masked_lm_loss(model(x), y, mask)


@dataclass
class SFTConfig:
    steps: int = 600
    batch_size: int = 16
    lr: float = 1e-3
    response_only: bool = True     # False: the loss on every real token (prompt + response)
    seed: int = 0


def sft_tensors(lm: ChatLM, examples: Sequence[Example], block_size: int, response_only: bool = True
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Packed (x, y, mask) windows of the rendered conversations (those that fit the context)."""
    pad = lm.token("<|endoftext|>")
    rows = []
    for e in examples:
        ids, mask = render_example(lm.encode, e.prompt, e.answer)
        if len(ids) > block_size + 1:               # the rare conversation longer than the context
            continue
        rows.append((ids, mask if response_only else [1] * len(ids)))
    return pack(rows, block_size, pad)              # the padding after a window's last conversation: mask 0


def train_sft(lm: ChatLM, examples: Sequence[Example], cfg: SFTConfig) -> dict:
    """Fine-tune lm.model in place on the packed conversations; -> {"losses", "seconds"}."""
    x, y, m = sft_tensors(lm, examples, lm.model.config.block_size, cfg.response_only)

    def get_batch(step: int, micro: int):
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + step)
        idx = torch.randint(0, len(x), (cfg.batch_size,), generator=g)
        return x[idx], y[idx], m[idx]

    lm.model.train()
    tc = TrainConfig(steps=cfg.steps, lr=cfg.lr, min_lr=cfg.lr / 10, warmup=min(20, cfg.steps // 10),
                     schedule="cosine", weight_decay=0.0, log_every=10 ** 9, progress=False, seed=cfg.seed)
    result = train(lm.model, sft_loss, get_batch, tc)
    lm.model.eval()
    return {"losses": result.losses, "seconds": result.seconds, "windows": len(x)}


@torch.no_grad()
def answer(lm: ChatLM, users: Sequence[str], max_new_tokens: int = 16,
           settings: SamplingSettings | None = None, seed: int | None = None
           ) -> list[tuple[str, bool, list[int]]]:
    """The model's reply to each user message -> [(text, ended its turn, new token ids)]."""
    stop = lm.token(IM_END)
    prompts = [lm.encode(prompt_text(u)) for u in users]
    room = lm.model.context_length - max(len(p) for p in prompts)
    outs = generate(lm.model, prompts, max(1, min(max_new_tokens, room)), settings,
                    stop_ids=[stop], seed=seed)
    return [(lm.decode([t for t in o if t != stop]).strip(), stop in o, o) for o in outs]


@torch.no_grad()
def response_nll(lm: ChatLM, examples: Sequence[Example]) -> float:
    """Mean NLL (nats/token) of the reference answers (+ <|im_end|>) given their prompts."""
    x, y, m = sft_tensors(lm, examples, lm.model.config.block_size, response_only=True)
    lm.model.eval()
    return float(masked_lm_loss(lm.model(x), y, m))


def evaluate_chat(lm: ChatLM, examples: Sequence[Example], max_new_tokens: int = 16) -> dict:
    """Greedy replies to the examples' prompts: the share that ends its turn, that ends it with an
    answer to the question asked (data.on_task), that is correct (overall and by family)."""
    replies = answer(lm, [e.prompt for e in examples], max_new_tokens)
    ended = [r[1] for r in replies]
    correct = [r[1] and is_correct(e, r[0]) for e, r in zip(examples, replies)]
    answered = [r[1] and on_task(e, r[0]) for e, r in zip(examples, replies)]
    by_family: dict[str, list[bool]] = {}
    for e, c in zip(examples, correct):
        by_family.setdefault(e.family, []).append(c)
    return {"ends_turn": sum(ended) / len(ended), "on_task": sum(answered) / len(answered),
            "correct": sum(correct) / len(correct),
            "correct_by_family": {f: sum(v) / len(v) for f, v in by_family.items()},
            "replies": [r[0] for r in replies]}


def cached_sft(base: ChatLM, base_key: dict, examples_n: int, cfg: SFTConfig) -> tuple[ChatLM, dict]:
    """The SFT model of (base, n generated training examples, cfg), from the cache or trained
    once (T4 and T5 start from it; T3 trains and measures it)."""
    from dataclasses import asdict

    from deepatlas.alignment.base import cached
    from deepatlas.alignment.data import instruction_set

    def build():
        lm = base.copy()
        info = train_sft(lm, instruction_set(examples_n, "train", seed=cfg.seed), cfg)
        return lm, {"seconds": info["seconds"], "losses": info["losses"]}
    return cached("sft", {"base": base_key, "n": examples_n, "sft": asdict(cfg)}, build)
