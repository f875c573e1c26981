"""BPE training gives the same merges and ids as HF `tokenizers` BpeTrainer on the same text."""
from __future__ import annotations

import random

import pytest

pytest.importorskip("tokenizers", reason="HF tokenizers is the reference these tests compare with")

from deepatlas.text.bpe import ByteLevelBPE  # noqa: E402
from deepatlas.text.reference import hf_byte_level_bpe, hf_vocab_merges  # noqa: E402

from deepatlas.text.bpe import CHAT_SPECIAL_TOKENS  # noqa: E402

SPECIALS = list(CHAT_SPECIAL_TOKENS)


def assert_same_as_hf(ours: ByteLevelBPE, hf, held_out: str) -> None:
    vocab, merges = hf_vocab_merges(hf)
    assert len(ours.merges) == len(merges)
    first_diff = next((i for i, (a, b) in enumerate(zip(ours.merges, merges)) if a != b), None)
    assert first_diff is None, (first_diff, ours.merges[first_diff], merges[first_diff])
    assert ours.vocab == vocab
    assert ours.encode(held_out) == hf.encode(held_out).ids


@pytest.mark.parametrize("vocab_size", [300, 2000])
def test_bible_merges_vocab_and_ids_equal_hf(genesis, kjv, vocab_size):
    ours = ByteLevelBPE.train(genesis, vocab_size, special_tokens=SPECIALS)
    hf = hf_byte_level_bpe([genesis], vocab_size, special_tokens=SPECIALS)
    assert len(ours) == vocab_size
    assert_same_as_hf(ours, hf, held_out=kjv[-100_000:])  # Revelation: never seen in training


def test_smollm_pretokenizer_training_equals_hf(genesis, kjv):
    """Digits split one by one before the GPT-2 regex (SmolLM2's pre-tokenizer)."""
    text = genesis + "".join(f"{i * 7919} " for i in range(3000))  # plus numbers to split
    ours = ByteLevelBPE.train(text, 800, pretokenizer="smollm")
    hf = hf_byte_level_bpe([text], 800, pretokenizer="smollm")
    assert_same_as_hf(ours, hf, held_out=kjv[-20_000:] + " 2024 and 31415926")
    assert not any(ch.isdigit() and len(tok) > 1 for tok in ours.vocab for ch in tok)


def test_tie_breaking_and_repeated_merges_equal_hf():
    """Tiny corpora over 2-4 letters: most merges are ties in count, and one token string can
    be formed by two different pairs; HF's order (smallest pair ids) and quirks must match."""
    for seed in range(80):
        rng = random.Random(seed)
        letters = "abcd"[:rng.randint(2, 4)]
        words = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 7)))
                 for _ in range(rng.randint(3, 30))]
        text = " ".join(rng.choice(words) for _ in range(rng.randint(5, 200)))
        vocab_size = 256 + rng.randint(1, 60)
        ours = ByteLevelBPE.train(text, vocab_size)
        assert_same_as_hf(ours, hf_byte_level_bpe([text], vocab_size), held_out=text)


def test_special_tokens_in_training_text(genesis):
    docs = "<|endoftext|>".join(genesis[i:i + 3000] for i in range(0, 90_000, 3000))
    # HF trains on special tokens as plain text; split_specials=False reproduces that exactly
    ours = ByteLevelBPE.train(docs, 600, special_tokens=SPECIALS, split_specials=False)
    assert_same_as_hf(ours, hf_byte_level_bpe([docs], 600, SPECIALS), held_out=docs[:20_000])
    # the default cuts them out first: no learned token holds a piece of "<|endoftext|>"
    ours = ByteLevelBPE.train(docs, 600, special_tokens=SPECIALS)
    assert not [t for t in ours.vocab if t not in SPECIALS and ("<|" in t or "|>" in t)]
    assert [t for t in hf_vocab_merges(hf_byte_level_bpe([docs], 600, SPECIALS))[0]
            if t not in SPECIALS and ("<|" in t or "|>" in t)]  # ...whereas HF learns some


def test_ids_layout_specials_then_bytes_then_merges(genesis):
    ours = ByteLevelBPE.train(genesis[:20_000], 400, special_tokens=SPECIALS)
    assert [ours.vocab[t] for t in SPECIALS] == [0, 1, 2]
    byte_chars = sorted(t for t, i in ours.vocab.items() if 3 <= i < 259)
    assert len(byte_chars) == 256 and all(len(c) == 1 for c in byte_chars)
    assert [ours.vocab[a + b] for a, b in ours.merges] == list(range(259, 400))


def test_training_a_few_mb_takes_seconds(kjv):
    import time
    start = time.perf_counter()
    ByteLevelBPE.train(kjv, 5000)
    assert time.perf_counter() - start < 30, "incremental pair counts should train 4 MB in seconds"
