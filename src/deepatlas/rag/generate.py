"""Grounded generation: a prompt with numbered passages, an answer that cites them as [1], [2].

Lewis et al. 2020 (RAG) condition the generator on retrieved passages z:  p(y | x) ≈ p(y | x, z_1..k).
Here the k passages are written into the chat prompt, numbered; the model is asked to answer in
a few words and to cite the passage it used. Closed-book is the same model without passages.
A citation is *precise* when the cited passage contains the answer string.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from deepatlas.rag.chunking import Chunk

CITATION = re.compile(r"\[(\d+)\]")
SYSTEM = ("You answer questions using only the numbered passages. Reply with a short answer copied "
          "from the passage, then the passage number in brackets, like: Methuselah [2]")
CLOSED_SYSTEM = "You answer questions with a short answer of a few words."


@dataclass
class Answer:
    text: str                 # the model's answer, as generated
    citations: list[int]      # passage numbers cited after verification (1-based, each once)
    passages: list[Chunk]     # the numbered passages the prompt showed (empty closed-book)
    model_citations: list[int] = field(default_factory=list)   # what the model itself wrote

    def cited(self) -> list[Chunk]:
        return [self.passages[i - 1] for i in self.citations if 1 <= i <= len(self.passages)]


# a made-up worked example (not from any corpus) shown before the question: answer, then [i]
EXAMPLE_PASSAGES = [Chunk(0, "example", "Harbour notes", "1", "The lighthouse keeper, Tom Hale, lit the lamp every "
                          "evening. In the winter of 1880 the harbour froze."),
                    Chunk(1, "example", "Harbour notes", "2", "Mary Quill kept the inn by the quay, and Captain Rudd "
                          "lived eighty and two years.")]
EXAMPLES = [("Who lit the lamp every evening?", "Tom Hale [1]"),
            ('Fill in the missing name: "____ kept the inn by the quay, and Captain Rudd lived eighty and two years."',
             "Mary Quill [2]")]


def _user_turn(question: str, passages: list[Chunk], max_words: int) -> str:
    lines = []
    for i, c in enumerate(passages, start=1):
        words = c.text.split()
        text = " ".join(words[:max_words]) + (" …" if len(words) > max_words else "")
        lines.append(f"[{i}] ({c.where}) {text}")
    return "Passages:\n" + "\n".join(lines) + f"\n\nQuestion: {question}\nShort answer:"


def grounded_messages(question: str, passages: list[Chunk], max_words: int = 80) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": SYSTEM}]
    for q, a in EXAMPLES:
        msgs += [{"role": "user", "content": _user_turn(q, EXAMPLE_PASSAGES, max_words)},
                 {"role": "assistant", "content": a}]
    return msgs + [{"role": "user", "content": _user_turn(question, passages, max_words)}]


def closed_book_messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": CLOSED_SYSTEM}, {"role": "user", "content": question}]


def parse_citations(text: str, n_passages: int) -> list[int]:
    """Passage numbers written as [i], in order of first appearance, only 1..n_passages."""
    out: list[int] = []
    for m in CITATION.finditer(text):
        i = int(m.group(1))
        if 1 <= i <= n_passages and i not in out:
            out.append(i)
    return out


def chat_answer(chat, messages: list[dict[str, str]], max_new_tokens: int = 24) -> str:
    from deepatlas.generation.decode import generate

    ids = chat.prompt_ids(messages)
    with torch.inference_mode():
        new = generate(chat.model, [ids], max_new_tokens, stop_ids=chat.stop_ids)[0]
    return chat.tokenizer.decode([t for t in new if t not in chat.stop_ids]).strip()


def cite_slot(chat, prompt: list[int], answer_ids: list[int], n_passages: int) -> int:
    """The passage the model cites when its answer is followed by " [": the most probable of the
    tokens "1".."n" (decoding constrained to the citation slot; the choice is the model's)."""
    from deepatlas.generation.constrained import guided_generate

    digits = {chat.tokenizer.token_id(str(i)): i for i in range(1, min(n_passages, 9) + 1)}
    allowed = torch.zeros(chat.model.vocab_size, dtype=torch.bool)
    allowed[list(digits)] = True
    ids = list(prompt) + list(answer_ids) + chat.tokenizer.encode(" [")
    token = guided_generate(chat.model, ids, 1, lambda new: allowed)[0]
    return digits[token]


def answer(chat, question: str, passages: list[Chunk], max_new_tokens: int = 24, force_citation: bool = True) -> Answer:
    """The model's answer to `question` grounded in `passages` (none: closed-book). When the
    answer cites nothing and force_citation, a citation slot " [i]" is appended (cite_slot)."""
    from deepatlas.generation.decode import generate

    if not question.strip():
        raise ValueError("the question is empty; ask something")
    if not passages:
        return Answer(chat_answer(chat, closed_book_messages(question), max_new_tokens), [], [])
    prompt = chat.prompt_ids(grounded_messages(question, passages))
    newline = [i for i, t in enumerate(vocab_newlines(chat)) if t]
    with torch.inference_mode():
        new = generate(chat.model, [prompt], max_new_tokens, stop_ids=list(chat.stop_ids) + newline)[0]
        new = [t for t in new if t not in chat.stop_ids and t not in newline]
        text = chat.tokenizer.decode(new).strip()
        cites = parse_citations(text, len(passages))
        # a number beyond the passages shown cites nothing: drop it from the text
        text = CITATION.sub(lambda m: m.group(0) if 1 <= int(m.group(1)) <= len(passages) else "", text).strip()
        if not cites and force_citation:
            cites = [cite_slot(chat, prompt, new, len(passages))]
            text = f"{text} [{cites[0]}]"
    return Answer(text, verify_citations(text, cites, passages), passages, cites)


def verify_citations(text: str, cites: list[int], passages: list[Chunk]) -> list[int]:
    """Keep the model's citations whose passage contains the answer's words; when none does,
    cite the passages that do contain them; when no passage does, keep the model's own."""
    from deepatlas.rag.evalset import normalize

    words = normalize(CITATION.sub(" ", text))
    if not words:
        return cites
    holds = [i for i, p in enumerate(passages, 1) if f" {words} " in f" {normalize(p.text)} "]
    return [i for i in cites if i in holds] or holds or cites


def vocab_newlines(chat) -> list[bool]:
    """Per token id: whether the token's text holds a newline (the answer ends at its first line)."""
    cached = getattr(chat, "_newline_tokens", None)
    if cached is None:
        from deepatlas.generation.constrained import vocab_texts

        cached = [bool(t) and "\n" in t for t in vocab_texts(chat.tokenizer)]
        chat._newline_tokens = cached
    return cached
