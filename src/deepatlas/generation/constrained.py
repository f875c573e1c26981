"""Schema-constrained decoding: only tokens that keep the output a valid prefix of the schema's JSON.

The schema (a subset of JSON Schema: object with properties in their listed order, string, enum,
const, integer, number, boolean, anyOf/oneOf) is compiled into a character-level NFA (Thompson
1968), written in one canonical layout: `{"key": value, "key": value}`. A state is the set of NFA
nodes the text read so far can be in (ε-closed). Over a BPE vocabulary, a token t is allowed in
state S when δ*(S, text(t)) ≠ ∅ — every character of the token is a legal next character:

    allowed(S) = { t ∈ V : δ*(S, text(t)) ≠ ∅ }

computed by a depth-first walk of a character trie of the vocabulary that stops where the state
set becomes empty, and cached per state set (inside a free string every step has the same set,
so after warm-up a step costs a dict look-up and a masked fill). At each decoding step the logits
of disallowed tokens are set to −∞ (Willard & Louf 2023 do the same with a regex FSM), so every
finished output parses and matches the schema's shape; when the NFA reaches its final node the
text is complete and decoding stops.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

STRCHAR, DIGIT, DIGIT19, ESCAPABLE = "<strchar>", "<digit>", "<digit19>", "<escapable>"


def _matches(label: str | frozenset[str], ch: str) -> bool:
    if isinstance(label, frozenset):     # a pattern's character class
        return ch in label
    if len(label) == 1:
        return label == ch
    if label == STRCHAR:
        return ch not in '"\\' and ch >= " "
    if label == DIGIT:
        return "0" <= ch <= "9"
    if label == DIGIT19:
        return "1" <= ch <= "9"
    if label == ESCAPABLE:
        return ch in '"\\/bfnrt'
    raise ValueError(f"unknown label {label!r}")


def char_class(body: str) -> frozenset[str]:
    """The characters of a regex class body such as `0-9+*/(). \\-` (ranges, backslash escapes)."""
    chars, i = set(), 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            chars.add(body[i + 1])
            i += 2
            continue
        if i + 2 < len(body) and body[i + 1] == "-":
            chars.update(chr(c) for c in range(ord(ch), ord(body[i + 2]) + 1))
            i += 3
            continue
        chars.add(ch)
        i += 1
    chars -= {'"', "\\"}
    return frozenset(chars)


class NFA:
    """Nodes 0..n-1; edges[node] = [(label, target)], eps[node] = [targets]."""

    def __init__(self) -> None:
        self.edges: list[list[tuple[str | frozenset[str], int]]] = []
        self.eps: list[list[int]] = []

    def node(self) -> int:
        self.edges.append([]), self.eps.append([])
        return len(self.edges) - 1

    # fragments: (start, end) node pairs
    def literal(self, text: str) -> tuple[int, int]:
        start = cur = self.node()
        for ch in text:
            nxt = self.node()
            self.edges[cur].append((ch, nxt))
            cur = nxt
        return start, cur

    def seq(self, parts: list[tuple[int, int]]) -> tuple[int, int]:
        for (_, a_end), (b_start, _) in zip(parts, parts[1:]):
            self.eps[a_end].append(b_start)
        return parts[0][0], parts[-1][1]

    def alt(self, parts: list[tuple[int, int]]) -> tuple[int, int]:
        start, end = self.node(), self.node()
        for s, e in parts:
            self.eps[start].append(s)
            self.eps[e].append(end)
        return start, end

    def star(self, label: str) -> tuple[int, int]:
        """label*  (a loop on one node)."""
        n = self.node()
        self.edges[n].append((label, n))
        return n, n

    def string(self) -> tuple[int, int]:
        # " ( strchar | \ escapable )* "
        open_, body, close = self.node(), self.node(), self.node()
        self.edges[open_].append(('"', body))
        self.edges[body].append((STRCHAR, body))
        esc = self.node()
        self.edges[body].append(("\\", esc))
        self.edges[esc].append((ESCAPABLE, body))
        self.edges[body].append(('"', close))
        return open_, close

    def pattern_string(self, pattern: str) -> tuple[int, int]:
        """A string whose pattern is one character class: ^[...]*$ or ^[...]+$ ."""
        m = re.fullmatch(r"\^\[(.+)\]([*+])\$", pattern)
        if m is None:
            raise ValueError(f"pattern {pattern!r}: constrained decoding supports only ^[chars]*$ or ^[chars]+$")
        chars = char_class(m.group(1))
        open_, body, close = self.node(), self.node(), self.node()
        first = self.node() if m.group(2) == "+" else body
        self.edges[open_].append(('"', first))
        if first != body:
            self.edges[first].append((chars, body))
        self.edges[body].append((chars, body))
        self.edges[body].append(('"', close))
        return open_, close

    def integer(self) -> tuple[int, int]:
        # -? (0 | [1-9][0-9]*)
        sign = self.alt([self.literal("-"), self.literal("")])
        lead = self.node()
        rest = self.star(DIGIT)
        self.edges[lead].append((DIGIT19, rest[0]))
        return self.seq([sign, self.alt([self.literal("0"), (lead, rest[1])])])

    def number(self) -> tuple[int, int]:
        # integer ( . [0-9]+ )?
        frac_start, d = self.node(), self.node()
        self.edges[frac_start].append((".", d))
        self.edges[d].append((DIGIT, d))
        dot = self.node()
        self.edges[d].append((DIGIT, dot)), self.eps[dot].append(d)
        return self.seq([self.integer(), self.alt([(frac_start, dot), self.literal("")])])

    def schema(self, s: dict[str, Any]) -> tuple[int, int]:
        if "const" in s:
            return self.literal(json.dumps(s["const"]))
        if "enum" in s:
            return self.alt([self.literal(json.dumps(v)) for v in s["enum"]])
        for key in ("anyOf", "oneOf"):
            if key in s:
                return self.alt([self.schema(sub) for sub in s[key]])
        kind = s.get("type")
        if kind == "string":
            return self.pattern_string(s["pattern"]) if "pattern" in s else self.string()
        if kind == "integer":
            return self.integer()
        if kind == "number":
            return self.number()
        if kind == "boolean":
            return self.alt([self.literal("true"), self.literal("false")])
        if kind == "null":
            return self.literal("null")
        if kind == "object":
            props = s.get("properties", {})
            required = set(s.get("required", props))
            if set(props) - required:
                raise ValueError("constrained decoding needs every property required (optional ones: "
                                 f"{sorted(set(props) - required)}); list them in 'required'")
            parts = [self.literal("{")]
            for i, (name, sub) in enumerate(props.items()):
                parts += [self.literal(("" if i == 0 else ", ") + json.dumps(name) + ": "), self.schema(sub)]
            parts.append(self.literal("}"))
            return self.seq(parts)
        raise ValueError(f"schema {s} is outside the constrained subset: object, string, integer, number, "
                         "boolean, null, enum, const, anyOf/oneOf")


class JsonSchemaAutomaton:
    """State sets of the schema's NFA, stepped character by character."""

    def __init__(self, schema: dict[str, Any]):
        self.nfa = NFA()
        self.start_node, self.final = self.nfa.schema(schema)
        self.start = self.closure({self.start_node})
        self._step: dict[tuple[frozenset[int], str], frozenset[int]] = {}

    def closure(self, nodes: Iterable[int]) -> frozenset[int]:
        out, todo = set(nodes), list(nodes)
        while todo:
            for m in self.nfa.eps[todo.pop()]:
                if m not in out:
                    out.add(m), todo.append(m)
        return frozenset(out)

    def step(self, state: frozenset[int], ch: str) -> frozenset[int]:
        key = (state, ch)
        hit = self._step.get(key)
        if hit is None:
            hit = self.closure({t for n in state for label, t in self.nfa.edges[n] if _matches(label, ch)})
            self._step[key] = hit
        return hit

    def feed(self, text: str, state: frozenset[int] | None = None) -> frozenset[int]:
        state = self.start if state is None else state
        for ch in text:
            state = self.step(state, ch)
            if not state:
                break
        return state

    def accepts(self, state: frozenset[int]) -> bool:
        return self.final in state

    def is_prefix(self, text: str) -> bool:
        return bool(self.feed(text))

    def shortest_completion(self, state: frozenset[int]) -> str:
        """The shortest text that takes `state` to the final node (breadth-first over the NFA;
        a string closes at once, a number gets one digit)."""
        pick = {STRCHAR: "a", DIGIT: "0", DIGIT19: "1", ESCAPABLE: "n"}
        frontier, seen = [(n, "") for n in state], set(state)
        while frontier:
            nxt = []
            for node, text in frontier:
                if node == self.final:
                    return text
                for m in self.nfa.eps[node]:
                    if m not in seen:
                        seen.add(m), frontier.append((m, text))
                for label, m in self.nfa.edges[node]:
                    if m not in seen:
                        seen.add(m)
                        ch = min(label) if isinstance(label, frozenset) else pick.get(label, label)
                        nxt.append((m, text + ch))
            frontier = nxt
        raise ValueError("no completion: the state is dead")

    def done(self, state: frozenset[int]) -> bool:
        """Final and nothing may follow."""
        return self.accepts(state) and not any(self.nfa.edges[n] for n in state)


class TokenConstraint:
    """allowed(state) over a tokenizer's vocabulary: token ids whose text keeps a valid prefix."""

    def __init__(self, automaton: JsonSchemaAutomaton, token_texts: Sequence[str | None]):
        self.automaton, self.vocab_size = automaton, len(token_texts)
        self.texts = list(token_texts)
        self.trie: dict = {}
        for i, text in enumerate(token_texts):
            if not text:          # special or partial-UTF-8 tokens are never allowed
                continue
            node = self.trie
            for ch in text:
                node = node.setdefault(ch, {})
            node.setdefault(None, []).append(i)
        self._allowed: dict[frozenset[int], Tensor] = {}

    @classmethod
    def for_tokenizer(cls, automaton: JsonSchemaAutomaton, tokenizer) -> "TokenConstraint":
        return cls(automaton, vocab_texts(tokenizer))

    def allowed(self, state: frozenset[int]) -> Tensor:
        """(V,) bool mask of the tokens allowed in `state` (cached per state)."""
        hit = self._allowed.get(state)
        if hit is not None:
            return hit
        ids: list[int] = []
        stack = [(self.trie, state)]
        step = self.automaton.step
        while stack:
            node, s = stack.pop()
            for ch, child in node.items():
                if ch is None:
                    ids.extend(child)
                    continue
                t = step(s, ch)
                if t:
                    stack.append((child, t))
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        mask[torch.tensor(ids, dtype=torch.long)] = True
        self._allowed[state] = mask
        return mask

    def advance(self, state: frozenset[int], token: int) -> frozenset[int]:
        return self.automaton.feed(self.texts[token] or "\x00", state)


def vocab_texts(tokenizer) -> list[str | None]:
    """Text of each token id alone; None for special tokens and bytes that are not whole UTF-8."""
    bpe = tokenizer.bpe if hasattr(tokenizer, "bpe") else tokenizer
    out: list[str | None] = []
    for i in range(len(bpe)):
        if i in bpe.special_ids:
            out.append(None)
            continue
        text = bpe.decode([i])
        out.append(None if "\ufffd" in text else text)
    return out


@torch.no_grad()
def guided_generate(model: nn.Module, prompt: Sequence[int], max_new_tokens: int,
                    allowed: Callable[[list[int]], Tensor | None] | None = None,
                    stop_ids: Sequence[int] = (), done: Callable[[list[int]], bool] | None = None) -> list[int]:
    """Greedy decoding with a KV cache where, before each choice, `allowed(new ids so far)` may
    return a (V,) bool mask (None = no constraint); stops at a stop id, when `done(new)` or at
    max_new_tokens. x_{t+1} = argmax_{x : mask(x)} P(x | x_≤t)."""
    device = next(model.parameters()).device
    L = len(prompt)
    cache = model.new_cache(1, L + max_new_tokens)
    ids = torch.tensor([list(prompt)], dtype=torch.long, device=device)       # (1, L)
    mask = torch.ones(1, L + max_new_tokens, dtype=torch.bool, device=device)
    pos = torch.arange(L, device=device)[None]
    new: list[int] = []
    stops = set(stop_ids)
    for _ in range(max_new_tokens):
        logits = model(ids, cache=cache, pos=pos, attention_mask=mask[:, :pos[0, -1] + 1])[0, -1]  # (V,)
        keep = allowed(new) if allowed is not None else None
        if keep is not None:
            if not keep.any():
                break
            logits = logits.masked_fill(~keep.to(logits.device)[:logits.numel()], float("-inf"))
        token = int(logits.argmax())
        new.append(token)
        if token in stops or (done is not None and done(new)):
            break
        ids = torch.tensor([[token]], device=device)
        pos = pos[:, -1:] + 1
    return new


def generate_json(model: nn.Module, tokenizer, prompt: Sequence[int], constraint: TokenConstraint,
                  max_new_tokens: int = 96) -> tuple[str, bool]:
    """-> (text, complete): greedy JSON under the schema; complete when the NFA reached its end.
    When the token budget runs out first, the shortest completion is appended (a string is
    closed, the braces are closed), so the text still parses."""
    states = [constraint.automaton.start]

    def allowed(new: list[int]) -> Tensor:
        while len(states) <= len(new):           # advance by the token chosen last
            states.append(constraint.advance(states[-1], new[len(states) - 1]))
        return constraint.allowed(states[-1])

    def done(new: list[int]) -> bool:
        allowed(new)
        return constraint.automaton.done(states[-1])

    new = guided_generate(model, prompt, max_new_tokens, allowed, done=done)
    allowed(new)
    text = tokenizer.decode(new)
    if not constraint.automaton.accepts(states[-1]):
        text += constraint.automaton.shortest_completion(states[-1])
    return text, constraint.automaton.accepts(constraint.automaton.feed(text))
