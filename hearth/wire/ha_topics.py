"""The Home Assistant topics, which messages travel on each, and their decoders.

::

    hearth/v1/ha/status                       HA → all        ha-status           QoS 1, retained
    hearth/v1/ha/tools                        HA → server     tool-catalog        QoS 1, retained (device-less)
    hearth/v1/ha/satellite/<sid>/tools        HA → server     tool-catalog        QoS 1, retained
    hearth/v1/ha/satellite/<sid>/settings     HA → all        satellite-settings  QoS 1, retained
    hearth/v1/ha/satellite/<sid>/activity     server → HA     satellite-activity  QoS 1, retained
    hearth/v1/ha/event                        HA → server     tool-result, announce, start-conversation,
                                                              conversation-request, timer-*
    hearth/v1/ha/command                      server → HA     tool-call, request-done, conversation-response

Home Assistant's topics live under their own ``ha`` branch, not under a
satellite's: a satellite's broker account can then be kept from forging a
catalog or a tool result (see firmware-config/mosquitto.acl). Like the
satellite topics, each direction shares one JSON topic so MQTT keeps order.

Catalogs and tool results can be large (Home Assistant's prompt lists every
exposed entity; ``GetLiveContext`` returns every state), so these decoders
accept up to :data:`MAX_HA_JSON_BYTES`, more than the 64 KiB of a control event.
"""

from __future__ import annotations

import json
from typing import Union, get_args

from .assist import (
    Announce,
    ConversationRequest,
    ConversationResponse,
    IntegrationStatus,
    RequestDone,
    SatelliteActivity,
    SatelliteSettings,
    StartConversation,
    TimerCancelled,
    TimerFinished,
    TimerStarted,
    TimerUpdated,
    ToolCall,
    ToolCatalog,
    ToolResult,
)
from .errors import ProtocolError, UnknownMessageType
from .ids import check_node_id
from .message import MESSAGE_TYPES, Message
from .topics import ROOT

HA_ROOT = f"{ROOT}/ha"

#: The largest payload a Home Assistant topic accepts.
MAX_HA_JSON_BYTES = 4 * 1024 * 1024

#: HA → server on :func:`ha_event`.
HaEvent = Union[
    ToolResult,
    Announce,
    StartConversation,
    ConversationRequest,
    TimerStarted,
    TimerUpdated,
    TimerCancelled,
    TimerFinished,
]
#: Server → HA on :func:`ha_command`.
HaCommand = Union[ToolCall, RequestDone, ConversationResponse]

HA_EVENT_TYPES: tuple[type[Message], ...] = get_args(HaEvent)
HA_COMMAND_TYPES: tuple[type[Message], ...] = get_args(HaCommand)
#: Messages with a retained topic of their own.
HA_RETAINED_TYPES: tuple[type[Message], ...] = (IntegrationStatus, ToolCatalog, SatelliteSettings, SatelliteActivity)


def ha_status() -> str:
    return f"{HA_ROOT}/status"


def ha_event() -> str:
    return f"{HA_ROOT}/event"


def ha_command() -> str:
    return f"{HA_ROOT}/command"


def ha_tools(satellite_id: str | None = None) -> str:
    """The retained catalog of one satellite, or the device-less one when ``satellite_id`` is None."""
    if satellite_id is None:
        return f"{HA_ROOT}/tools"
    return f"{HA_ROOT}/satellite/{check_node_id(satellite_id)}/tools"


def ha_settings(satellite_id: str) -> str:
    return f"{HA_ROOT}/satellite/{check_node_id(satellite_id)}/settings"


def ha_activity(satellite_id: str) -> str:
    return f"{HA_ROOT}/satellite/{check_node_id(satellite_id)}/activity"


def all_ha_tools() -> str:
    """``hearth/v1/ha/satellite/+/tools`` (the device-less :func:`ha_tools` is subscribed to as well)."""
    return f"{HA_ROOT}/satellite/+/tools"


def all_ha_settings() -> str:
    return f"{HA_ROOT}/satellite/+/settings"


def all_ha_activity() -> str:
    return f"{HA_ROOT}/satellite/+/activity"


def tools_topic_satellite(topic: str) -> str | None:
    """The satellite id of a catalog topic (None for the device-less one); ProtocolError otherwise."""
    if topic == ha_tools():
        return None
    parts = topic.split("/")
    if len(parts) == 6 and "/".join(parts[:4]) == f"{HA_ROOT}/satellite" and parts[5] == "tools":
        return check_node_id(parts[4])
    raise ProtocolError("not a Hearth tool catalog topic", topic=topic)


# -- decoders -------------------------------------------------------------------------
def decode_ha_event(payload: bytes | str, *, topic: str | None = None) -> HaEvent:
    return _decode_as(payload, HA_EVENT_TYPES, topic)  # type: ignore[return-value]


def decode_ha_command(payload: bytes | str, *, topic: str | None = None) -> HaCommand:
    return _decode_as(payload, HA_COMMAND_TYPES, topic)  # type: ignore[return-value]


def decode_tool_catalog(payload: bytes | str, *, topic: str | None = None) -> ToolCatalog:
    return _decode_as(payload, (ToolCatalog,), topic)  # type: ignore[return-value]


def decode_satellite_settings(payload: bytes | str, *, topic: str | None = None) -> SatelliteSettings:
    return _decode_as(payload, (SatelliteSettings,), topic)  # type: ignore[return-value]


def decode_satellite_activity(payload: bytes | str, *, topic: str | None = None) -> SatelliteActivity:
    return _decode_as(payload, (SatelliteActivity,), topic)  # type: ignore[return-value]


def decode_integration_status(payload: bytes | str, *, topic: str | None = None) -> IntegrationStatus:
    return _decode_as(payload, (IntegrationStatus,), topic)  # type: ignore[return-value]


def _decode_as(payload: bytes | str, allowed: tuple[type[Message], ...], topic: str | None) -> Message:
    if len(payload) > MAX_HA_JSON_BYTES:
        raise ProtocolError("JSON payload too large", topic=topic, size=len(payload))
    if isinstance(payload, (bytes, bytearray, memoryview)):
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as err:
            raise ProtocolError("payload is not UTF-8", topic=topic) from err
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as err:
        raise ProtocolError(f"payload is not JSON: {err}", topic=topic, payload=payload[:120]) from err
    if not isinstance(data, dict):
        raise ProtocolError("payload is not a JSON object", topic=topic, payload=payload[:120])
    message_type = data.get("type")
    if not isinstance(message_type, str):
        raise ProtocolError("message has no string 'type'", topic=topic, payload=payload[:120])
    cls = MESSAGE_TYPES.get(message_type)
    if cls is None:
        raise UnknownMessageType(f"unknown message type {message_type!r}", topic=topic, type=message_type)
    if cls not in allowed:
        raise ProtocolError(f"{message_type!r} is not valid on this topic", topic=topic, type=message_type)
    try:
        return cls.from_dict(data)
    except ProtocolError as err:
        if topic is not None:
            err.context.setdefault("topic", topic)
        raise
