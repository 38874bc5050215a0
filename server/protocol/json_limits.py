"""Decoding JSON from clients without trusting its shape: nesting, size, numbers, unicode.

Python's `json` recurses once per level and raises `RecursionError` near 1,000 levels, and
it accepts what other parsers (and so other clients) refuse: `NaN`, `Infinity`, integers of
any length (or a ValueError past 4,300 digits) and lone UTF-16 surrogates. A value that
decodes here always encodes again, so it is safe to keep and to echo.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: Arrays and objects inside each other; a Realtime event needs about 20 (a nested tool schema).
MAX_DEPTH = 64
#: Longest integer literal (digits); longer ones are refused as invalid JSON.
MAX_INT_DIGITS = 64
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class JsonLimitError(ValueError):
    """The text is not JSON we accept; `reason` says why in a sentence for the client."""

    def __init__(self, reason: str, *, too_deep: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_deep = too_deep
        #: What did decode, when the text parsed but broke a limit (to read an `event_id` from).
        self.value: Any = None


def _constant(name: str) -> Any:
    raise JsonLimitError(f"{name} is not a JSON value")


def _integer(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonLimitError(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(literal)


def _number(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise JsonLimitError(f"the number {literal[:24]} is out of range")
    return value


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH, max_chars: int | None = None) -> Any:
    """`json.loads` with limits. Raises JsonLimitError (or json.JSONDecodeError for bad syntax).

    The checks work on the text at C speed (a 15 MiB append costs a few counts, not a
    walk over the decoded value), and only when the text could break them.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise JsonLimitError(f"the text is not UTF-8 (byte {err.start})") from None
    if max_chars is not None and len(text) > max_chars:
        raise JsonLimitError(f"the message is longer than {max_chars} characters")
    try:
        value = json.loads(text, parse_constant=_constant, parse_int=_integer, parse_float=_number)
    except RecursionError:
        raise JsonLimitError(f"it is nested more than {max_depth} levels deep", too_deep=True) from None
    try:
        if _brackets_exceed(text, max_depth) and _depth(text, max_depth) > max_depth:
            raise JsonLimitError(f"it is nested more than {max_depth} levels deep", too_deep=True)
        if "\\" in text and _SURROGATE_ESCAPE.search(text):  # one-character search: memchr speed
            _check_strings(value)
    except JsonLimitError as err:
        err.value = value
        raise
    return value


def _brackets_exceed(text: str, limit: int) -> bool:
    """Whether `text` has more than `limit` opening brackets (fewer cannot nest deeper).

    Single-character `find` runs at memchr speed, so for the usual event (a 15 MiB append
    has two braces) this costs a millisecond where `count` would cost a full pass.
    """
    seen = 0
    for bracket in "[{":
        start = text.find(bracket)
        while start != -1:
            seen += 1
            if seen > limit:
                return True
            start = text.find(bracket, start + 1)
    return False


#: Outside strings valid JSON is ASCII: keep the brackets (as parentheses), drop the rest.
_PARENS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(c for c in range(0x100) if c not in b"[]{}")


def _depth(text: str, limit: int) -> int:
    """Nesting depth of valid JSON `text`, counted up to `limit + 1`, by string operations only.

    Strings are cut out first (escaped backslashes and quotes removed, then every other
    segment between quotes dropped); of the rest only brackets are kept, and innermost
    pairs are removed once per level (one `replace` pass removes one level: it matches
    the text as it was).
    """
    if "\\" in text:
        text = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(text.split('"')[::2]).encode("ascii", "ignore")
    structure = outside.translate(_PARENS, _NOT_BRACKETS)
    depth = 0
    while structure and depth <= limit:
        structure = structure.replace(b"()", b"")
        depth += 1
    return depth


def _check_strings(value: Any) -> None:
    """Raise JsonLimitError if a string (or key) in `value` holds a lone surrogate."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            _check_text(node)
        elif isinstance(node, dict):
            for key, item in node.items():
                _check_text(key)
                if isinstance(item, str | dict | list):
                    stack.append(item)
        elif isinstance(node, list):
            stack.extend(item for item in node if isinstance(item, str | dict | list))


def check(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise JsonLimitError unless `value` is JSON data nested at most `max_depth` deep.

    Iterative (no recursion, whatever the depth). Also refuses what cannot be encoded
    again: non-string keys, non-finite numbers, lone surrogates and non-JSON types.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_text(node)
        elif isinstance(node, bool) or node is None or isinstance(node, int):
            continue
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise JsonLimitError("NaN and infinite numbers are not JSON values")
        elif isinstance(node, dict | list | tuple):
            if depth >= max_depth:
                raise JsonLimitError(f"it is nested more than {max_depth} levels deep", too_deep=True)
            if isinstance(node, dict):
                for key, item in node.items():
                    if not isinstance(key, str):
                        raise JsonLimitError("an object key is not a string")
                    _check_text(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in node)
        else:
            raise JsonLimitError(f"a {type(node).__name__} is not a JSON value")


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonLimitError("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                                 "which is not text") from None
