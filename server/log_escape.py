"""One log record, one line: client text in a message cannot forge another record."""

from __future__ import annotations

import logging

from .protocol.errors import escape_controls


class EscapeControlCharacters(logging.Filter):
    """Writes newlines and other control characters of a record's message as escapes.

    Messages quote client text (event types, item ids, model names from a query string);
    a newline there would start what looks like a second, forged record. Tracebacks are
    formatted separately and keep their lines.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_controls(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of `logger` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, EscapeControlCharacters) for f in handler.filters):
            handler.addFilter(EscapeControlCharacters())
