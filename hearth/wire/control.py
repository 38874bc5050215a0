"""Device control and errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .ids import check_session_id
from .message import Message


@dataclass(frozen=True)
class Mute(Message):
    """Server or HA → satellite: mute (no wake word, no streaming) or unmute.

    A satellite that is muted while in a session ends it (``audio-stop`` with
    reason ``cancelled``). The resulting state is visible in its status.
    """

    type: ClassVar[str] = "mute"

    muted: bool


class ErrorCode:
    PROTOCOL = "protocol"  # a message could not be decoded
    BUSY = "busy"  # cannot take the request now
    TIMEOUT = "timeout"
    UNKNOWN_SESSION = "unknown-session"
    INTERNAL = "internal"
    STT = "stt"
    TTS = "tts"
    BRAIN = "brain"


@dataclass(frozen=True)
class ErrorEvent(Message):
    """Either direction: something went wrong.

    With a ``session_id`` it ends that session on both sides (a satellite
    shows its error state, then goes idle). ``context`` holds short strings
    useful in a log (topic, message type, an excerpt of a bad payload).
    """

    type: ClassVar[str] = "error"

    code: str
    message: str
    session_id: str | None = None
    context: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.session_id is not None:
            check_session_id(self.session_id)
