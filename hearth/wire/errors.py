"""The one exception every decoder in :mod:`hearth.wire` raises on bad input."""

from __future__ import annotations


class ProtocolError(ValueError):
    """A payload or topic that does not follow the Hearth wire protocol.

    Decoders raise it instead of returning ``None``: a malformed message must
    never look like a clean end of stream. ``context`` carries what a receiver
    needs to report it (topic, message type, an excerpt of the payload).
    """

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.context: dict[str, object] = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        base = super().__str__()
        if not self.context:
            return base
        details = ", ".join(f"{key}={value!r}" for key, value in sorted(self.context.items()))
        return f"{base} ({details})"


class UnknownMessageType(ProtocolError):
    """A well-formed JSON event whose ``type`` this peer does not know.

    Newer peers may send types an older one has never heard of; receivers
    usually log this at debug level and carry on, which is why it has its own
    class.
    """
