"""Identifiers on the wire: session ids and satellite/server ids."""

from __future__ import annotations

import re
import uuid

from .errors import ProtocolError

#: A session id is 16 random bytes, written as 32 lowercase hex digits in JSON.
SESSION_ID_BYTES = 16

_SESSION_ID_RE = re.compile(r"^[0-9a-f]{32}$")
#: Satellite and server ids become one MQTT topic level and a Mosquitto username.
_NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def new_session_id() -> str:
    """A fresh random session id (32 hex digits)."""
    return uuid.uuid4().hex


def check_session_id(value: str) -> str:
    """Return ``value`` if it is a valid session id, else raise ProtocolError."""
    if not isinstance(value, str) or not _SESSION_ID_RE.match(value):
        raise ProtocolError("session id must be 32 lowercase hex digits", session_id=value)
    return value


def session_id_to_bytes(value: str) -> bytes:
    return bytes.fromhex(check_session_id(value))


def session_id_from_bytes(raw: bytes) -> str:
    if len(raw) != SESSION_ID_BYTES:
        raise ProtocolError("session id must be 16 bytes", size=len(raw))
    return raw.hex()


def check_node_id(value: str) -> str:
    """Satellite/server ids: 1–64 of ``A-Z a-z 0-9 _ -``, starting alphanumeric.

    They are one topic level, so ``/``, ``+``, ``#`` and spaces are refused.
    """
    if not isinstance(value, str) or not _NODE_ID_RE.match(value):
        raise ProtocolError(
            "id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-', starting alphanumeric",
            id=value,
        )
    return value
