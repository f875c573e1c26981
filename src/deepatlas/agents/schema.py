"""A small JSON Schema validator (the subset tool arguments use), checked against `jsonschema`.

Keywords: type (object, array, string, number, integer, boolean, null; or a list of them),
properties, required, additionalProperties (false), items, enum, const, minimum, maximum,
minLength, maxLength, pattern, anyOf, oneOf. `errors(instance, schema)` lists every violation
as "path: what is wrong"; an empty list means valid.
"""
from __future__ import annotations

import re
from typing import Any

TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _type_name(v: Any) -> str:
    for name in ("boolean", "integer", "number", "string", "array", "object", "null"):
        if TYPES[name](v):
            return name
    return type(v).__name__


def errors(instance: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    out: list[str] = []
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        unknown = [k for k in kinds if k not in TYPES]
        if unknown:
            raise ValueError(f"schema at {path}: unknown type {unknown[0]!r}; valid: {', '.join(TYPES)}")
        if not any(TYPES[k](instance) for k in kinds):
            return [f"{path}: expected {' or '.join(kinds)}, got {_type_name(instance)} {instance!r}"]
    if "const" in schema and instance != schema["const"]:
        out.append(f"{path}: must be {schema['const']!r}, got {instance!r}")
    if "enum" in schema and instance not in schema["enum"]:
        out.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            out.append(f"{path}: {instance} is below the minimum {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            out.append(f"{path}: {instance} is above the maximum {schema['maximum']}")
    if isinstance(instance, str):
        if "minLength" in schema and len(instance) < schema["minLength"]:
            out.append(f"{path}: {instance!r} is shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            out.append(f"{path}: a string of {len(instance)} characters is longer than {schema['maxLength']}")
        if "pattern" in schema and re.search(schema["pattern"], instance) is None:
            out.append(f"{path}: {instance!r} does not match the pattern {schema['pattern']}")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in instance:
                out.append(f"{path}: missing required property {name!r}")
        for name, value in instance.items():
            if name in props:
                out += errors(value, props[name], f"{path}.{name}")
            elif schema.get("additionalProperties", True) is False:
                out.append(f"{path}: unexpected property {name!r}; allowed: {', '.join(props) or 'none'}")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            out += errors(item, schema["items"], f"{path}[{i}]")
    if "anyOf" in schema:
        if all(errors(instance, sub, path) for sub in schema["anyOf"]):
            out.append(f"{path}: matches none of the {len(schema['anyOf'])} anyOf alternatives")
    if "oneOf" in schema:
        n = sum(not errors(instance, sub, path) for sub in schema["oneOf"])
        if n != 1:
            out.append(f"{path}: matches {n} of the oneOf alternatives, not exactly one")
    return out


def is_valid(instance: Any, schema: dict[str, Any]) -> bool:
    return not errors(instance, schema)
