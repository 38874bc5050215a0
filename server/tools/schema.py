"""Tool definitions and their JSON schemas: the helpers every brain and the tool layer share.

Tools arrive in two shapes, the Realtime one (flat: `name`, `parameters`) and the chat
completions one (nested under `function`); schemas nest through `anyOf` / `oneOf` /
`allOf` and array `items`. These read both, bounded in depth so a hostile schema
cannot recurse without end.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

#: Deepest schema nesting these helpers look into.
MAX_DEPTH = 8


def realtime_function(name: str, description: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A Realtime function tool definition."""
    return {"type": "function", "name": name, "description": description, "parameters": dict(parameters)}


def chat_function(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A Realtime function definition in the chat-completions `tools` shape."""
    function: dict[str, Any] = {"name": tool_name(tool) or "", "parameters": dict(tool_parameters(tool))}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def tool_name(tool: Mapping[str, Any]) -> str | None:
    """A tool's name, in the Realtime (flat) or the chat-completions (nested) shape."""
    name = tool.get("name")
    if name is None and isinstance(tool.get("function"), Mapping):
        name = tool["function"].get("name")
    return name if isinstance(name, str) else None


def tool_parameters(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    """A tool's parameter schema (empty when it declares none)."""
    params = tool.get("parameters")
    if params is None and isinstance(tool.get("function"), Mapping):
        params = tool["function"].get("parameters")
    return params if isinstance(params, Mapping) else {}


def enum_properties(schema: Any, depth: int = 0) -> Iterator[tuple[str, list[str]]]:
    """(property name, its string enum values) for every property at any depth."""
    if not isinstance(schema, Mapping) or depth > MAX_DEPTH:
        return
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for key, sub in properties.items():
            values = schema_enum(sub)
            if values:
                yield str(key), values
            yield from enum_properties(sub, depth + 1)
    for sub in subschemas(schema):
        yield from enum_properties(sub, depth + 1)


def schema_enum(schema: Any, depth: int = 0) -> list[str]:
    """String enum values a property allows, looking through anyOf/oneOf/allOf/items."""
    if not isinstance(schema, Mapping) or depth > MAX_DEPTH:
        return []
    values: list[str] = []
    enum = schema.get("enum")
    if isinstance(enum, list):
        values.extend(v for v in enum if isinstance(v, str) and v.strip())
    if isinstance(schema.get("const"), str):
        values.append(schema["const"])
    for sub in subschemas(schema):
        values.extend(schema_enum(sub, depth + 1))
    return list(dict.fromkeys(values))


def schema_fallback(schema: Any) -> tuple[bool, Any]:
    """(True, value) for a parameter a call may send without the sentence filling it.

    The value is the schema's `default`, else None where the schema allows null. Strict
    schemas list every parameter as required and mark the optional ones this way:
    openai-agents' `function_tool` (`"default": "light"`, or `anyOf [..., {"type": "null"}]`
    for `str | None = None`) and zod's `.nullable()` / `.default()` (`"type": ["string",
    "null"]`). (False, None) when the parameter must come from the sentence.
    """
    if not isinstance(schema, Mapping):
        return False, None
    if "default" in schema:
        return True, copy.deepcopy(schema["default"])
    return (True, None) if _nullable(schema) else (False, None)


def _nullable(schema: Any, depth: int = 0) -> bool:
    if not isinstance(schema, Mapping) or depth > MAX_DEPTH:
        return False
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind) or schema.get("nullable") is True:
        return True
    if "const" in schema and schema["const"] is None:
        return True
    if isinstance(schema.get("enum"), list) and None in schema["enum"]:
        return True
    return any(_nullable(sub, depth + 1) for key in ("anyOf", "oneOf")
               for sub in (schema.get(key) if isinstance(schema.get(key), list) else []))


def subschemas(schema: Mapping[str, Any]) -> Iterator[Any]:
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list):
            yield from schema[key]
    if isinstance(schema.get("items"), Mapping):
        yield schema["items"]


