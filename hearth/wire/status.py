"""Retained presence messages: one per satellite and one per server.

Both are published retained with QoS 1, and both are also registered as the
MQTT last will with ``availability="offline"``, so that a crashed or
unplugged peer shows as offline without anybody polling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .audio import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH
from .ids import check_node_id
from .message import Message
from .version import PROTOCOL_VERSION


class Availability:
    ONLINE = "online"
    OFFLINE = "offline"


class SatelliteState:
    """Values of :attr:`SatelliteStatus.state`."""

    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    ERROR = "error"
    MUTED = "muted"

    ALL = (IDLE, LISTENING, THINKING, SPEAKING, ERROR, MUTED)


@dataclass(frozen=True)
class SatelliteCapabilities:
    """What a satellite can do; part of its status (modelled on Wyoming's ``info.satellite``)."""

    wake_words: tuple[str, ...] = ()
    wake_engine: str | None = None
    has_vad: bool = False
    sample_rate: int = SAMPLE_RATE
    sample_width: int = SAMPLE_WIDTH
    channels: int = CHANNELS
    frame_ms: int = 20
    barge_in: bool = False
    continue_conversation: bool = True
    has_speaker: bool = True


@dataclass(frozen=True)
class SatelliteStatus(Message):
    """``hearth/v1/satellite/<id>/status``: presence, state and capabilities of one satellite.

    Republished (retained) on every connect and every state or mute change.
    The last will is the same message with only ``availability="offline"``.
    """

    type: ClassVar[str] = "satellite-status"

    satellite_id: str
    availability: str = Availability.ONLINE
    protocol: int = PROTOCOL_VERSION
    state: str | None = None
    muted: bool | None = None
    session_id: str | None = None
    name: str | None = None
    area: str | None = None
    version: str | None = None
    capabilities: SatelliteCapabilities | None = None

    def __post_init__(self) -> None:
        check_node_id(self.satellite_id)

    @property
    def online(self) -> bool:
        return self.availability == Availability.ONLINE

    @classmethod
    def offline(cls, satellite_id: str) -> "SatelliteStatus":
        """The last-will payload."""
        return cls(satellite_id=satellite_id, availability=Availability.OFFLINE)


@dataclass(frozen=True)
class ServerStatus(Message):
    """``hearth/v1/server/<id>/status``: a house server's presence (retained, with last will)."""

    type: ClassVar[str] = "server-status"

    server_id: str
    availability: str = Availability.ONLINE
    protocol: int = PROTOCOL_VERSION
    version: str | None = None
    name: str | None = None
    #: Milliseconds the server waits for competing wake candidates (multi-room).
    arbitration_window_ms: int | None = None

    def __post_init__(self) -> None:
        check_node_id(self.server_id)

    @property
    def online(self) -> bool:
        return self.availability == Availability.ONLINE

    @classmethod
    def offline(cls, server_id: str) -> "ServerStatus":
        return cls(server_id=server_id, availability=Availability.OFFLINE)
