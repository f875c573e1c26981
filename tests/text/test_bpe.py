"""Byte-level BPE encode/decode: HF parity on varied text, lossless round trip, file formats."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from deepatlas.text.bpe import CHAT_SPECIAL_TOKENS, ByteLevelBPE
from deepatlas.text.pretokenize import PreTokenizer, bytes_to_unicode

tokenizers = pytest.importorskip("tokenizers", reason="HF tokenizers is the reference")
from deepatlas.text.reference import (hf_byte_level_bpe, hf_from_vocab_merges,  # noqa: E402
                                      hf_pretokenizer, hf_vocab_merges, same_class_in_old_unicode)

SPECIALS = list(CHAT_SPECIAL_TOKENS)
VARIED = [
    "Hello world", "  leading and trailing spaces  ", "tabs\tand\nnew\n\nlines\r\n", "x" * 300,
    "naïve café — “quotes” ‘single’ …", "日本語のテキストと中文字符", "한국어 텍스트", "Ελληνικά Кириллица עברית العربية",
    "emoji 😀👍🏽👨‍👩‍👧 flags 🇫🇷", "combining e\u0301 a\u0308\u0323 Z\u0335\u0336", "numbers 3.14159 1,000,000 0x1F ²³",
    "it's they're we've I'm you'll he'd IT'S", "control \x00\x01\x07\x1b[0m \x7f \u200b\u200d\ufeff",
    "whitespace runs     \u00a0\u2003\u3000 x", "<|endoftext|>after", "<|im_start|>user\nHi<|im_end|>\n",
    "partial <|endoftext| and <|im_start|<|im_end|>", "code: def f(x):\n    return x**2  # sq",
]


def random_unicode(rng: random.Random, n: int) -> str:
    """Letters, digits, marks, symbols, controls, private use, emoji, space runs."""
    ranges = [(0x20, 0x7F), (0x0, 0x20), (0xA0, 0x2FF), (0x300, 0x36F), (0x370, 0x1FFF),
              (0x2000, 0x206F), (0x3000, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xFFFD), (0x1F300, 0x1F64F),
              (0x10000, 0x10FFFF)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        c = chr(rng.randint(lo, hi))
        while not (same_class_in_old_unicode(c) or 0x1F300 <= ord(c) <= 0x1F64F):  # + Unicode 6 emoji
            c = chr(rng.randint(lo, hi))
        out.append(" " * rng.randint(1, 3) if rng.random() < 0.15 else c)
    return "".join(out)


def test_byte_table_is_gpt2s():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert set(table.values()) == set(tokenizers.pre_tokenizers.ByteLevel.alphabet())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"


@pytest.mark.parametrize("preset", ["gpt2", "smollm"])
def test_pretokenizer_equals_hf(preset):
    ours, hf = PreTokenizer(preset), hf_pretokenizer(preset)
    table = bytes_to_unicode()
    rng = random.Random(0)
    texts = VARIED + [random_unicode(rng, rng.randint(1, 60)) for _ in range(400)]
    for text in texts:
        mine = ["".join(table[b] for b in w.encode("utf-8")) for w in ours.words(text)]
        assert mine == [piece for piece, _ in hf.pre_tokenize_str(text)], repr(text)


def test_encode_equals_hf_on_varied_text(trained_bpe, kjv):
    hf = hf_from_vocab_merges(trained_bpe.vocab, trained_bpe.merges, SPECIALS)
    rng = random.Random(1)
    texts = VARIED + [kjv[-50_000:]] + [random_unicode(rng, rng.randint(1, 80)) for _ in range(300)]
    for text in texts:
        assert trained_bpe.encode(text) == hf.encode(text).ids, repr(text[:80])


def test_special_tokens_stay_whole(trained_bpe):
    ids = trained_bpe.encode("<|im_start|>user\nHi<|im_end|><|endoftext|>")
    assert ids[0] == trained_bpe.vocab["<|im_start|>"]
    assert ids[-2:] == [trained_bpe.vocab["<|im_end|>"], trained_bpe.vocab["<|endoftext|>"]]
    assert trained_bpe.vocab["<|endoftext|>"] not in trained_bpe.encode("<|endoftext|")
    assert trained_bpe.decode(ids, skip_special_tokens=True) == "user\nHi"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.text(),  # any code point except surrogates: CJK, emoji, combining marks, controls
    st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u2003\u3000", min_size=1),  # whitespace runs
    st.text(alphabet="e\u0301\u0308\u0323a😀👍🏽\u200d日本語\x00\x1b", min_size=1),
    st.sampled_from(SPECIALS + ["<|", "|>", "'s", "'ll"]),
), max_size=12))
def test_decode_encode_round_trip(trained_bpe, parts):
    text = "".join(parts)
    assert trained_bpe.decode(trained_bpe.encode(text)) == text


def test_loads_hf_vocab_merges_files(genesis, kjv, tmp_path):
    """vocab.json + merges.txt written by HF load into ours and give HF's ids."""
    hf = hf_byte_level_bpe([genesis], 1500, SPECIALS)
    hf.model.save(str(tmp_path))
    ours = ByteLevelBPE.load(tmp_path, special_tokens=SPECIALS)
    vocab, merges = hf_vocab_merges(hf)
    assert ours.merges == merges and ours.vocab == vocab
    built = ByteLevelBPE.from_vocab_merges(vocab, merges, SPECIALS)
    rng = random.Random(2)
    for text in VARIED + [kjv[2_000_000:2_050_000]] + [random_unicode(rng, 50) for _ in range(100)]:
        assert ours.encode(text) == built.encode(text) == hf.encode(text).ids, repr(text[:80])


def test_save_load_round_trip_and_hf_reads_ours(trained_bpe, tmp_path):
    trained_bpe.save(tmp_path)
    again = ByteLevelBPE.load(tmp_path, special_tokens=SPECIALS)
    assert again.vocab == trained_bpe.vocab and again.merges == trained_bpe.merges
    hf_model = tokenizers.models.BPE.from_file(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    hf = tokenizers.Tokenizer(hf_model)
    hf.pre_tokenizer = hf_pretokenizer("gpt2")
    assert hf.encode("In the beginning was the Word").ids == again.encode("In the beginning was the Word")


def test_errors_name_the_bad_value(trained_bpe):
    with pytest.raises(ValueError, match="id 99999"):
        trained_bpe.decode([99999])
    with pytest.raises(ValueError, match="unknown pretokenizer 'llama9'.*gpt2, default, smollm"):
        PreTokenizer("llama9")
    with pytest.raises(ValueError, match="not in the vocab"):
        ByteLevelBPE({"a": 0, "b": 1}, [("a", "b")])


def test_repeated_merge_keeps_its_last_rank_as_hf():
    vocab = {t: i for i, t in enumerate(["a", "b", "c", "ab", "bc", "abc"])}
    merges = [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "b")]  # (a, b) again, now after (b, c)
    ours = ByteLevelBPE.from_vocab_merges(vocab, merges, [])
    hf = hf_from_vocab_merges(vocab, merges)
    for text in ["abc", "ab", "abcabc", "cab"]:
        assert ours.encode(text) == hf.encode(text).ids, text
    assert ours.tokens("abc") == ["a", "bc"]
