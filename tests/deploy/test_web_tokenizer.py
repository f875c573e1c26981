"""The page's tokenizer, the parts checkable without a browser: the pre-tokeniser regexes spelled
for JavaScript split text as ours do (Python's `regex` reads that spelling too), and
tokenizer.json holds the vocabulary by id and the merges in rank order."""
from __future__ import annotations

import pytest
import regex

from deepatlas.deploy.web import CLASSES, WHITESPACE, bpe_spec, js_pattern, unicode_class_mismatch
from deepatlas.text.bpe import ByteLevelBPE
from deepatlas.text.pretokenize import PRETOKENIZERS

TEXT = "Hi  there,\tyou'll see 12345 cafés\u00a0 \u3000中文 🤗\n\n  end \u0085x\ufeffy  "


@pytest.mark.parametrize("name", ["gpt2", "smollm"])
def test_js_spelling_splits_like_ours(name):
    for pattern in PRETOKENIZERS[name]:
        js = js_pattern(pattern)
        assert r"\s" not in js and r"\S" not in js
        assert regex.findall(js, TEXT) == regex.findall(pattern, TEXT)


def test_whitespace_class_is_pythons_backslash_s():
    page = {"s": [], "L": [], "N": []}
    for name, (py, _) in CLASSES.items():   # the ranges the page would report, computed here
        for c in range(0x3100):
            if regex.fullmatch(py, chr(c)):
                if page[name] and page[name][-1][1] == c - 1:
                    page[name][-1][1] = c
                else:
                    page[name].append([c, c])
    assert unicode_class_mismatch(page, 0x3100) == {"L": 0, "N": 0, "s": 0}
    assert all(regex.fullmatch(f"[{WHITESPACE}]", chr(c)) for a, b in page["s"] for c in range(a, b + 1))


def test_a_class_negation_it_cannot_spell_is_an_error():
    with pytest.raises(ValueError, match="inside"):
        js_pattern(r"[\S]")


def test_bpe_spec_holds_tokens_by_id_and_merges_in_order():
    bpe = ByteLevelBPE.train(["low lower lowest " * 20, "new newer 123"], 300, special_tokens=["<|im_end|>"],
                             pretokenizer="smollm")
    spec = bpe_spec(bpe)
    assert [bpe.vocab[t] for t in spec["tokens"]] == list(range(len(bpe)))
    assert spec["merges"][:3] == [" ".join(m) for m in bpe.merges[:3]] and len(spec["merges"]) == len(bpe.merges)
    assert spec["specials"] == ["<|im_end|>"] and spec["patterns"][0] == r"\p{N}"
