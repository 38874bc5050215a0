"""Errors that stop the server from starting, for reasons the user can fix."""

from __future__ import annotations


class StartupError(RuntimeError):
    """A resource cannot start for a reason the user can fix (the message says how)."""
