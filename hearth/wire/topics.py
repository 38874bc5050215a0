"""Every MQTT topic of the protocol, built in one place.

::

    hearth/v1/satellite/<satellite_id>/status    satellite → all     JSON, QoS 1, retained, will
    hearth/v1/satellite/<satellite_id>/event     satellite → server  JSON, QoS 1
    hearth/v1/satellite/<satellite_id>/audio     satellite → server  binary frames, QoS 0
    hearth/v1/satellite/<satellite_id>/command   server/HA → satellite  JSON, QoS 1
    hearth/v1/satellite/<satellite_id>/reply     server → satellite  binary frames, QoS 0
    hearth/v1/server/<server_id>/status          server → all        JSON, QoS 1, retained, will

Direction is in the topic (a satellite publishes ``status``/``event``/``audio``
and reads ``command``/``reply``), which is what makes per-satellite broker ACLs
possible. JSON events of one direction share one topic so that MQTT keeps
their order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import ProtocolError
from .ids import check_node_id
from .version import PROTOCOL_VERSION

ROOT = f"hearth/v{PROTOCOL_VERSION}"

QOS_CONTROL = 1
QOS_AUDIO = 0


class SatelliteChannel(str, enum.Enum):
    """The last level of a satellite topic."""

    STATUS = "status"
    EVENT = "event"
    AUDIO = "audio"
    COMMAND = "command"
    REPLY = "reply"

    @property
    def from_satellite(self) -> bool:
        return self in (SatelliteChannel.STATUS, SatelliteChannel.EVENT, SatelliteChannel.AUDIO)

    @property
    def binary(self) -> bool:
        return self in (SatelliteChannel.AUDIO, SatelliteChannel.REPLY)

    @property
    def qos(self) -> int:
        return QOS_AUDIO if self.binary else QOS_CONTROL

    @property
    def retained(self) -> bool:
        return self is SatelliteChannel.STATUS


class ServerChannel(str, enum.Enum):
    STATUS = "status"


def satellite_topic(satellite_id: str, channel: SatelliteChannel) -> str:
    return f"{ROOT}/satellite/{check_node_id(satellite_id)}/{channel.value}"


def satellite_status(satellite_id: str) -> str:
    return satellite_topic(satellite_id, SatelliteChannel.STATUS)


def satellite_event(satellite_id: str) -> str:
    return satellite_topic(satellite_id, SatelliteChannel.EVENT)


def satellite_audio(satellite_id: str) -> str:
    return satellite_topic(satellite_id, SatelliteChannel.AUDIO)


def satellite_command(satellite_id: str) -> str:
    return satellite_topic(satellite_id, SatelliteChannel.COMMAND)


def satellite_reply(satellite_id: str) -> str:
    return satellite_topic(satellite_id, SatelliteChannel.REPLY)


def server_status(server_id: str) -> str:
    return f"{ROOT}/server/{check_node_id(server_id)}/status"


# -- subscriptions (wildcards) ------------------------------------------------
def all_satellites(channel: SatelliteChannel) -> str:
    """e.g. ``hearth/v1/satellite/+/event``: what the server subscribes to."""
    return f"{ROOT}/satellite/+/{channel.value}"


def all_server_statuses() -> str:
    """``hearth/v1/server/+/status``: what satellites and HA subscribe to."""
    return f"{ROOT}/server/+/status"


# -- parsing ------------------------------------------------------------------
@dataclass(frozen=True)
class SatelliteTopic:
    satellite_id: str
    channel: SatelliteChannel


@dataclass(frozen=True)
class ServerTopic:
    server_id: str
    channel: ServerChannel


def parse_topic(topic: str) -> SatelliteTopic | ServerTopic:
    """Split a concrete topic into its id and channel; raise ProtocolError if it is not ours."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != ROOT:
        raise ProtocolError("not a Hearth topic", topic=topic)
    kind, node_id, last = parts[2], parts[3], parts[4]
    check_node_id(node_id)
    try:
        if kind == "satellite":
            return SatelliteTopic(node_id, SatelliteChannel(last))
        if kind == "server":
            return ServerTopic(node_id, ServerChannel(last))
    except ValueError as err:
        raise ProtocolError("unknown channel", topic=topic) from err
    raise ProtocolError("unknown topic kind", topic=topic)
