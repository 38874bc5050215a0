"""Hearth's MQTT wire protocol, defined once (stdlib only).

Used by the satellite, the house server's MQTT bridge and the Home Assistant
integration. The reference is docs/mqtt-protocol.md.

* :mod:`.topics` — every topic, and QoS/retain per channel
* :mod:`.audio` — the binary audio frame and ``audio-stop``
* :mod:`.status` — retained satellite and server status (last will ``offline``)
* :mod:`.session` — wake candidates, arbitration, session start/end
* :mod:`.playback` — reply start/end, playback-finished, barge-in, stop-playback
* :mod:`.control` — mute and errors
* :mod:`.events` — which messages are valid on which topic (closed unions)
* :mod:`.discovery` — the zeroconf TXT keys a server advertises
* :mod:`.assist` — Home Assistant ↔ server: tool catalogs and calls, announcements,
  the conversation agent, timers, satellite settings and activity
* :mod:`.ha_topics` — the Home Assistant topics and their decoders
"""

from .assist import (
    Announce,
    ConversationRequest,
    ConversationResponse,
    ExposedEntity,
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
    ToolDefinition,
    ToolErrorCode,
    ToolResult,
    WakeSensitivity,
)
from .audio import (
    CHANNELS,
    FLAG_END,
    HEADER_SIZE,
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    AudioFrame,
    AudioStop,
    AudioStopReason,
)
from .control import ErrorCode, ErrorEvent, Mute
from .errors import ProtocolError, UnknownMessageType
from .events import (
    SatelliteCommand,
    SatelliteEvent,
    decode_satellite_command,
    decode_satellite_event,
    decode_satellite_status,
    decode_server_status,
)
from .ids import check_node_id, check_session_id, new_session_id
from .message import MESSAGE_TYPES, Message, decode_message, encode_message
from .mqtt_url import MqttUrl
from .playback import BargeIn, PlaybackFinished, ReplyEnd, ReplyStart, StopPlayback
from .session import (
    SessionAccepted,
    SessionEnd,
    SessionEndReason,
    SessionStart,
    StandDown,
    StandDownReason,
    WakeCandidate,
)
from .status import Availability, SatelliteCapabilities, SatelliteState, SatelliteStatus, ServerStatus
from .version import PROTOCOL_VERSION

__all__ = [
    "Announce",
    "AudioFrame",
    "AudioStop",
    "AudioStopReason",
    "Availability",
    "BargeIn",
    "CHANNELS",
    "ConversationRequest",
    "ConversationResponse",
    "ErrorCode",
    "ErrorEvent",
    "ExposedEntity",
    "FLAG_END",
    "HEADER_SIZE",
    "IntegrationStatus",
    "MESSAGE_TYPES",
    "Message",
    "MqttUrl",
    "Mute",
    "PROTOCOL_VERSION",
    "PlaybackFinished",
    "ProtocolError",
    "ReplyEnd",
    "ReplyStart",
    "RequestDone",
    "SAMPLE_RATE",
    "SAMPLE_WIDTH",
    "SatelliteActivity",
    "SatelliteCapabilities",
    "SatelliteCommand",
    "SatelliteEvent",
    "SatelliteSettings",
    "SatelliteState",
    "SatelliteStatus",
    "ServerStatus",
    "SessionAccepted",
    "SessionEnd",
    "SessionEndReason",
    "SessionStart",
    "StandDown",
    "StandDownReason",
    "StartConversation",
    "StopPlayback",
    "TimerCancelled",
    "TimerFinished",
    "TimerStarted",
    "TimerUpdated",
    "ToolCall",
    "ToolCatalog",
    "ToolDefinition",
    "ToolErrorCode",
    "ToolResult",
    "UnknownMessageType",
    "WakeCandidate",
    "WakeSensitivity",
    "check_node_id",
    "check_session_id",
    "decode_message",
    "decode_satellite_command",
    "decode_satellite_event",
    "decode_satellite_status",
    "decode_server_status",
    "encode_message",
    "new_session_id",
]
