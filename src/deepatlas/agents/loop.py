"""The tool-use loop (ReAct-style, Yao et al. 2023; function calls as in Schick et al. 2023):

    repeat up to max_steps:  reply = model(conversation)             a JSON call
                             tool, args = parse + validate(reply)    or the error, fed back
                             result = tool(args)                     fed back as the next turn
    until the call is {"tool": "answer", ...}

With `constrained=True` each reply is decoded under the call schema (generation/constrained.py),
so every reply parses and names a real tool with arguments of the right shape.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from deepatlas.agents.tools import Tool, ToolCallError, call_schema, execute, parse_call

EXAMPLES = [  # a worked conversation the model imitates (few-shot)
    ("A baker bakes 23 loaves a day. How many loaves does he bake in 19 days?",
     [('{"tool": "calculator", "arguments": {"expression": "23 * 19"}}', "437"),
      ('{"tool": "answer", "arguments": {"text": "437"}}', None)]),
    ("How many metres are in 3.5 kilometres?",
     [('{"tool": "calculator", "arguments": {"expression": "3.5 * 1000"}}', "3500"),
      ('{"tool": "answer", "arguments": {"text": "3500"}}', None)]),
]


@dataclass
class Step:
    reply: str
    call: dict | None = None
    result: str | None = None
    error: str | None = None


@dataclass
class AgentResult:
    steps: list[Step] = field(default_factory=list)
    answer: str | None = None

    @property
    def valid_calls(self) -> int:
        return sum(s.error is None or not s.error.startswith("invalid call") for s in self.steps)


def system_prompt(tools: dict[str, Tool]) -> str:
    lines = [f"- {t.name}: {t.description}; arguments {json.dumps(t.parameters['properties'])}" for t in tools.values()]
    return ("You solve tasks with tools. Reply with exactly one JSON tool call "
            '{"tool": NAME, "arguments": {...}} and nothing else. Tools:\n' + "\n".join(lines) +
            '\nWhen you know the result, call "answer".')


class Agent:
    def __init__(self, chat, tools: dict[str, Tool], constrained: bool = True, max_steps: int = 4,
                 max_new_tokens: int = 48):
        if "answer" not in tools:
            raise ValueError("the tools must include 'answer' (the final reply)")
        self.chat, self.tools, self.constrained = chat, tools, constrained
        self.max_steps, self.max_new_tokens = max_steps, max_new_tokens
        self._constraint = None

    def constraint(self):
        if self._constraint is None:
            from deepatlas.generation.constrained import JsonSchemaAutomaton, TokenConstraint

            self._constraint = TokenConstraint.for_tokenizer(JsonSchemaAutomaton(call_schema(self.tools)),
                                                             self.chat.tokenizer)
        return self._constraint

    def messages(self, task: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": system_prompt(self.tools)}]
        for question, turns in EXAMPLES:
            msgs.append({"role": "user", "content": question})
            for reply, result in turns:
                msgs.append({"role": "assistant", "content": reply})
                if result is not None:
                    msgs.append({"role": "user", "content": f"Result: {result}"})
        msgs.append({"role": "user", "content": task})
        return msgs

    def reply(self, messages: list[dict[str, str]]) -> str:
        from deepatlas.generation.constrained import generate_json, guided_generate

        ids = self.chat.prompt_ids(messages)
        with torch.inference_mode():
            if self.constrained:
                return generate_json(self.chat.model, self.chat.tokenizer, ids, self.constraint(),
                                     self.max_new_tokens)[0]
            new = guided_generate(self.chat.model, ids, self.max_new_tokens, stop_ids=self.chat.stop_ids)
        return self.chat.tokenizer.decode([t for t in new if t not in self.chat.stop_ids]).strip()

    def run(self, task: str, on_step=None) -> AgentResult:
        if not task.strip():
            raise ValueError("the task is empty; give one, e.g. \"What is 17 * 23?\"")
        messages, out = self.messages(task), AgentResult()
        for _ in range(self.max_steps):
            step = Step(self.reply(messages))
            out.steps.append(step)
            messages.append({"role": "assistant", "content": step.reply})
            try:
                tool, args = parse_call(step.reply, self.tools)
            except ToolCallError as err:
                step.error = f"invalid call: {err}"
            else:
                step.call = {"tool": tool.name, "arguments": args}
                if tool.name == "answer":
                    out.answer = str(args["text"])
                    if on_step:
                        on_step(step)
                    return out
                try:
                    step.result = execute(tool, args)
                except ToolCallError as err:
                    step.error = str(err)
            if on_step:
                on_step(step)
            messages.append({"role": "user", "content": f"Result: {step.result}" if step.error is None
                             else f"Error: {step.error}"})
        return out


def closed_book(chat, task: str, max_new_tokens: int = 24) -> str:
    """The model alone: the task as a plain chat question, greedy."""
    from deepatlas.rag.generate import chat_answer

    return chat_answer(chat, [{"role": "user", "content": task + " Answer with the number only."}], max_new_tokens)
