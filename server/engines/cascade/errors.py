"""Errors shared by the cascade's model-loading stages."""

from __future__ import annotations

from hearth.server.errors import StartupError


class ModelNotAvailableError(StartupError):
    """A configured model or voice cannot be loaded from local files.

    Raised at load time (server start, `warm_up`) so a bad configuration fails
    loudly instead of on the first user turn. The message names the model and
    says how to fix it; nothing is ever downloaded implicitly.
    """
