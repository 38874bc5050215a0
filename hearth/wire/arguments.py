"""Check tool-call arguments against the JSON Schema a catalog publishes (stdlib only).

Home Assistant's ``APIInstance.async_call_tool`` does not validate arguments
(an unknown key passes; ``name=5`` becomes ``"5"``), so the integration checks
them against the tool's published schema first, and the server can do the
same before sending a call. This covers the subset of JSON Schema that
``voluptuous_openapi`` emits: ``type`` (also a list), ``enum``, ``const``,
``properties``, ``required``, ``additionalProperties``, ``items``,
``minItems``/``maxItems``, ``minimum``/``maximum``, ``minLength``/``maxLength``,
``anyOf``/``oneOf``/``allOf``. Unknown keywords are ignored.

Objects refuse keys their schema does not list unless ``additionalProperties``
allows them: that is voluptuous' default (``PREVENT_EXTRA``), which
``voluptuous_openapi`` leaves implicit.
"""

from __future__ import annotations

from typing import Any

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
    "null": (type(None),),
}


def check_arguments(schema: dict[str, Any] | None, arguments: Any) -> list[str]:
    """Every problem of ``arguments`` against ``schema``, as short readable sentences (empty = valid)."""
    problems: list[str] = []
    _check(schema or {"type": "object"}, arguments, "", problems)
    return problems


def _describe(where: str) -> str:
    return f"'{where}'" if where else "the arguments"


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    types = _JSON_TYPES.get(name)
    return True if types is None else isinstance(value, types)


def _check(schema: Any, value: Any, where: str, problems: list[str]) -> None:
    if schema is False:
        problems.append(f"{_describe(where)} is not allowed")
        return
    if not isinstance(schema, dict):
        return
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            if not any(not check_arguments_at(option, value, where) for option in options):
                problems.append(f"{_describe(where)} does not match any allowed form")
                return
    for option in schema.get("allOf") or ():
        _check(option, value, where, problems)

    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_is_type(value, name) for name in names):
            problems.append(f"{_describe(where)} must be {' or '.join(_article(n) for n in names)}")
            return
    if "const" in schema and value != schema["const"]:
        problems.append(f"{_describe(where)} must be {schema['const']!r}")
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        shown = ", ".join(repr(item) for item in enum[:12]) + (", ..." if len(enum) > 12 else "")
        problems.append(f"{_describe(where)} must be one of {shown}")

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(schema.get("minimum"), (int, float)) and value < schema["minimum"]:
            problems.append(f"{_describe(where)} must be at least {schema['minimum']}")
        if isinstance(schema.get("maximum"), (int, float)) and value > schema["maximum"]:
            problems.append(f"{_describe(where)} must be at most {schema['maximum']}")
    if isinstance(value, str):
        if isinstance(schema.get("minLength"), int) and len(value) < schema["minLength"]:
            problems.append(f"{_describe(where)} must have at least {schema['minLength']} characters")
        if isinstance(schema.get("maxLength"), int) and len(value) > schema["maxLength"]:
            problems.append(f"{_describe(where)} must have at most {schema['maxLength']} characters")
    if isinstance(value, (list, tuple)):
        if isinstance(schema.get("minItems"), int) and len(value) < schema["minItems"]:
            problems.append(f"{_describe(where)} must have at least {schema['minItems']} items")
        if isinstance(schema.get("maxItems"), int) and len(value) > schema["maxItems"]:
            problems.append(f"{_describe(where)} must have at most {schema['maxItems']} items")
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                _check(items, item, f"{where}[{index}]", problems)
    if isinstance(value, dict):
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        for name in schema.get("required") or ():
            if name not in value:
                problems.append(f"'{_join(where, name)}' is required")
        extra = schema.get("additionalProperties", False if "properties" in schema or expected == "object" else True)
        for name, item in value.items():
            path = _join(where, str(name))
            if name in properties:
                _check(properties[name], item, path, problems)
            elif extra is False:
                known = ", ".join(sorted(properties)) or "none"
                problems.append(f"'{path}' is not a known argument (known: {known})")
            elif isinstance(extra, dict):
                _check(extra, item, path, problems)


def check_arguments_at(schema: Any, value: Any, where: str) -> list[str]:
    problems: list[str] = []
    _check(schema, value, where, problems)
    return problems


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _article(name: str) -> str:
    return {"integer": "an integer", "array": "a list", "object": "an object", "null": "null"}.get(name, f"a {name}")
