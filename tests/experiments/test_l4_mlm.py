"""L4 (a): MLM pre-training then fine-tuning vs scratch — quick run, the split and the label sets."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from deepatlas.experiments.l4_mlm_finetune import (chunk_words, clean_novel, label_subset, position_split,
                                                     to_batch, train_wordpiece)


def test_position_split_has_no_overlap_and_covers_every_passage():
    for n, block, every in ((1000, 20, 5), (37, 4, 3), (5, 10, 2)):
        train, test = position_split(n, block, every)
        assert not set(train) & set(test)
        assert sorted(train + test) == list(range(n))
        # the held-out passages come in whole blocks, spread through the book
        assert all((i // block) % every == every - 1 for i in test)
    train, test = position_split(1000, 20, 5)
    assert len(test) == 200 and min(test) < 100 and max(test) > 900


def test_passages_do_not_share_words_across_the_split():
    words = [f"w{i}" for i in range(2000)]             # every word distinct: sharing would show
    passages = chunk_words(words, 48)
    train, test = position_split(len(passages), 5, 4)
    seen = {w for i in train for w in passages[i]}
    assert all(w not in seen for i in test for w in passages[i])
    assert all(len(p) == 48 for p in passages) and len(passages) == 2000 // 48


def test_label_counts_are_honoured_and_nested():
    labels = torch.arange(6).repeat_interleave(torch.tensor([50, 60, 70, 80, 90, 100]))
    for n in (1, 2, 8, 50):
        rows = label_subset(labels, n, seed=3)
        assert len(set(rows.tolist())) == len(rows) == 6 * n
        assert Counter(labels[rows].tolist()) == {c: n for c in range(6)}
    assert set(label_subset(labels, 2, 3).tolist()) <= set(label_subset(labels, 8, 3).tolist())
    assert not torch.equal(label_subset(labels, 8, 0), label_subset(labels, 8, 1))
    with pytest.raises(ValueError, match="fewer than per_class=51"):
        label_subset(labels, 51, 0)


def test_wordpiece_vocab_covers_the_text_and_batches_are_framed():
    text = "CHAPTER 1\n\nIt is a truth universally acknowledged, that a single man.\n\nChapter 2\n\nHe was.\n\nTHE END\nnote"
    story = clean_novel(text)
    assert "CHAPTER" not in story and "Chapter" not in story and "note" not in story and "truth" in story
    words = story.lower().replace(",", " ,").replace(".", " .").split()
    tok = train_wordpiece(Counter(words), 40)
    assert "[UNK]" not in tok.tokenize(story)           # every character is in the vocab both ways
    ids, mask, cut = to_batch(tok, [words[:3], words], 8)
    assert ids.shape == mask.shape == (2, 8) and cut == 1
    assert ids[0, 0] == ids[1, 0] == tok.vocab["[CLS]"] and ids[1, -1] == tok.vocab["[SEP]"]
    assert bool(mask[1].all()) and not bool(mask[0].all())


def test_l4_mlm_quick_runs_and_held_follows_the_rule(run_quick):
    # The quick setting is far too small for pre-training to matter (see the experiment's
    # docstring): this checks the run, the label counts and that `held` is the stated rule
    # applied to the measured accuracies — not that the claim holds.
    s = run_quick("mlm-finetune")
    m = s["metrics"]
    counts = m["labels_per_class"]
    assert counts == [2, 8]
    for n in counts:
        row = m["accuracy"][str(n)]
        assert row["labeled"] == 6 * n and row["per_class"] == [n]
        for arm in ("pretrained", "scratch"):
            assert len(row[arm]["seeds"]) == 2 and all(0.0 <= a <= 1.0 for a in row[arm]["seeds"])
        assert m["separated"][str(n)] == (row["pretrained"]["min"] > row["scratch"]["max"])
    assert s["held"] == all(m["separated"][str(n)] for n in counts[:2])
    assert m["pretrain_last_loss"] < m["pretrain_first_loss"]
    assert m["test_passages"] == 6 * 20
    assert "accuracy_vs_labels.png" in s["plots"]
