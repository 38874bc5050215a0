"""Which messages travel on which JSON topic, as closed unions.

Dispatch over these unions with ``match`` ending in ``assert_never`` so that a
new message type cannot be forgotten by a receiver.
"""

from __future__ import annotations

from typing import Union, get_args

from .audio import AudioStop
from .control import ErrorEvent, Mute
from .errors import ProtocolError
from .message import Message, decode_message
from .playback import BargeIn, PlaybackFinished, ReplyEnd, ReplyStart, StopPlayback
from .session import SessionAccepted, SessionEnd, SessionStart, StandDown, WakeCandidate
from .status import SatelliteStatus, ServerStatus

#: Satellite → server, on ``hearth/v1/satellite/<id>/event``.
SatelliteEvent = Union[WakeCandidate, AudioStop, PlaybackFinished, BargeIn, ErrorEvent]

#: Server or HA → satellite, on ``hearth/v1/satellite/<id>/command``.
SatelliteCommand = Union[
    SessionAccepted,
    StandDown,
    SessionStart,
    SessionEnd,
    AudioStop,
    ReplyStart,
    ReplyEnd,
    StopPlayback,
    Mute,
    ErrorEvent,
]

SATELLITE_EVENT_TYPES: tuple[type[Message], ...] = get_args(SatelliteEvent)
SATELLITE_COMMAND_TYPES: tuple[type[Message], ...] = get_args(SatelliteCommand)


def decode_satellite_event(payload: bytes | str, *, topic: str | None = None) -> SatelliteEvent:
    return _decode_as(payload, SATELLITE_EVENT_TYPES, topic)  # type: ignore[return-value]


def decode_satellite_command(payload: bytes | str, *, topic: str | None = None) -> SatelliteCommand:
    return _decode_as(payload, SATELLITE_COMMAND_TYPES, topic)  # type: ignore[return-value]


def decode_satellite_status(payload: bytes | str, *, topic: str | None = None) -> SatelliteStatus:
    return _decode_as(payload, (SatelliteStatus,), topic)  # type: ignore[return-value]


def decode_server_status(payload: bytes | str, *, topic: str | None = None) -> ServerStatus:
    return _decode_as(payload, (ServerStatus,), topic)  # type: ignore[return-value]


def _decode_as(payload: bytes | str, allowed: tuple[type[Message], ...], topic: str | None) -> Message:
    message = decode_message(payload, topic=topic)
    if not isinstance(message, allowed):
        raise ProtocolError(f"{message.type!r} is not valid on this topic", topic=topic, type=message.type)
    return message
