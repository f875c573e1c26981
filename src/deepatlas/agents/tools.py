"""Tools an agent may call: each has a name, a description, a JSON Schema for its arguments and a
function. A call is the JSON object {"tool": NAME, "arguments": {...}}; `parse_call` checks it
(JSON, known tool, arguments valid against the tool's schema) and names what is wrong."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from deepatlas.agents.calculator import CalculatorError, calculate
from deepatlas.agents.sandbox import run_python
from deepatlas.agents.schema import errors


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]          # JSON Schema of the arguments object
    run: Callable[..., str]


class ToolCallError(ValueError):
    """A call that cannot run: not JSON, an unknown tool, or arguments that fail the schema."""


def _calculator(expression: str) -> str:
    return str(calculate(expression))


def _python(code: str) -> str:
    result = run_python(code)
    if not result.ok:
        raise ToolCallError(result.error)
    return result.text()


def calculator_tool() -> Tool:
    return Tool("calculator", "evaluate an arithmetic expression, e.g. 12 * (3 + 4)",
                {"type": "object", "properties": {"expression": {"type": "string", "pattern": r"^[0-9+*/(). %\-]+$"}},
                 "required": ["expression"], "additionalProperties": False}, _calculator)


def python_tool() -> Tool:
    return Tool("python", "run Python code in a sandbox (2 s, 256 MB, no network); its printed output is the result",
                {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"],
                 "additionalProperties": False}, _python)


def search_tool(retriever, k: int = 1, max_words: int = 60) -> Tool:
    def search(query: str) -> str:
        hits = retriever.search(query, k, "hybrid")
        return "\n".join(f"({retriever.chunks[i].where}) " + " ".join(retriever.chunks[i].text.split()[:max_words])
                         for i, _ in hits)

    return Tool("search", "search the books for a passage about the query",
                {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"],
                 "additionalProperties": False}, search)


def answer_tool() -> Tool:
    return Tool("answer", "give the final answer to the task",
                {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
                 "additionalProperties": False}, lambda text: text)


def call_schema(tools: dict[str, Tool]) -> dict[str, Any]:
    """The schema of any call: one alternative per tool, "tool" first, then its "arguments"."""
    return {"anyOf": [{"type": "object", "properties": {"tool": {"const": name}, "arguments": t.parameters},
                       "required": ["tool", "arguments"], "additionalProperties": False}
                      for name, t in tools.items()]}


def first_json(text: str) -> Any:
    """The first JSON value that starts at a '{' in the text."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            return decoder.raw_decode(text, start)[0]
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    raise ToolCallError("the reply holds no complete JSON object; reply with one tool call")


def parse_call(text: str | dict, tools: dict[str, Tool]) -> tuple[Tool, dict[str, Any]]:
    call = first_json(text) if isinstance(text, str) else text
    if not isinstance(call, dict) or "tool" not in call:
        raise ToolCallError(f"a call is an object with \"tool\" and \"arguments\", got {json.dumps(call)[:80]}")
    name = call["tool"]
    if name not in tools:
        raise ToolCallError(f"unknown tool {name!r}; valid: {', '.join(tools)}")
    args = call.get("arguments", {})
    problems = errors(args, tools[name].parameters, "arguments")
    if problems:
        raise ToolCallError(f"arguments for {name} fail its schema: " + "; ".join(problems))
    return tools[name], args


def execute(tool: Tool, args: dict[str, Any]) -> str:
    """The tool's result; its own failures (bad arithmetic, a sandbox limit) as ToolCallError."""
    try:
        return tool.run(**args)
    except (CalculatorError, ToolCallError, ValueError, OverflowError) as err:
        raise ToolCallError(f"{tool.name} failed: {err}") from None
