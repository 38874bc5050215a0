"""Realtime protocol errors and the mapping from validation failures to upstream codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


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
}


def _path(loc: tuple[Any, ...], data: Any, prefix: str) -> str:
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
        elif last and isinstance(node, dict) and isinstance(part, str):
            out = f"{out}.{part}" if out else part
    return out


def from_validation_error(err: ValidationError, data: Any, prefix: str) -> RealtimeProtocolError:
    """Turn the first pydantic error into the error upstream would send for it."""
    first = err.errors(include_url=False)[0]
    kind = first["type"]
    param = _path(tuple(first["loc"]), data, prefix)
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
    if code == "unknown_parameter":
        message = f"Unknown parameter: '{param}'."
    elif code == "missing_required_parameter":
        message = f"Missing required parameter: '{param}'."
    else:
        message = f"Invalid value for '{param}': {first['msg']}."
    return RealtimeProtocolError(message=message, code=code, param=param or None)
