"""Fixtures of the tokenizer tests: real text (the KJV Bible) and a BPE trained on it."""
from __future__ import annotations

import pytest

from deepatlas.text.bpe import CHAT_SPECIAL_TOKENS


@pytest.fixture(scope="session")
def kjv() -> str:
    """The KJV Bible, one verse per line (~4.3 MB), from deepatlas.data.bible."""
    try:
        from deepatlas.data.bible import bible_text
        return bible_text()
    except (ImportError, FileNotFoundError) as err:
        pytest.skip(f"KJV text unavailable ({err}); it needs deepatlas.data.bible and `bible` (bible-kjv)")


@pytest.fixture(scope="session")
def genesis(kjv: str) -> str:
    """The first ~300 KB of the Bible (Genesis and most of Exodus): the training text."""
    return kjv[:300_000]


SPECIALS = list(CHAT_SPECIAL_TOKENS)


@pytest.fixture(scope="session")
def trained_bpe(genesis: str):
    from deepatlas.text.bpe import ByteLevelBPE
    return ByteLevelBPE.train(genesis, vocab_size=1000, special_tokens=SPECIALS)
