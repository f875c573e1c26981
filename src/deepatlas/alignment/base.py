"""The base model of the alignment places: a small GPT that deepatlas pretrains itself.

No base (non-instruct) LLM weights exist offline, so stage 0 of pretraining → SFT → alignment is
ours: a byte-level BPE (deepatlas.text, with the ChatML special tokens reserved but never seen in
pretraining) learned on Austen + the King James Bible, then the GPT of deepatlas.models.gpt trained
on the next-token loss of that text (deepatlas.core.train). The result is cached under
$DEEPATLAS_CACHE/alignment/base-<hash of the config> so the T3-T5 experiments and their quick
runs share one pretraining; it is deterministic from the config's seed.

A saved model folder is a run folder as deepatlas.generation.runfolder writes it (model/ +
tokenizer.json + bpe/), with the special tokens listed in tokenizer.json, so
`deepatlas sample DIR` and `deepatlas chat --run DIR` read it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from deepatlas.core.train import TrainConfig, train
from deepatlas.data.cache import build_lock, cache_dir
from deepatlas.data.lm import LMDataset
from deepatlas.generation.runfolder import TOKENIZER_FILE, save_model
from deepatlas.models.gpt import GPT, GPTConfig, from_pretrained_hf, lm_loss
from deepatlas.text.bpe import CHAT_SPECIAL_TOKENS, ByteLevelBPE


@dataclass
class BaseConfig:
    vocab: int = 512                # BPE vocabulary (3 special tokens + 256 bytes + merges)
    corpus_chars: int = 600_000     # half Austen, half Bible (verses spread over the whole book)
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 96
    block_size: int = 96
    steps: int = 500                # ~1 min on one quiet core; quick and full runs share it (cached)
    batch_size: int = 16
    lr: float = 3e-3
    seed: int = 0


# the quick settings of T3-T5: the same base as the full setting, a smaller SFT budget (the three
# experiments share one cached base and one cached SFT model per setting)
QUICK_STAGES = {"sft.steps": 200, "sft.lr": 2e-3, "train_examples": 3200}


@dataclass
class ChatLM:
    """A GPT and its tokenizer; `encode` keeps the ChatML special tokens whole."""
    model: GPT
    bpe: ByteLevelBPE

    def encode(self, text: str) -> list[int]:
        return self.bpe.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.bpe.decode(ids)

    def token(self, text: str) -> int:
        return self.bpe.vocab[text]

    def copy(self) -> "ChatLM":
        return ChatLM(copy.deepcopy(self.model), self.bpe)


def pretraining_text(chars: int) -> str:
    """chars/2 of Austen (the novels' openings, each its share) + chars/2 of Bible verses taken
    at an even stride over the whole book, joined with <|endoftext|>-free newlines."""
    from deepatlas.data.austen import austen_texts
    from deepatlas.data.bible import bible_verses

    novels = list(austen_texts().values())
    austen = "\n".join(t[:chars // 2 // len(novels)] for t in novels)
    verses = [t for _, t in bible_verses()]
    per_verse = sum(len(v) + 1 for v in verses) / len(verses)
    stride = max(1, int(len(verses) * per_verse / (chars // 2)))
    bible = "\n".join(verses[::stride])[:chars // 2]
    return austen + "\n" + bible


def save_chat_lm(directory: Path, lm: ChatLM) -> Path:
    """Write the run-folder layout: model/ (HF GPT-2 files), bpe/, tokenizer.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(directory, lm.model)
    lm.bpe.save(directory / "bpe")
    (directory / TOKENIZER_FILE).write_text(json.dumps(
        {"kind": "bpe", "dir": "bpe", "special_tokens": list(lm.bpe.special_tokens), "chat": "chatml"}))
    return directory


def load_chat_lm(directory: str | Path) -> ChatLM:
    """Read what save_chat_lm wrote; FileNotFoundError names what is missing."""
    directory = Path(directory)
    spec_path = directory / TOKENIZER_FILE
    if not spec_path.is_file() or not (directory / "model" / "model.safetensors").is_file():
        raise FileNotFoundError(f"{directory} holds no chat model (model/model.safetensors and "
                                f"{TOKENIZER_FILE}); give the run folder of a T3/T4/T5 experiment "
                                f"or one of its stage folders (base, sft, ppo, dpo)")
    spec = json.loads(spec_path.read_text())
    if spec.get("kind") != "bpe":
        raise ValueError(f"{spec_path}: tokenizer kind {spec.get('kind')!r}; a chat model needs a BPE "
                         "with the ChatML special tokens")
    bpe = ByteLevelBPE.load(directory / spec["dir"], special_tokens=spec.get("special_tokens", ()))
    return ChatLM(from_pretrained_hf(directory / "model").eval(), bpe)


def cached(name: str, key: dict, build: Callable[[], tuple[ChatLM, dict]]) -> tuple[ChatLM, dict]:
    """$DEEPATLAS_CACHE/alignment/<name>-<hash of key>: loaded when there, else built once by
    build() -> (model, info) and saved atomically. info gets "cached": True | False."""
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=6).hexdigest()
    folder = cache_dir("alignment", f"{name}-{digest}")
    with build_lock("alignment", f"{name}-{digest}"):   # two processes (pytest workers) build it once
        info_path = folder / "info.json"
        if info_path.is_file():
            try:
                return load_chat_lm(folder), {**json.loads(info_path.read_text()), "cached": True}
            except (FileNotFoundError, ValueError, OSError):
                pass                                                # damaged: build again
        lm, info = build()
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        save_chat_lm(tmp, lm)
        (tmp / "info.json").write_text(json.dumps(info))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)                                     # atomic: never half a model
        return lm, {**info, "cached": False}


def pretrain_base(cfg: BaseConfig, log=print) -> tuple[ChatLM, dict]:
    """Train the BPE and the GPT from scratch -> (model, {"val_loss", "seconds", ...})."""
    start = time.time()
    torch.manual_seed(cfg.seed)
    text = pretraining_text(cfg.corpus_chars)
    bpe = ByteLevelBPE.train(text[:400_000] + text[-200_000:], cfg.vocab, CHAT_SPECIAL_TOKENS)
    ids = torch.tensor(bpe.encode(text))
    data = LMDataset(ids, val_fraction=0.05)
    model = GPT(GPTConfig(vocab_size=len(bpe), block_size=cfg.block_size, n_layer=cfg.n_layer,
                          n_head=cfg.n_head, n_embd=cfg.n_embd))
    tc = TrainConfig(steps=cfg.steps, lr=cfg.lr, min_lr=cfg.lr / 10, warmup=min(50, cfg.steps // 10),
                     schedule="cosine", beta2=0.99, weight_decay=0.1, log_every=10 ** 9, progress=False,
                     seed=cfg.seed)
    train(model, lm_loss, lambda step, micro: data.get_batch("train", step, micro, cfg.batch_size,
                                                               cfg.block_size, cfg.seed), tc)
    model.eval()
    with torch.no_grad():
        val = float(torch.stack([lm_loss(model, data.get_batch("val", i, 0, cfg.batch_size, cfg.block_size,
                                                                 seed=10_000)) for i in range(4)]).mean())
    info = {"val_loss": val, "seconds": time.time() - start, "tokens": len(ids),
            "chars_per_token": len(text) / len(ids), "params": model.num_params()}
    log(f"base GPT pretrained: {info['params']:,} params, {len(ids):,} tokens, val loss "
        f"{val:.3f} nats/token, {info['seconds']:.1f} s")
    return ChatLM(model, bpe), info


def cached_base(cfg: BaseConfig, log=print) -> tuple[ChatLM, dict]:
    """The pretrained base of this config from the cache, pretraining it once when missing."""
    return cached("base", asdict(cfg), lambda: pretrain_base(cfg, log))


# the ChatML template our chat models use: SmolLM2's turns, without its default system message
CHATML_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
                   "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def run_chat_model(directory: str | Path):
    """A T3/T4/T5 run folder (or one of its stage folders: base, sft, full_seq, ppo, ppo_kl0,
    rlaif, dpo) as the deepatlas.chat ChatModel SmolLM2 uses, for `deepatlas chat --run DIR`."""
    from deepatlas.chat.session import ChatModel
    from deepatlas.chat.template import IM_END
    from deepatlas.chat.tokenizer import GGUFTokenizer

    lm = load_chat_lm(directory)
    if IM_END not in lm.bpe.vocab:
        raise ValueError(f"{directory}: the tokenizer has no {IM_END} token; not a chat model")
    tok = GGUFTokenizer(lm.bpe, None, lm.token("<|endoftext|>"), list(lm.bpe.special_tokens))
    return ChatModel(lm.model, tok, CHATML_TEMPLATE, sorted({lm.token(IM_END), lm.token("<|endoftext|>")}))
