"""Tokenizers (map place L1): characters, byte-level BPE (GPT-2), WordPiece (BERT)."""
from deepatlas.text.bpe import CHAT_SPECIAL_TOKENS, ByteLevelBPE
from deepatlas.text.char import CharTokenizer
from deepatlas.text.pretokenize import GPT2_PATTERN, PRETOKENIZERS
from deepatlas.text.wordpiece import WordPiece

__all__ = ["ByteLevelBPE", "CHAT_SPECIAL_TOKENS", "CharTokenizer", "GPT2_PATTERN", "PRETOKENIZERS",
           "WordPiece"]
