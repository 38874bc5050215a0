"""Identifiers in upstream's formats (`item_` + 21 characters, `resp_…`, `event_…`)."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 21) -> str:
    """A random id such as `item_Bx3…`; prefixes: item, resp, event, sess, conv, call."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))
