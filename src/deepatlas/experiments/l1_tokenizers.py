"""L1 — tokenizers: our byte-level BPE against HF `tokenizers`, trained on the same real text.

Claim (seed: "Byte-Pair Encoding — iteratively merge the most frequent adjacent pair until
vocabulary size is reached"): trained on the same corpus with the same settings, our BPE learns
exactly HF's merges and ids, encodes unseen text to the same ids, and decode(encode(text))
gives the text back for the whole corpus. Also shown: compression (characters per token)
grows with the vocabulary, the encode speed of ours (Python) vs HF (Rust), and WordPiece ids
equal to HF's on all-MiniLM-L6-v2's vocabulary.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from deepatlas.core.registry import Verdict, experiment  # noqa: E402
from deepatlas.core.runs import Run  # noqa: E402
from deepatlas.text.bpe import CHAT_SPECIAL_TOKENS, ByteLevelBPE  # noqa: E402
from deepatlas.text.char import CharTokenizer  # noqa: E402
from deepatlas.text.reference import (hf_byte_level_bpe, hf_vocab_merges,  # noqa: E402
                                      minilm_vocab_file)
from deepatlas.text.wordpiece import WordPiece  # noqa: E402


def load_corpus(name: str = "austen") -> tuple[str, str]:
    """(text, name actually used): Jane Austen's novels, else the KJV Bible (deepatlas.data)."""
    if name not in ("austen", "bible"):
        raise ValueError(f"corpus {name!r}; valid: austen, bible")
    if name == "austen":
        try:
            from deepatlas.data.austen import austen_corpus
            return austen_corpus(), "austen"
        except (ImportError, OSError, ValueError):
            pass  # the janeaustenr package is not unpacked here: fall back to the Bible
    from deepatlas.data.bible import bible_text
    return bible_text(), "bible"


@dataclass
class Config:
    corpus: str = "austen"              # austen | bible (falls back to bible)
    train_chars: int = 2_000_000        # training text: the first train_chars characters
    heldout_chars: int = 500_000        # unseen text: the last heldout_chars characters
    vocab_size: int = 8000              # the size compared merge by merge with HF
    vocab_sizes: tuple[int, ...] = (300, 500, 1000, 2000, 4000, 8000, 16000)  # compression curve
    encode_repeats: int = 3
    round_trip_chars: int = 0           # decode(encode(.)) checked on this much (0 = whole corpus)


def _timed(fn, repeats: int = 1) -> tuple[object, float]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


@experiment("L1", "tokenizers", config=Config,
            claim="trained on the same text, our byte-level BPE learns exactly HF tokenizers' merges "
                  "and ids, encodes unseen text identically, and round-trips the corpus losslessly",
            quick={"train_chars": 300_000, "heldout_chars": 100_000, "vocab_size": 2000,
                   "vocab_sizes": "300,1000,2000", "encode_repeats": 1,
                   "round_trip_chars": 1_000_000},
            headline={"n_merges": ("merges learned", "{:,}"), "merges_equal": ("merges equal HF", "{}"),
                      "heldout_ids_equal": ("held-out ids equal HF", "{}"),
                      "round_trip_lossless": ("lossless round trip", "{}")})
def tokenizers_experiment(cfg: Config, run: Run) -> Verdict:
    text, corpus = load_corpus(cfg.corpus)
    train_text, heldout = text[:cfg.train_chars], text[-cfg.heldout_chars:]
    specials = list(CHAT_SPECIAL_TOKENS)
    run.print(f"corpus {corpus}: {len(text):,} chars; train on {len(train_text):,}, "
              f"held out {len(heldout):,}")

    # 1. the same merges and ids as HF, trained on the same text
    ours, ours_train_s = _timed(lambda: ByteLevelBPE.train(train_text, cfg.vocab_size, specials))
    hf, hf_train_s = _timed(lambda: hf_byte_level_bpe([train_text], cfg.vocab_size, specials))
    hf_vocab, hf_merges = hf_vocab_merges(hf)
    n_same_merges = next((i for i, (a, b) in enumerate(zip(ours.merges, hf_merges)) if a != b),
                         min(len(ours.merges), len(hf_merges)))
    merges_equal = ours.merges == hf_merges
    vocab_equal = ours.vocab == hf_vocab
    ids = ours.encode(heldout)
    ids_equal = ids == hf.encode(heldout).ids
    # speed on the held-out paragraphs (HF's batch call is its fast path, multi-threaded);
    # ours from a cold word cache each time, as a freshly loaded tokenizer would run
    paragraphs = [p for p in heldout.split("\n\n") if p]

    def encode_cold() -> list[list[int]]:
        ours.clear_cache()
        return [ours.encode(p) for p in paragraphs]

    _, ours_encode_s = _timed(encode_cold, cfg.encode_repeats)
    _, hf_encode_s = _timed(lambda: hf.encode_batch(paragraphs), cfg.encode_repeats)
    run.print(f"vocab {cfg.vocab_size}: merges equal {merges_equal} ({n_same_merges}/{len(hf_merges)} "
              f"identical before the first difference), vocab ids equal {vocab_equal}, "
              f"held-out ids equal {ids_equal} ({len(ids):,} tokens)")

    # 2. lossless round trip on the whole corpus
    checked = text[:cfg.round_trip_chars] if cfg.round_trip_chars > 0 else text
    round_trip = ours.decode(ours.encode(checked)) == checked
    char_tok = CharTokenizer.from_text(checked)
    char_round_trip = char_tok.decode(char_tok.encode(checked)) == checked
    run.print(f"decode(encode(text)) == text on {len(checked):,} chars: BPE {round_trip}, "
              f"char {char_round_trip}")

    # 3. compression: characters per token on the held-out text, per vocabulary size
    chars_per_token, hf_chars_per_token = {}, {}
    for size in cfg.vocab_sizes:
        tok = ours if size == cfg.vocab_size else ByteLevelBPE.train(train_text, size, specials)
        hf_tok = hf if size == cfg.vocab_size else hf_byte_level_bpe([train_text], size, specials)
        chars_per_token[size] = len(heldout) / len(tok.encode(heldout))
        hf_chars_per_token[size] = len(heldout) / len(hf_tok.encode(heldout).ids)
        run.log(vocab_size=size, chars_per_token=chars_per_token[size],
                hf_chars_per_token=hf_chars_per_token[size])
        run.print(f"  vocab {size:>6}: {chars_per_token[size]:.3f} chars/token "
                  f"(HF {hf_chars_per_token[size]:.3f})")
    sizes = sorted(chars_per_token)
    compression_grows = all(chars_per_token[a] < chars_per_token[b] for a, b in zip(sizes, sizes[1:]))
    compression_equal_hf = chars_per_token == hf_chars_per_token
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(sizes, [chars_per_token[s] for s in sizes], "o-", label="byte-level BPE, ours")
    ax.plot(sizes, [hf_chars_per_token[s] for s in sizes], "x", ms=9, color="k",
            label="HF tokenizers")
    ax.axhline(1.0, color="gray", ls=":", label="characters (char tokenizer)")
    ax.set_xscale("log")
    ax.set_xlabel("vocabulary size")
    ax.set_ylabel("held-out characters per token")
    ax.set_title(f"BPE compression on {corpus}")
    ax.legend()
    fig.tight_layout()
    run.savefig(fig, "compression")

    # 4. WordPiece: same ids as HF on the real all-MiniLM-L6-v2 vocabulary (when installed)
    wordpiece_equal = None
    vocab_file = minilm_vocab_file()
    if vocab_file is not None:
        from tokenizers import BertWordPieceTokenizer
        sample = heldout[:100_000]
        wordpiece_equal = (WordPiece.from_vocab_file(vocab_file).encode(sample)
                           == BertWordPieceTokenizer(str(vocab_file), lowercase=True)
                           .encode(sample, add_special_tokens=False).ids)
        run.print(f"WordPiece ids equal HF on 100k held-out chars: {wordpiece_equal}")

    mb = len(heldout.encode("utf-8")) / 1e6
    metrics = {
        "corpus": corpus, "merges_equal": merges_equal, "vocab_equal": vocab_equal,
        "heldout_ids_equal": ids_equal, "merges_identical_prefix": n_same_merges,
        "n_merges": len(hf_merges), "round_trip_lossless": round_trip,
        "round_trip_chars": len(checked),
        "char_round_trip_lossless": char_round_trip, "wordpiece_ids_equal_hf": wordpiece_equal,
        "chars_per_token": {str(k): round(v, 4) for k, v in chars_per_token.items()},
        "compression_grows_with_vocab": compression_grows,
        "compression_equal_hf_every_size": compression_equal_hf,
        "train_seconds_ours": round(ours_train_s, 3), "train_seconds_hf": round(hf_train_s, 3),
        "encode_mb_per_s_ours": round(mb / ours_encode_s, 3),
        "encode_mb_per_s_hf": round(mb / hf_encode_s, 3),
        "encode_speed_ratio_ours_over_hf": round(hf_encode_s / ours_encode_s, 4),
    }
    run.print(f"train: ours {ours_train_s:.2f}s, HF {hf_train_s:.2f}s; encode {mb:.2f} MB: "
              f"ours {mb / ours_encode_s:.2f} MB/s, HF {mb / hf_encode_s:.2f} MB/s")
    held = (merges_equal and vocab_equal and ids_equal and round_trip and char_round_trip
            and compression_grows and compression_equal_hf and wordpiece_equal is not False)
    return Verdict(held=held, metrics=metrics,
                   notes="BPE trained by ours and by HF tokenizers BpeTrainer on the same text; "
                         "merges, vocab ids and held-out ids compared exactly; encode speed is "
                         "best-of-repeats on the held-out paragraphs, ours with a cold word cache, "
                         "HF with encode_batch")
