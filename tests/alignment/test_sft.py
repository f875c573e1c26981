"""SFT: ChatML rendering with role tokens, the response mask, packing, and the loss on responses:
prompt tokens contribute exactly zero gradient."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from deepatlas.alignment.data import (FAMILIES, PHRASINGS, instruction_set, is_correct, on_task, pack,
                                      render_example, rule_score)
from deepatlas.alignment.sft import masked_lm_loss
from deepatlas.models.gpt import GPT, GPTConfig
from deepatlas.text.bpe import CHAT_SPECIAL_TOKENS, ByteLevelBPE

BPE = ByteLevelBPE.train("the cat sat on the mat. In the beginning God created the heaven.", 300,
                         CHAT_SPECIAL_TOKENS)


def test_render_masks_exactly_the_answer_and_its_end_of_turn():
    ids, mask = render_example(BPE.encode, "Count the words: the cat", "2")
    text = BPE.decode(ids)
    assert text == "<|im_start|>user\nCount the words: the cat<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n"
    learned = BPE.decode([i for i, m in zip(ids, mask) if m])
    assert learned == "2<|im_end|>"
    assert BPE.vocab["<|im_start|>"] in ids                      # role markers are single tokens
    assert ids.count(BPE.vocab["<|im_end|>"]) == 2


def test_pack_keeps_conversations_whole_and_shifts_the_mask_with_the_targets():
    rows = [render_example(BPE.encode, f"Count the words: {'the cat ' * k}", str(2 * k)) for k in range(1, 6)]
    x, y, m = pack(rows, 64, pad_id=0)
    assert x.shape == y.shape == m.shape and x.shape[1] == 64 and len(x) > 1
    assert torch.equal(x[:, 1:], y[:, :-1])
    # every answer token appears as a learned target, in order, nothing else does
    want = [t for ids, mask in rows for t, k in zip(ids, mask) if k]
    got = [int(t) for row_y, row_m in zip(y, m) for t, k in zip(row_y, row_m) if k]
    assert got == want


def test_prompt_tokens_get_exactly_zero_gradient():
    torch.manual_seed(0)
    rows = [render_example(BPE.encode, "First word of: the cat sat", "the"),
            render_example(BPE.encode, "Count the words: on the mat", "3")]
    x, y, m = pack(rows, 48, pad_id=0)
    model = GPT(GPTConfig(vocab_size=len(BPE), block_size=48, n_layer=1, n_head=2, n_embd=16))
    logits = model(x).detach().requires_grad_(True)
    loss = masked_lm_loss(logits, y, m)
    loss.backward()
    assert bool((logits.grad[m == 0] == 0).all())                 # prompt (and pad) positions: exactly 0
    assert bool((logits.grad[m == 1].abs().sum(-1) > 0).all())
    # = mean cross-entropy over the response targets alone
    want = F.cross_entropy(logits[m == 1], y[m == 1])
    torch.testing.assert_close(loss, want)
    # changing a prompt target changes nothing
    y2 = y.clone()
    y2[m == 0] = 5
    assert float(masked_lm_loss(logits.detach(), y2, m)) == float(loss.detach())


def test_instruction_set_is_deterministic_and_heldout_is_disjoint():
    a, b = instruction_set(40, "train", seed=3), instruction_set(40, "train", seed=3)
    assert a == b and {e.family for e in a} == set(FAMILIES)
    ho = instruction_set(40, "heldout", seed=3)
    train_texts = {e.text for e in instruction_set(400, "train")}
    assert not train_texts & {e.text for e in ho}
    for e in ho:                                                  # held-out phrasing only
        stem = PHRASINGS[e.family][-1].split("{text}")[0]
        assert e.prompt.startswith(stem)
        assert on_task(e, e.answer) and is_correct(e, e.answer)


def test_rule_score():
    assert rule_score("she was happy and good") == 5 + 2 * 2       # 5 real words, 2 pleasant
    assert rule_score("happy happy happy") == 1 + 2                 # repeating a word earns nothing
    assert rule_score("the wicked shall die") == 4 - 2 * 2
    assert rule_score("xqzv blorp") == 0
    assert rule_score("happy", ended=False) == 3 - 3
