"""Alignment: one DPO training step, ours vs trl's DPOTrainer; PPO rollout + update time per sample.

DPO: the same tiny GPT-2 (ours, and transformers' GPT2LMHeadModel holding the same weights), the
same batch of 8 preference pairs (ChatML prompts, short replies), β = 0.1, sigmoid loss, AdamW,
reference log-probs precomputed on both sides (trl: precompute_ref_log_probs=True). One step =
policy forward of chosen + rejected, the loss, backward, optimizer step; trl's step is
`trainer.training_step(model, batch)` + `trainer.optimizer.step()` on a batch from its own
collator. Goal ≥ 1.0×. Both losses at the first step are checked equal before timing.
PPO: one iteration of deepatlas.alignment.ppo (32 sampled replies of ≤ 10 tokens, reward model
score, 2 epochs of 2 minibatches) on the same tiny GPT, seconds per sample; ours alone (no peer:
the peer field repeats ours, goal 0, reported as measured).
"""
from __future__ import annotations

import os
import tempfile

import torch

from bench.common import interleaved_median_times, result
from deepatlas.alignment.dpo import dpo_step, pad_rows, response_logps
from deepatlas.models.gpt import GPT, GPTConfig, to_hf_state_dict
from deepatlas.text.bpe import CHAT_SPECIAL_TOKENS, ByteLevelBPE

_TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must "
         "be in want of a wife. In the beginning God created the heaven and the earth. ") * 20


def _setup(n_pairs: int = 8):
    torch.manual_seed(0)
    bpe = ByteLevelBPE.train(_TEXT, 400, CHAT_SPECIAL_TOKENS)
    cfg = GPTConfig(vocab_size=len(bpe), block_size=128, n_layer=2, n_head=4, n_embd=64)
    model = GPT(cfg)
    words = _TEXT.split()
    pairs = []
    for i in range(n_pairs):
        prompt = f"<|im_start|>user\nContinue: {' '.join(words[i:i + 6])}<|im_end|>\n<|im_start|>assistant\n"
        pairs.append((prompt, " ".join(words[i + 6:i + 11]) + "<|im_end|>", " ".join(words[i + 20:i + 23]) + "<|im_end|>"))
    return bpe, model, pairs


def _hf_tokenizer(bpe: ByteLevelBPE):
    """transformers' tokenizer with exactly our BPE's vocab and merges (same ids, checked below)."""
    from transformers import PreTrainedTokenizerFast

    from deepatlas.text.reference import hf_from_vocab_merges

    tok = PreTrainedTokenizerFast(tokenizer_object=hf_from_vocab_merges(bpe.vocab, bpe.merges, CHAT_SPECIAL_TOKENS),
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    return tok


def dpo_step_vs_trl() -> dict:
    import warnings

    from datasets import Dataset
    from transformers import GPT2Config, GPT2LMHeadModel
    from trl import DPOConfig, DPOTrainer

    bpe, model, pairs = _setup()
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=len(bpe), n_positions=128, n_layer=2, n_head=4, n_embd=64,
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                    bos_token_id=bpe.vocab["<|endoftext|>"], eos_token_id=bpe.vocab["<|endoftext|>"]))
    hf.load_state_dict(to_hf_state_dict(model), strict=False)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = _hf_tokenizer(bpe)
        if tok(pairs[0][0])["input_ids"] != bpe.encode(pairs[0][0]):
            raise AssertionError("the transformers tokenizer does not reproduce our BPE ids")
        data = Dataset.from_dict({"prompt": [p for p, _, _ in pairs], "chosen": [c for _, c, _ in pairs],
                                  "rejected": [r for _, _, r in pairs]})
        args = DPOConfig(output_dir=tmp, per_device_train_batch_size=len(pairs), learning_rate=1e-4, beta=0.1,
                         precompute_ref_log_probs=True, report_to=[], use_cpu=True, max_length=128,
                         logging_steps=10 ** 6, save_strategy="no", dataloader_num_workers=0, seed=0)
        trainer = DPOTrainer(model=hf, args=args, train_dataset=data, processing_class=tok)
        trainer.create_optimizer_and_scheduler(num_training_steps=100)
        trainer.current_gradient_accumulation_steps = 1      # set by Trainer.train(), which we bypass
        batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
        trl_state = {k: v.clone() for k, v in hf.state_dict().items()}

    # ours on the same token ids: prompt + chosen / prompt + rejected, response mask on the replies
    rows_c, rows_r = [], []
    for p, c, r in pairs:
        c, r = c + "<|endoftext|>", r + "<|endoftext|>"          # trl appends the EOS token to each reply
        pi = bpe.encode(p)
        rows_c.append((pi + bpe.encode(c), [0] * len(pi) + [1] * len(bpe.encode(c))))
        rows_r.append((pi + bpe.encode(r), [0] * len(pi) + [1] * len(bpe.encode(r))))
    chosen, rejected = pad_rows(rows_c, 0), pad_rows(rows_r, 0)
    with torch.no_grad():
        ref_c, ref_r = response_logps(model, *chosen), response_logps(model, *rejected)
    ours_state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, fused=True)  # as the Trainer default (adamw_torch_fused)

    def ours():
        return dpo_step(model, opt, chosen, rejected, ref_c, ref_r, beta=0.1)["loss"]

    def theirs():
        loss = trainer.training_step(hf, dict(batch))
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)     # Trainer's loop clips (max_grad_norm=1.0) as ours does
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
        return float(loss)

    if tuple(batch["input_ids"].shape) != (2 * len(pairs), max(chosen[0].shape[1], rejected[0].shape[1])):
        raise AssertionError(f"trl's batch {tuple(batch['input_ids'].shape)} is not ours")
    # equal weights and tokens: equal losses at step 1 (log 2, policy = reference) and at step 2
    for step in range(2):
        a, b = ours(), theirs()
        if abs(a - b) > 1e-4:
            raise AssertionError(f"DPO losses differ at step {step + 1}: ours {a:.6f}, trl {b:.6f}")
    model.load_state_dict(ours_state), hf.load_state_dict(trl_state)
    t = interleaved_median_times({"ours": ours, "trl": theirs}, warmup=2, repeats=10)
    return result("dpo_step_vs_trl", "s/step", t["ours"], t["trl"], "trl DPOTrainer.training_step", goal=1.0)


def ppo_time_per_sample() -> dict:
    from deepatlas.alignment.ppo import PolicyWithValue, PPOConfig, ppo_step, rollout
    from deepatlas.alignment.reward import RewardModel

    bpe, model, pairs = _setup(32)
    cfg = PPOConfig(rollouts=32, max_new_tokens=10, ppo_epochs=2, minibatch=16)
    policy, ref, rm = PolicyWithValue(model), GPT(model.config).eval(), RewardModel(model)
    ref.load_state_dict(model.state_dict())
    prompts = [bpe.encode(p) for p, _, _ in pairs]
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    stop = bpe.vocab["<|im_end|>"]

    def iteration():
        with torch.no_grad():
            ro = rollout(policy, ref, lambda ids, real: rm(ids, real), prompts, cfg, stop, 0, seed=0)
        ppo_step(policy, opt, ro, cfg, g)

    t = interleaved_median_times({"ppo": iteration}, warmup=1, repeats=5)["ppo"] / cfg.rollouts
    return result("ppo_time_per_sample", "s/sample", t, t, "ours alone (no peer)", goal=0.0)


BENCHMARKS = [dpo_step_vs_trl, ppo_time_per_sample]
