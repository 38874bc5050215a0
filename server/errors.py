"""The one error type for "this server cannot start", which `hearth server` reports plainly.

A part raises `StartupError` (or a subclass) for a problem the user can fix: a model that is
not on disk, a port another program holds. `server/main.py` prints `cannot start: <message>`
and exits non-zero, with no traceback, so the message must say what to change.
"""

from __future__ import annotations


class StartupError(RuntimeError):
    """A resource cannot start for a reason the user can fix (the message says how)."""
