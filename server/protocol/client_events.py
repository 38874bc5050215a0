"""The eleven GA client events (SDK `RealtimeClientEvent`) and their parser."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from . import json_limits
from .errors import RealtimeProtocolError, from_validation_error, json_type_name, quote
from .items import ConversationItem, ResponseInput
from .session_config import AudioFormat, Tool, ToolChoice
from .types import Int, JsonValue

#: Longest client event (characters). Upstream takes appends of up to 15 MiB of base64 audio.
MAX_EVENT_CHARS = 16 * 1024 * 1024
#: Deepest nesting of arrays and objects in one event.
MAX_EVENT_DEPTH = json_limits.MAX_DEPTH


class _ClientEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    event_id: str | None = None


class SessionUpdate(_ClientEvent):
    type: Literal["session.update"]
    #: Validated by the session against its current state (partial merge).
    session: dict[str, Any]


class InputAudioBufferAppend(_ClientEvent):
    type: Literal["input_audio_buffer.append"]
    audio: str


class InputAudioBufferCommit(_ClientEvent):
    type: Literal["input_audio_buffer.commit"]


class InputAudioBufferClear(_ClientEvent):
    type: Literal["input_audio_buffer.clear"]


class ConversationItemCreate(_ClientEvent):
    type: Literal["conversation.item.create"]
    item: ConversationItem
    previous_item_id: str | None = None


class ConversationItemRetrieve(_ClientEvent):
    type: Literal["conversation.item.retrieve"]
    item_id: str


class ConversationItemTruncate(_ClientEvent):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: Annotated[Int, Field(ge=0)]
    audio_end_ms: Annotated[Int, Field(ge=0)]


class ConversationItemDelete(_ClientEvent):
    type: Literal["conversation.item.delete"]
    item_id: str


class ResponseAudioOutput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    format: AudioFormat | None = None
    voice: str | dict[str, str] | None = None


class ResponseAudio(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    output: ResponseAudioOutput | None = None


class ResponseParams(BaseModel):
    """`RealtimeResponseCreateParams`: per-response overrides of the session."""

    model_config = ConfigDict(extra="forbid", strict=True)
    conversation: Literal["auto", "none"] | None = None
    input: list[ResponseInput] | None = None
    instructions: str | None = None
    output_modalities: Annotated[list[Literal["text", "audio"]], Field(min_length=1, max_length=1)] | None = None
    audio: ResponseAudio | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    max_output_tokens: Annotated[Int, Field(ge=1, le=4096)] | Literal["inf"] | None = None
    metadata: Annotated[dict[str, Annotated[str, Field(max_length=512)]], Field(max_length=16)] | None = None
    prompt: dict[str, JsonValue] | None = None
    reasoning: dict[str, JsonValue] | None = None
    parallel_tool_calls: bool | None = None


class ResponseCreate(_ClientEvent):
    type: Literal["response.create"]
    response: ResponseParams | None = None


class ResponseCancel(_ClientEvent):
    type: Literal["response.cancel"]
    response_id: str | None = None


class OutputAudioBufferClear(_ClientEvent):
    type: Literal["output_audio_buffer.clear"]


ClientEvent = Annotated[
    Union[
        SessionUpdate,
        InputAudioBufferAppend,
        InputAudioBufferCommit,
        InputAudioBufferClear,
        ConversationItemCreate,
        ConversationItemRetrieve,
        ConversationItemTruncate,
        ConversationItemDelete,
        ResponseCreate,
        ResponseCancel,
        OutputAudioBufferClear,
    ],
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[ClientEvent] = TypeAdapter(ClientEvent)
CLIENT_EVENT_TYPES: tuple[str, ...] = tuple(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in ClientEvent.__origin__.__args__  # type: ignore[attr-defined]
)


def parse_client_event(text: str | bytes) -> ClientEvent:
    """Decode one text frame. Raises RealtimeProtocolError with upstream codes.

    Never anything else: deep nesting, NaN, huge integers and lone surrogates are
    `invalid_json`, so a hostile frame costs the client one `error` event and nothing more.
    """
    try:
        data = json_limits.loads(text, max_depth=MAX_EVENT_DEPTH, max_chars=MAX_EVENT_CHARS)
    except json.JSONDecodeError as err:
        raise RealtimeProtocolError(
            message=f"The server could not parse the event as JSON: {err.msg} (line {err.lineno} column {err.colno}).",
            code="invalid_json",
        ) from None
    except json_limits.JsonLimitError as err:
        raise RealtimeProtocolError(
            message=f"The server could not accept the event as JSON: {err.reason}.", code="invalid_json",
            event_id=_event_id(err.value)) from None
    if not isinstance(data, dict):
        raise RealtimeProtocolError(message="Expected a JSON object.", code="invalid_event")
    event_id = _event_id(data)
    kind = data.get("type")
    if kind is None:
        raise RealtimeProtocolError(
            message="Missing required parameter: 'type'.", code="missing_required_parameter", param="type", event_id=event_id
        )
    if not isinstance(kind, str):
        raise RealtimeProtocolError(
            message=f"Invalid type for 'type': expected a string, but got {json_type_name(kind)} instead.",
            code="invalid_type", param="type", event_id=event_id)
    if kind not in CLIENT_EVENT_TYPES:
        raise RealtimeProtocolError(
            message=f"Invalid value: '{quote(kind)}'. Supported values are: "
            + ", ".join(f"'{t}'" for t in CLIENT_EVENT_TYPES) + ".",
            code="invalid_value",
            param="type",
            event_id=event_id,
        )
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as err:
        error = from_validation_error(err, data, "")
        error.event_id = event_id
        raise error from None



def _event_id(data: Any) -> str | None:
    event_id = data.get("event_id") if isinstance(data, dict) else None
    return event_id if isinstance(event_id, str) else None
