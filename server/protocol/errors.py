"""Realtime protocol errors and the mapping from validation failures to upstream codes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

#: Longest piece of client text quoted in an error message (and so in the server's log).
QUOTE_LIMIT = 64
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


@dataclass
class RealtimeProtocolError(Exception):
    """A client mistake that becomes one `error` server event (never a disconnect)."""

    message: str
    code: str | None = None
    param: str | None = None
    type: str = "invalid_request_error"
    #: The client event's `event_id`, filled in by the session when known.
    event_id: str | None = None

    def __str__(self) -> str:
        return self.message


def escape_controls(text: str) -> str:
    """`text` with control characters, line separators and lone surrogates as escapes."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)


def quote(text: Any, limit: int = QUOTE_LIMIT) -> str:
    """Client text made safe to put in a message or a log line.

    Control characters (a newline would forge a log line), line separators and lone
    surrogates are written as escapes; long text is cut with an ellipsis.
    """
    text = str(text)
    cut = len(text) > limit
    text = escape_controls(text[:limit])
    return text + "…" if cut else text


def json_type_name(value: Any) -> str:
    """The JSON type of a client value, as upstream names it in `invalid_type` messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a value of another type"


#: pydantic error type -> what the field expects, for `invalid_type` messages.
_EXPECTED = {
    "bool_type": "a boolean", "bool_parsing": "a boolean",
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number",
    "string_type": "a string",
    "list_type": "an array",
    "dict_type": "an object", "model_type": "an object", "model_attributes_type": "an object",
}


# pydantic error type -> upstream error code
_CODES = {
    "extra_forbidden": "unknown_parameter",
    "missing": "missing_required_parameter",
    "literal_error": "invalid_value",
    "enum": "invalid_value",
    "union_tag_invalid": "invalid_value",
    "union_tag_not_found": "missing_required_parameter",
    "string_too_long": "string_above_max_length",
    "string_too_short": "string_below_min_length",
    "too_long": "array_above_max_length",
    "too_short": "array_below_min_length",
    "json_invalid": "invalid_json",
    "int_from_float": "invalid_type",
}


def _path(loc: tuple[Any, ...], data: Any, prefix: str, missing: bool = True) -> str:
    """Render a pydantic location as an upstream `param` path (`session.tools[0].name`).

    Unions add their tag or member name to the location; such parts are not
    keys of the input, so they are skipped by walking the input alongside. Only
    the last part may be absent from the input (a missing required field).
    """
    out = prefix
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(part, int) and isinstance(node, list):
            out += f"[{part}]"
            node = node[part] if part < len(node) else None
        elif isinstance(node, dict) and part in node:
            out = f"{out}.{part}" if out else str(part)
            node = node[part]
        elif missing and last and isinstance(node, dict) and isinstance(part, str):
            out = f"{out}.{part}" if out else part
    return out


def _reach(loc: tuple[Any, ...], data: Any) -> int:
    """How many parts of `loc` are keys or indexes of the input (union member names are not)."""
    reached, node = 0, data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            continue
        reached += 1
    return reached


def _most_specific(err: ValidationError, data: Any) -> Any:
    """The error that reaches deepest into the input.

    For a plain union (`"auto" | {workflow_name, metadata}`) pydantic reports every
    member's failure; the one about the member the client meant (an object, here) goes
    deepest, while "input should be 'auto'" stops at the union.
    """
    errors = err.errors(include_url=False)
    return max(errors, key=lambda e: _reach(tuple(e["loc"]), data))  # max keeps the first of equals


def from_validation_error(err: ValidationError, data: Any, prefix: str) -> RealtimeProtocolError:
    """Turn the most specific pydantic error into the error upstream would send for it."""
    first = _most_specific(err, data)
    kind = first["type"]
    param = _path(tuple(first["loc"]), data, prefix, missing=kind == "missing")
    # The bound's type tells an integer field from a decimal one (models use 1.0 for floats).
    bound = next(iter((first.get("ctx") or {}).values()), None)
    number = "decimal" if isinstance(bound, float) else "integer"
    if kind in ("greater_than_equal", "greater_than"):
        code = f"{number}_below_min_value"
    elif kind in ("less_than_equal", "less_than"):
        code = f"{number}_above_max_value"
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        code = "invalid_type"
    else:
        code = _CODES.get(kind, "invalid_value")
    shown = quote(param, 2 * QUOTE_LIMIT)
    if code == "unknown_parameter":
        message = f"Unknown parameter: '{shown}'."
    elif code == "missing_required_parameter":
        message = f"Missing required parameter: '{shown}'."
    elif code == "invalid_type":
        expected = _EXPECTED.get(kind, "another type")
        got = json_type_name(first.get("input"))
        message = f"Invalid type for '{shown}': expected {expected}, but got {got} instead."
    else:
        message = f"Invalid value for '{shown}': {quote(first['msg'], 4 * QUOTE_LIMIT)}."
    return RealtimeProtocolError(message=message, code=code, param=param[:4 * QUOTE_LIMIT] or None)
