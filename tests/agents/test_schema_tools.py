import json

import jsonschema
import pytest

from deepatlas.agents.calculator import CalculatorError, calculate
from deepatlas.agents.schema import errors, is_valid
from deepatlas.agents.tools import (ToolCallError, answer_tool, calculator_tool, call_schema, execute, parse_call,
                                    python_tool)

SCHEMA = {"type": "object", "properties": {
    "n": {"type": "integer", "minimum": 0, "maximum": 10}, "s": {"type": "string", "maxLength": 5, "pattern": "^[a-z]*$"},
    "tags": {"type": "array", "items": {"enum": ["a", "b"]}}, "x": {"type": ["number", "null"]},
    "k": {"const": "fixed"}, "u": {"anyOf": [{"type": "string"}, {"type": "boolean"}]}},
    "required": ["n"], "additionalProperties": False}
INSTANCES = [{"n": 3}, {"n": 3, "s": "abc", "tags": ["a", "b"], "x": None, "k": "fixed", "u": True},
             {"n": -1}, {"n": 11}, {"n": 2.5}, {"n": True}, {}, {"n": 1, "extra": 0}, {"n": 1, "s": "toolong"},
             {"n": 1, "s": "ABC"}, {"n": 1, "tags": ["c"]}, {"n": 1, "x": "1"}, {"n": 1, "k": "other"},
             {"n": 1, "u": 3}, [], "text", {"n": 1.0}]


def test_validator_agrees_with_jsonschema():
    for inst in INSTANCES:
        ref = jsonschema.Draft202012Validator(SCHEMA).is_valid(inst)
        assert is_valid(inst, SCHEMA) == ref, (inst, errors(inst, SCHEMA))


def test_errors_name_the_path():
    assert errors({"n": 1, "s": 5}, SCHEMA) == ["$.s: expected string, got integer 5"]
    assert "missing required property 'n'" in errors({}, SCHEMA)[0]


def test_calculator_walks_the_ast():
    assert calculate("12 * (3 + 4)") == 84 and calculate("7.5 * 60") == 450 and calculate("2 ^ 10") == 1024
    assert calculate("sqrt(16) + -2") == 2
    for bad, msg in [("__import__('os')", "unsupported"), ("2 ** 99999", "too large"), ("1/0", "zero"),
                     ("", "empty"), ("3 +", "parse"), ("(1).real", "unsupported")]:
        with pytest.raises(CalculatorError, match=msg):
            calculate(bad)


def test_calls_are_parsed_and_checked():
    tools = {t.name: t for t in (calculator_tool(), python_tool(), answer_tool())}
    tool, args = parse_call('Sure! {"tool": "calculator", "arguments": {"expression": "2 + 2"}} done', tools)
    assert execute(tool, args) == "4"
    with pytest.raises(ToolCallError, match="unknown tool 'weather'; valid: calculator, python, answer"):
        parse_call('{"tool": "weather", "arguments": {}}', tools)
    with pytest.raises(ToolCallError, match="fail its schema.*missing required property 'expression'"):
        parse_call('{"tool": "calculator", "arguments": {"expr": "2"}}', tools)
    with pytest.raises(ToolCallError, match="no complete JSON"):
        parse_call('{"tool": "calculator", "arguments": {"expression": "2', tools)
    with pytest.raises(ToolCallError, match="calculator failed: division by zero"):
        execute(*parse_call('{"tool": "calculator", "arguments": {"expression": "1/0"}}', tools))
    schema = call_schema(tools)
    assert jsonschema.Draft202012Validator(schema).is_valid(json.loads('{"tool": "answer", "arguments": {"text": "x"}}'))
