"""Generated instruction data over the corpus, ChatML rendering with a response mask, packing.

SNIPPETS: sentences of Jane Austen's novels (deepatlas.data.austen) and verses of the King James
Bible (deepatlas.data.bible) of 4-10 words, plain ASCII. A snippet is held out (never trained on)
when the first byte of blake2b(text) is < 26 (about 10%): the split is fixed by the text alone.

TASK FAMILIES (each an instruction phrasing + a snippet -> an exact answer):
    source      "Is this from Jane Austen or the Bible?"      -> "Jane Austen" | "The Bible"
    first_word  "What is the first word of this sentence?"    -> its first word
    count       "How many words are in this text?"            -> the number of words (2-6 words)
    continue    "Continue the sentence: <first 3-5 words>"    -> the snippet's next words
Every family has four phrasings; the last one is held out (PHRASINGS[f][-1]), so the held-out
prompts test both unseen snippets and unseen wordings of the instruction.

CHAT FORMAT: ChatML, the format of SmolLM2-Instruct (deepatlas.chat.template):
    <|im_start|>user\\n{instruction}<|im_end|>\\n<|im_start|>assistant\\n{answer}<|im_end|>\\n
The response mask is 1 exactly on the answer's tokens and the closing <|im_end|> (the model must
learn to end its turn), 0 on the role tokens and the prompt.
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import torch
from torch import Tensor

from deepatlas.chat.template import IM_END, render_chatml

PHRASINGS: dict[str, list[str]] = {
    "source": ["Is this from Jane Austen or the Bible?\n{text}",
               "Who wrote this, Jane Austen or the Bible?\n{text}",
               "Austen or Bible: {text}",
               "Tell me where this line comes from, Austen or the Bible: {text}"],
    "first_word": ["What is the first word of this sentence?\n{text}",
                   "First word of: {text}",
                   "Give the first word.\n{text}",
                   "Which word does this start with? {text}"],
    "count": ["How many words are in this text?\n{text}",
              "Count the words: {text}",
              "Number of words in: {text}",
              "Tell me how many words this has: {text}"],
    "continue": ["Continue the sentence: {text}",
                 "Finish this: {text}",
                 "Complete the line: {text}",
                 "Go on from here: {text}"],
}
FAMILIES = tuple(PHRASINGS)
SOURCES = {"austen": "Jane Austen", "bible": "The Bible"}


@dataclass(frozen=True)
class Example:
    family: str
    prompt: str          # the user's message
    answer: str          # the reference answer (the assistant's message in SFT)
    source: str          # "austen" | "bible"
    text: str            # the snippet behind it


def held_out(text: str) -> bool:
    """The fixed ~10% of snippets never trained on (decided by the text's hash alone)."""
    return hashlib.blake2b(text.encode(), digest_size=1).digest()[0] < 26


_SENTENCE = re.compile(r"[^.!?;]*[.!?;]")


@lru_cache(maxsize=1)
def snippets() -> dict[str, tuple[str, ...]]:
    """{"austen": sentences, "bible": verses}: 4-14 words, ASCII, whitespace collapsed."""
    from deepatlas.data.austen import austen_corpus
    from deepatlas.data.bible import bible_verses

    def keep(s: str) -> bool:
        return (s.isascii() and 4 <= len(s.split()) <= 10 and s[:1].isalpha() and '"' not in s
                and "_" not in s)

    austen = [" ".join(m.group(0).replace("--", " ").split()) for m in _SENTENCE.finditer(austen_corpus())]
    bible = [" ".join(t.split()) for _, t in bible_verses()]
    return {"austen": tuple(dict.fromkeys(s for s in austen if keep(s))),
            "bible": tuple(dict.fromkeys(s for s in bible if keep(s)))}


def _make(family: str, phrasing: str, text: str, source: str, rng: random.Random) -> Example:
    words = text.split()
    if family == "source":
        return Example(family, phrasing.format(text=text), SOURCES[source], source, text)
    if family == "first_word":
        return Example(family, phrasing.format(text=text), words[0].strip(",.;:!?'()"), source, text)
    if family == "count":
        n = rng.randint(2, 6)
        cut = " ".join(words[:n]).rstrip(",.;:!?")
        return Example(family, phrasing.format(text=cut), str(n), source, cut)
    if family == "continue":
        k = rng.randint(3, min(5, len(words) - 1))
        return Example(family, phrasing.format(text=" ".join(words[:k])), " ".join(words[k:k + 6]),
                       source, text)
    raise ValueError(f"unknown task family {family!r}; valid: {', '.join(FAMILIES)}")


def instruction_set(n: int, split: str = "train", seed: int = 0,
                    families: Sequence[str] = FAMILIES) -> list[Example]:
    """n examples, families and sources in turn; split="train" uses the training snippets and
    the first three phrasings, split="heldout" the held-out snippets and the last phrasing."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split {split!r}; valid: train, heldout")
    for f in families:
        if f not in PHRASINGS:
            raise ValueError(f"unknown task family {f!r}; valid: {', '.join(FAMILIES)}")
    rng = random.Random(f"{seed}/{split}")
    pools = {src: [t for t in texts if held_out(t) == (split == "heldout")]
             for src, texts in snippets().items()}
    out = []
    for i in range(n):
        family = families[i % len(families)]
        source = ("austen", "bible")[(i // len(families)) % 2]
        phrasings = PHRASINGS[family][:-1] if split == "train" else PHRASINGS[family][-1:]
        out.append(_make(family, rng.choice(phrasings), rng.choice(pools[source]), source, rng))
    return out


def is_correct(example: Example, reply: str) -> bool:
    """Exact answer (case and surrounding punctuation ignored); `continue` has no single answer:
    correct there means the reply's first word is the snippet's next word."""
    def norm(s: str) -> str:
        return " ".join(s.lower().replace(".", " ").split()).strip(",;:!?'")
    if example.family == "continue":
        got, want = reply.split(), example.answer.split()
        return bool(got and want) and norm(got[0]) == norm(want[0])
    return norm(reply) == norm(example.answer)


# ---- tokens: rendering with a response mask, packing -----------------------------------------

def prompt_text(user: str) -> str:
    """ChatML up to the assistant's turn: what the model continues."""
    return render_chatml([{"role": "user", "content": user}], add_generation_prompt=True)


def render_example(encode: Callable[[str], list[int]], user: str, answer: str
                   ) -> tuple[list[int], list[int]]:
    """-> (ids, mask): the ChatML conversation, mask 1 on the answer and its <|im_end|>."""
    prompt = encode(prompt_text(user))
    response = encode(answer + IM_END)
    tail = encode("\n")                                   # after the turn: neither learned nor masked in
    return prompt + response + tail, [0] * len(prompt) + [1] * len(response) + [0] * len(tail)


def pack(rows: Sequence[tuple[list[int], list[int]]], block_size: int, pad_id: int
         ) -> tuple[Tensor, Tensor, Tensor]:
    """Pack conversations back to back into windows of block_size + 1 tokens (a conversation
    that would cross a window boundary starts the next window; the rest is padding).

    -> x (N, T), y (N, T) the next tokens, loss mask (N, T): 1 where y is a response token."""
    windows: list[tuple[list[int], list[int]]] = [([], [])]
    for ids, mask in rows:
        if len(ids) > block_size + 1:
            raise ValueError(f"a conversation of {len(ids)} tokens does not fit block_size "
                             f"{block_size} + 1; shorten it or raise block_size")
        if len(windows[-1][0]) + len(ids) > block_size + 1:
            windows.append(([], []))
        windows[-1][0].extend(ids)
        windows[-1][1].extend(mask)
    ids_t = torch.full((len(windows), block_size + 1), pad_id, dtype=torch.long)
    mask_t = torch.zeros((len(windows), block_size + 1), dtype=torch.long)
    for i, (ids, mask) in enumerate(windows):
        ids_t[i, :len(ids)] = torch.tensor(ids)
        mask_t[i, :len(mask)] = torch.tensor(mask)
    # token t+1 is predicted at position t: the target's mask decides whether it is learned
    return ids_t[:, :-1], ids_t[:, 1:], mask_t[:, 1:]


# ---- the preference rule (T4, T5) ------------------------------------------------------------
# "A better continuation is made of real words and is cheerful, and it ends its turn": one point
# per distinct real word (one of two letters or more seen ≥ 3 times in the corpus snippets), two
# more per distinct pleasant word, two fewer per distinct unpleasant one, −3 when the reply runs
# out of tokens without ending its turn. Repeating a word earns nothing.
POSITIVE = frozenset("""happy happiness pleasure pleased pleasant delight delighted delightful good
great love loved lovely kind kindness dear glad joy joyful best fine charming agreeable handsome
beautiful comfort hope amiable sweet smile friend friends blessed bless peace rejoice well
excellent cheerful merry praise grace""".split())
NEGATIVE = frozenset("""sorry ill poor unhappy sad wrong bad evil death dead die misery miserable
pain fear afraid cruel angry wicked sin wrath woe grief sorrow destroy slain hate enemy tears
trouble distress""".split())


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


@lru_cache(maxsize=1)
def real_words() -> frozenset[str]:
    """Lower-case words of ≥ 2 letters seen at least 3 times in the corpus snippets."""
    from collections import Counter

    counts = Counter(w for texts in snippets().values() for t in texts for w in words_of(t))
    return frozenset(w for w, n in counts.items() if n >= 3 and len(w) >= 2)


def rule_score(reply: str, ended: bool = True) -> float:
    """The programmatic preference rule (above): distinct real words + 2 × distinct pleasant
    − 2 × distinct unpleasant words, − 3 when the reply does not end its turn."""
    w = set(words_of(reply))
    return float(len(w & real_words()) + 2 * len(w & POSITIVE) - 2 * len(w & NEGATIVE)) - (0.0 if ended else 3.0)


def on_task(example: Example, reply: str) -> bool:
    """Does the reply answer the question asked (right or wrong)? source: one of the two
    sources; first_word: one word of the snippet; count: a number; continue: some words that
    are none of those labels."""
    r = reply.strip()
    if example.family == "source":
        return r.lower() in {s.lower() for s in SOURCES.values()}
    if example.family == "first_word":
        return len(r.split()) == 1 and r.lower().strip(",.;:!?'") in example.text.lower()
    if example.family == "count":
        return r.isdigit()
    return bool(words_of(r)) and not r.isdigit() and r.lower() not in {s.lower() for s in SOURCES.values()}
