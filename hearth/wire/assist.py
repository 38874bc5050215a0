"""Home Assistant ↔ house server messages: tools, calls, announcements, conversation, timers.

The Home Assistant integration (``custom_components/hearth``) publishes what
Home Assistant exposes to Assist as a tool catalog per satellite, executes the
server's tool calls through Home Assistant's LLM API, forwards announcements,
``start_conversation`` requests, typed conversation turns and timer events,
and shows each satellite's state. Audio never passes through Home Assistant.
Topics are in :mod:`.ha_topics`; the reference is docs/mqtt-protocol.md.

Correlation: every request carries an id (``call_id`` / ``request_id``) that
its answer repeats. Ids are short printable strings chosen by the sender.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import ProtocolError
from .ids import check_node_id
from .message import Message

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def check_request_id(value: str) -> str:
    """Correlation ids: 1–128 of ``A-Z a-z 0-9 _ . : -`` (an OpenAI ``call_…`` id fits)."""
    if not isinstance(value, str) or not _REQUEST_ID_RE.match(value):
        raise ProtocolError("request id must be 1-128 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'", id=value)
    return value


def _check_optional_node(value: str | None) -> None:
    if value is not None:
        check_node_id(value)


# -- the tool catalog ------------------------------------------------------------
@dataclass(frozen=True)
class ToolDefinition:
    """One tool as an OpenAI Realtime function definition (``session.tools`` item)."""

    name: str
    description: str = ""
    #: JSON Schema of the arguments (an ``object`` schema).
    parameters: dict[str, Any] | None = None
    type: str = "function"

    def __post_init__(self) -> None:
        if not self.name:
            raise ProtocolError("tool name must not be empty")


@dataclass(frozen=True)
class ExposedEntity:
    """One entity Home Assistant exposes to Assist, so a brain without the YAML prompt knows its names."""

    entity_id: str
    name: str
    domain: str
    aliases: tuple[str, ...] = ()
    area: str | None = None
    floor: str | None = None
    device_class: str | None = None


@dataclass(frozen=True)
class ToolCatalog(Message):
    """HA → server, retained: the tools of one satellite (or of device-less use).

    Built from Home Assistant's LLM API with the satellite's device as context,
    so device-dependent tools (timers) and its area appear. ``api_prompt`` is
    Home Assistant's own instructions for those tools (it names every exposed
    entity). Republished when exposed entities or areas change; ``revision``
    changes with the content. An empty retained payload removes the catalog.
    """

    type: ClassVar[str] = "tool-catalog"

    tools: tuple[ToolDefinition, ...]
    #: The satellite this catalog belongs to; absent for the device-less catalog.
    satellite_id: str | None = None
    api_prompt: str | None = None
    #: The Home Assistant LLM API(s) the tools come from (``assist`` by default).
    llm_api: tuple[str, ...] = ()
    language: str | None = None
    entities: tuple[ExposedEntity, ...] = ()
    areas: tuple[str, ...] = ()
    revision: str | None = None

    def __post_init__(self) -> None:
        _check_optional_node(self.satellite_id)
        names = [tool.name for tool in self.tools]
        if len(names) != len(set(names)):
            raise ProtocolError("tool names in a catalog must be unique", tools=",".join(names))

    def tool(self, name: str) -> ToolDefinition | None:
        return next((tool for tool in self.tools if tool.name == name), None)


# -- tool calls ------------------------------------------------------------------
class ToolErrorCode:
    """Values of :attr:`ToolResult.error`."""

    UNKNOWN_TOOL = "unknown-tool"
    INVALID_ARGUMENTS = "invalid-arguments"
    #: The target exists but is not exposed to Assist, or nothing matched.
    NO_MATCH = "no-match"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class ToolCall(Message):
    """Server → HA: run one tool of a satellite's catalog."""

    type: ClassVar[str] = "tool-call"

    call_id: str
    name: str
    arguments: dict[str, Any]
    satellite_id: str | None = None
    #: The user's words, for Home Assistant's trace (``LLMContext.user_prompt`` where it exists).
    text: str | None = None
    language: str | None = None

    def __post_init__(self) -> None:
        check_request_id(self.call_id)
        _check_optional_node(self.satellite_id)


@dataclass(frozen=True)
class ToolResult(Message):
    """HA → server: the answer to one :class:`ToolCall` (same ``call_id``).

    On success ``result`` is Home Assistant's JSON result and ``speech`` its
    response speech when it has one. On failure ``error`` is a
    :class:`ToolErrorCode` and ``message`` a sentence a person can hear
    ("I can't control the garage door"), never a Python repr.
    """

    type: ClassVar[str] = "tool-result"

    call_id: str
    result: dict[str, Any] | None = None
    speech: str | None = None
    error: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        check_request_id(self.call_id)

    @property
    def ok(self) -> bool:
        return self.error is None


# -- making a satellite speak ------------------------------------------------------
@dataclass(frozen=True)
class Announce(Message):
    """HA → server: speak ``text`` on a satellite (``assist_satellite.announce``, ``hearth.announce``).

    The server answers with :class:`RequestDone` once the satellite finished
    playing (or could not).
    """

    type: ClassVar[str] = "announce"

    request_id: str
    satellite_id: str
    text: str
    #: Play the short chime before the text.
    preannounce: bool = True

    def __post_init__(self) -> None:
        check_request_id(self.request_id)
        check_node_id(self.satellite_id)


@dataclass(frozen=True)
class StartConversation(Message):
    """HA → server: speak ``text`` on a satellite, then listen and answer (no wake word).

    ``extra_system_prompt`` is added to the instructions of that conversation.
    Answered with :class:`RequestDone` when the prompt has been played.
    """

    type: ClassVar[str] = "start-conversation"

    request_id: str
    satellite_id: str
    text: str | None = None
    extra_system_prompt: str | None = None
    preannounce: bool = True

    def __post_init__(self) -> None:
        check_request_id(self.request_id)
        check_node_id(self.satellite_id)


@dataclass(frozen=True)
class RequestDone(Message):
    """Server → HA: an :class:`Announce` or :class:`StartConversation` finished."""

    type: ClassVar[str] = "request-done"

    request_id: str
    #: A :class:`ToolErrorCode`-style code when it failed (e.g. ``unavailable``).
    error: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        check_request_id(self.request_id)

    @property
    def ok(self) -> bool:
        return self.error is None


# -- the conversation agent ----------------------------------------------------------
@dataclass(frozen=True)
class ConversationRequest(Message):
    """HA → server: one typed (or otherwise transcribed) turn for the Hearth conversation agent.

    Tools run as usual (``tool-call`` to HA with the catalog of
    ``satellite_id``, or the device-less catalog).
    """

    type: ClassVar[str] = "conversation-request"

    request_id: str
    text: str
    conversation_id: str | None = None
    language: str | None = None
    satellite_id: str | None = None
    extra_system_prompt: str | None = None

    def __post_init__(self) -> None:
        check_request_id(self.request_id)
        _check_optional_node(self.satellite_id)


@dataclass(frozen=True)
class ConversationResponse(Message):
    """Server → HA: the answer to one :class:`ConversationRequest`."""

    type: ClassVar[str] = "conversation-response"

    request_id: str
    text: str
    conversation_id: str | None = None
    #: The answer asks something back (Home Assistant keeps the mic open).
    continue_conversation: bool = False
    error: str | None = None

    def __post_init__(self) -> None:
        check_request_id(self.request_id)


# -- timers ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Timer(Message):
    """Fields every timer event has; Home Assistant's timer handler for one satellite sends them."""

    satellite_id: str
    timer_id: str

    def __post_init__(self) -> None:
        check_node_id(self.satellite_id)
        check_request_id(self.timer_id)


@dataclass(frozen=True)
class TimerStarted(_Timer):
    """HA → server: a timer started by voice on this satellite."""

    type: ClassVar[str] = "timer-started"

    total_seconds: int = 0
    name: str | None = None


@dataclass(frozen=True)
class TimerUpdated(_Timer):
    """HA → server: a timer was paused, resumed, lengthened or shortened."""

    type: ClassVar[str] = "timer-updated"

    seconds_left: int = 0
    is_active: bool = True
    total_seconds: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class TimerCancelled(_Timer):
    """HA → server: a timer was cancelled ("cancel the timer")."""

    type: ClassVar[str] = "timer-cancelled"

    name: str | None = None


@dataclass(frozen=True)
class TimerFinished(_Timer):
    """HA → server: a timer rang. The server plays a sound and a spoken line on the satellite."""

    type: ClassVar[str] = "timer-finished"

    total_seconds: int | None = None
    name: str | None = None


# -- satellite settings and state ------------------------------------------------------
class WakeSensitivity:
    """Values of :attr:`SatelliteSettings.wake_sensitivity` (a satellite maps them to thresholds)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    ALL = (LOW, MEDIUM, HIGH)


@dataclass(frozen=True)
class SatelliteSettings(Message):
    """HA → satellite and server, retained: the settings chosen in Home Assistant.

    Retained so a satellite that restarts gets them back. Mute is also sent as
    the satellite's ``mute`` command, which every satellite acts on at once.
    """

    type: ClassVar[str] = "satellite-settings"

    satellite_id: str
    muted: bool | None = None
    wake_sensitivity: str | None = None

    def __post_init__(self) -> None:
        check_node_id(self.satellite_id)
        if self.wake_sensitivity is not None and self.wake_sensitivity not in WakeSensitivity.ALL:
            raise ProtocolError(
                "wake_sensitivity must be one of " + ", ".join(WakeSensitivity.ALL), value=self.wake_sensitivity
            )


@dataclass(frozen=True)
class SatelliteActivity(Message):
    """Server → HA, retained: what a satellite last heard and said, for Home Assistant's entities.

    Presence, state and mute come from the satellite's own retained
    ``satellite-status``; this adds what only the server knows.
    """

    type: ClassVar[str] = "satellite-activity"

    satellite_id: str
    transcript: str | None = None
    response: str | None = None
    conversation_id: str | None = None

    def __post_init__(self) -> None:
        check_node_id(self.satellite_id)


@dataclass(frozen=True)
class IntegrationStatus(Message):
    """HA → server, retained: the Home Assistant integration's presence.

    ``online`` when the integration is set up, ``offline`` when it unloads.
    Home Assistant's shared MQTT client has no last will of its own, so a
    crashed Home Assistant still looks online here; the server's tool-call
    timeout covers that case.
    """

    type: ClassVar[str] = "ha-status"

    availability: str
    version: str | None = None
    ha_version: str | None = None

    @property
    def online(self) -> bool:
        return self.availability == "online"
