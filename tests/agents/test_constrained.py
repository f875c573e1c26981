import json

import pytest
import torch
from torch import nn

from deepatlas.agents.schema import is_valid
from deepatlas.agents.tools import answer_tool, calculator_tool, call_schema
from deepatlas.generation.constrained import JsonSchemaAutomaton, TokenConstraint, generate_json

TOOLS = {t.name: t for t in (calculator_tool(), answer_tool())}
SCHEMA = call_schema(TOOLS)


def test_automaton_accepts_exactly_the_schema_layout():
    a = JsonSchemaAutomaton(SCHEMA)
    good = ['{"tool": "calculator", "arguments": {"expression": "3 * (2 - 1)"}}',
            '{"tool": "answer", "arguments": {"text": "a \\"quoted\\" word"}}']
    for text in good:
        assert a.accepts(a.feed(text)) and a.done(a.feed(text))
        assert all(a.is_prefix(text[:i]) for i in range(len(text)))
    for bad in ['{"tool": "weather"', '{"tool": "calculator", "arguments": {"expression": "x', '{"x"',
                '{"tool": "answer", "arguments": {"text": "a"}}}']:
        assert not a.is_prefix(bad)
    n = JsonSchemaAutomaton({"type": "object", "properties": {"v": {"type": "number"}, "i": {"type": "integer"},
                                                             "b": {"type": "boolean"}, "e": {"enum": ["x", 2]}}})
    assert n.accepts(n.feed('{"v": -12.5, "i": 0, "b": true, "e": 2}'))
    assert not n.is_prefix('{"v": 01') and not n.is_prefix('{"v": 1, "i": 1.')
    with pytest.raises(ValueError, match="outside the constrained subset"):
        JsonSchemaAutomaton({"type": "array"})


class RandomLM(nn.Module):
    """Random logits over a character vocabulary: the worst case for valid JSON."""
    vocab_size, context_length = 0, 4096

    def __init__(self, vocab_size: int, seed: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.w = nn.Parameter(torch.zeros(1))
        self.g = torch.Generator().manual_seed(seed)

    def new_cache(self, batch, max_len):
        return None

    def forward(self, idx, cache=None, pos=None, attention_mask=None):
        return torch.randn(idx.shape[0], idx.shape[1], self.vocab_size, generator=self.g)


class CharTokenizer:
    def __init__(self, texts):
        self.texts = texts

    def decode(self, ids):
        return "".join(self.texts[i] for i in ids)


def test_every_constrained_output_parses_even_from_a_random_model():
    texts = list('{}":, ') + list("abcdefghijklmnopqrstuvwxyz0123456789*+-()") + \
        ['{"', '": ', '", "', '"}}', "tool", "arguments", "calculator", "answer", "expression", "text", "\\"]
    tok = CharTokenizer(texts)
    constraint = TokenConstraint(JsonSchemaAutomaton(SCHEMA), texts)
    for seed in range(20):
        text, complete = generate_json(RandomLM(len(texts), seed), tok, [0], constraint, max_new_tokens=40)
        call = json.loads(text)                                # always parses ...
        assert complete and is_valid(call, SCHEMA), text      # ... and validates
    free = [tok.decode(torch.randint(len(texts), (30,), generator=torch.Generator().manual_seed(s)).tolist())
            for s in range(20)]
    assert not any(is_json(t) for t in free)


def is_json(text):
    try:
        json.loads(text)
        return True
    except json.JSONDecodeError:
        return False
