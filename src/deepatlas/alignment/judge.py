"""RLAIF (Bai et al. 2022, "Constitutional AI"; Lee et al. 2023): an AI model labels the preferences.

The judge is SmolLM2-135M-Instruct (deepatlas.chat.session.ChatModel from the GGUF file), asked
in ChatML about one reply at a time:

    user: Is this a cheerful phrase in good English? Answer Yes or No.\\n"<reply>"
    judge score = logit("Yes") − logit("No") at the first answer token

A pair is labelled by the higher score (pointwise scoring: no A/B position bias, which this
small model has strongly when shown both replies). Replies that do not end their turn get the
rule's penalty too, so judge and rule differ only on what "cheerful" means.
"""
from __future__ import annotations

from typing import Sequence

import torch

QUESTION = 'Is this a cheerful phrase in good English? Answer Yes or No.\n"{text}"'


class SmolJudge:
    def __init__(self, path=None):
        from deepatlas.chat.session import ChatModel, find_gguf

        self.chat = ChatModel.load(find_gguf("smollm2", path))
        vocab = self.chat.tokenizer.bpe.vocab
        self.yes, self.no = vocab["Yes"], vocab["No"]
        self.calls = 0

    @torch.inference_mode()
    def scores(self, texts: Sequence[str]) -> list[float]:
        """logit(Yes) − logit(No) for each text (one forward pass each, no padding needed)."""
        out = []
        for text in texts:
            ids = self.chat.prompt_ids([{"role": "user", "content": QUESTION.format(text=text)}])
            logits = self.chat.model(torch.tensor([ids]))[0, -1]
            out.append(float(logits[self.yes] - logits[self.no]))
            self.calls += 1
        return out
