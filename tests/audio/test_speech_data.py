import pytest

from deepatlas.audio.speech_data import (ALPHABET, N_SENTENCES, decode_text, encode_text, espeak, make_split,
                                         sentence, sentence_splits)


def test_sentences_and_splits():
    assert N_SENTENCES == 15360 and len({sentence(i) for i in range(N_SENTENCES)}) == N_SENTENCES
    train, test = sentence_splits(500, 50)
    assert not set(train) & set(test)
    text = sentence(123)
    assert decode_text(encode_text(text)) == text and min(encode_text(text)) >= 1
    with pytest.raises(ValueError, match="outside the alphabet"):
        encode_text("Hello!")
    with pytest.raises(ValueError, match="only 15360"):
        sentence_splits(15000, 1000)
    assert len(ALPHABET) == 28


def test_espeak_speech_at_16k():
    if espeak() is None:
        pytest.skip("espeak-ng not installed: apt-get install espeak-ng")
    (u,) = make_split([7], ("en-us",), seed=0)
    assert u.text == sentence(7) and 0.8 < len(u.audio) / 16000 < 5 and abs(u.audio).max() > 0.05
