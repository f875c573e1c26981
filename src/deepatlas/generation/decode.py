"""Autoregressive decoding: greedy and sampled, batched with left padding, with a KV cache.

THE MODEL INTERFACE (GPT here; any decoder, e.g. the Llama model, plugs into the same code):

    model(idx, cache=cache, pos=pos, attention_mask=mask) -> logits
        idx:   (B, T) long token ids: the T positions after the `cache.length` ones the cache holds
               (cache=None: the whole sequence).
        cache: the object `model.new_cache(batch, max_len)` returns (e.g. nn.attention.KVCache);
               the forward writes the new keys/values at slots cache.length .. cache.length+T-1.
        pos:   (B, T) long position ids of each row (left padding shifts them per row).
        attention_mask: (B, S) bool over all S = cache.length + T slots, True = real token.
        logits: (B, T, vocab) float.
    model.context_length: int, the longest sequence the model takes;  model.vocab_size: int.

A prompt batch of different lengths is left-padded to the longest, so that every row's next
token is written at the same slot; the mask hides the pads and per-row positions count only
real tokens, which makes each row's logits those of the row decoded alone.
Each step (Radford et al. 2019; Holtzman et al. 2020 for the sampling filters):
    greedy:  x_{t+1} = argmax_x P(x | x_≤t)
    sample:  x_{t+1} ~ softmax(filter(z / T))  with filter = top-k, then top-p,
    after the repetition penalty (Keskar et al. 2019) on the tokens already in the row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from deepatlas.generation.processors import check_sampling_settings, process_logits


@dataclass
class SamplingSettings:
    """How the next token is chosen. greedy=True ignores the sampling filters."""

    greedy: bool = True
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0

    def check(self) -> None:
        check_sampling_settings(self.temperature, self.top_k, self.top_p, self.repetition_penalty)


def check_prompts(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> None:
    """ValueError naming the bad prompt / id / length and what would be valid."""
    if len(prompts) == 0:
        raise ValueError("no prompts given: pass a list of token-id lists, e.g. [[1, 2, 3]]")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an integer ≥ 0")
    V, ctx = model.vocab_size, model.context_length
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty: give at least one token id (e.g. a BOS token)")
        bad = [t for t in p if not (isinstance(t, int) and 0 <= t < V)]
        if bad:
            raise ValueError(f"prompt {i} holds unknown token id {bad[0]!r}: valid ids are 0..{V - 1}")
        if len(p) > ctx:
            raise ValueError(f"prompt {i} has {len(p)} tokens, longer than the model's context "
                             f"length {ctx}")
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > ctx:
        raise ValueError(f"prompt of {longest} tokens + max_new_tokens={max_new_tokens} exceeds the "
                         f"context length {ctx}: ask for at most {ctx - longest} new tokens")


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int = 0,
             device: str | torch.device = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """-> ids (B, L), mask (B, L) bool True = real token, positions (B, L) counting real tokens."""
    L = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), L), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), L), dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        ids[i, L - len(p):] = torch.tensor(list(p), dtype=torch.long, device=device)
        mask[i, L - len(p):] = True
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)             # first real token at 0
    return ids, mask, positions


def choose_next(logits: Tensor, s: SamplingSettings, previous: Tensor, previous_mask: Tensor,
                generator: torch.Generator | None) -> Tensor:
    """logits (B, V) of the last position -> next ids (B,)."""
    logits = process_logits(logits.float(), 1.0 if s.greedy else s.temperature,
                            None if s.greedy else s.top_k, None if s.greedy else s.top_p,
                            s.repetition_penalty, previous, previous_mask)
    if s.greedy:
        return logits.argmax(dim=-1)                                   # x = argmax P(x | x_≤t)
    probs = logits.softmax(dim=-1)                                     # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # x ~ P


@torch.no_grad()
def decode_steps(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                 settings: SamplingSettings | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """Yield the next token of every row (B,), one step at a time (stopping is the caller's)."""
    settings = settings or SamplingSettings()
    settings.check()
    check_prompts(model, prompts, max_new_tokens)
    device = next(model.parameters()).device
    ids, mask, pos = left_pad(prompts, device=device)                  # (B, L) each
    B, L = ids.shape
    cache = model.new_cache(B, L + max_new_tokens) if use_cache else None
    new_ids, new_pos = ids, pos                                        # what the next call feeds
    for _ in range(max_new_tokens):
        if use_cache:   # only the new positions; keys/values of the others come from the cache
            logits = model(new_ids, cache=cache, pos=new_pos, attention_mask=mask)
        else:           # the plain path: recompute the whole sequence every step
            logits = model(ids, pos=pos, attention_mask=mask)
        nxt = choose_next(logits[:, -1], settings, ids, mask, generator)  # (B,)
        yield nxt
        new_ids, new_pos = nxt[:, None], pos[:, -1:] + 1               # (B, 1)
        ids = torch.cat([ids, new_ids], 1)
        pos = torch.cat([pos, new_pos], 1)
        mask = torch.cat([mask, torch.ones(B, 1, dtype=torch.bool, device=device)], 1)


def iter_tokens(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                settings: SamplingSettings | None = None, *, stop_ids: Sequence[int] = (),
                stop_strings: Sequence[str] = (), decode: Callable[[list[int]], str] | None = None,
                use_cache: bool = True, seed: int | None = None) -> Iterator[tuple[int, int]]:
    """Stream (row, token) pairs as they are chosen, until every row stopped or max_new_tokens.

    A row stops after a token in `stop_ids`, or once its decoded new text (needs `decode`)
    contains one of `stop_strings`; the stopping token is yielded. `seed` fixes the sampling
    generator (same seed, same text). Decoding advances one step each time the caller asks."""
    if stop_strings and decode is None:
        raise ValueError("stop_strings need decode=<function from token ids to text>")
    model.eval()
    generator = None
    if seed is not None:
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    new: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    stops = set(stop_ids)
    for nxt in decode_steps(model, prompts, max_new_tokens, settings, use_cache, generator):
        for row, token in enumerate(nxt.tolist()):
            if done[row]:   # finished rows still ride along in the batch; their tokens are dropped
                continue
            new[row].append(token)
            yield row, token
            if token in stops or (stop_strings and any(s in decode(new[row]) for s in stop_strings)):
                done[row] = True
        if all(done):
            return


def generate(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int,
             settings: SamplingSettings | None = None, *,
             on_token: Callable[[int, int], None] | None = None, **kwargs) -> list[list[int]]:
    """The new tokens of each prompt (prompts not repeated); iter_tokens' keyword arguments
    (stop_ids, stop_strings, decode, use_cache, seed). `on_token(row, id)` streams each token."""
    out: list[list[int]] = [[] for _ in prompts]
    for row, token in iter_tokens(model, prompts, max_new_tokens, settings, **kwargs):
        out[row].append(token)
        if on_token is not None:
            on_token(row, token)
    return out


def stream(model: nn.Module, prompt: Sequence[int], max_new_tokens: int,
           settings: SamplingSettings | None = None, **kwargs) -> Iterator[int]:
    """Yield the new tokens of one prompt as they are chosen (iter_tokens' keyword arguments)."""
    for _, token in iter_tokens(model, [prompt], max_new_tokens, settings, **kwargs):
        yield token


def stream_long(model: nn.Module, prompt: Sequence[int], max_new_tokens: int,
                settings: SamplingSettings | None = None, *, stop_ids: Sequence[int] = (),
                stop_strings: Sequence[str] = (), decode: Callable[[list[int]], str] | None = None,
                seed: int | None = None) -> Iterator[int]:
    """Like stream(), but past the context length: once the window is full, decoding restarts
    from the window's last half (re-encoded into a fresh cache), as nanoGPT crops its context.
    A prompt longer than the context keeps its last half-context of tokens."""
    if stop_strings and decode is None:
        raise ValueError("stop_strings need decode=<function from token ids to text>")
    ctx, stops = model.context_length, set(stop_ids)
    history, produced, chunk = list(prompt), [], 0
    check_prompts(model, [history[-ctx:]], 0)
    while len(produced) < max_new_tokens:
        window = history if len(history) < ctx else history[-(ctx // 2):]
        n = min(max_new_tokens - len(produced), ctx - len(window))
        part_seed = None if seed is None else seed + chunk
        for token in stream(model, window, n, settings, seed=part_seed):
            history.append(token), produced.append(token)
            yield token
            if token in stops or (stop_strings and any(s in decode(produced) for s in stop_strings)):
                return
        chunk += 1
