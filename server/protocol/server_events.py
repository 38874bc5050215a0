"""Server events the session emits (a subset of SDK `RealtimeServerEvent`, exact names).

Every event gets a fresh `event_id`. Items inside events are plain dicts
already in wire form (audio bytes removed), because the conversation owns them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from .ids import new_id


class ServerEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    TYPE: ClassVar[str]
    event_id: str = Field(default_factory=lambda: new_id("event"))

    def wire(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["type"] = self.TYPE
        return data


def _event(type_: str) -> type[ServerEvent]:
    """Base class factory so each event's type string appears exactly once."""

    class _Base(ServerEvent):
        TYPE: ClassVar[str] = type_

    return _Base


class ErrorDetail(BaseModel):
    type: str
    code: str | None
    message: str
    param: str | None
    event_id: str | None


class Error(_event("error")):
    error: ErrorDetail


class SessionCreated(_event("session.created")):
    session: dict[str, Any]


class SessionUpdated(_event("session.updated")):
    session: dict[str, Any]


class ConversationItemAdded(_event("conversation.item.added")):
    previous_item_id: str | None
    item: dict[str, Any]


class ConversationItemDone(_event("conversation.item.done")):
    previous_item_id: str | None
    item: dict[str, Any]


class ConversationItemRetrieved(_event("conversation.item.retrieved")):
    item: dict[str, Any]


class ConversationItemDeleted(_event("conversation.item.deleted")):
    item_id: str


class ConversationItemTruncated(_event("conversation.item.truncated")):
    item_id: str
    content_index: int
    audio_end_ms: int


class TranscriptionDelta(_event("conversation.item.input_audio_transcription.delta")):
    item_id: str
    content_index: int
    delta: str


class TranscriptionCompleted(_event("conversation.item.input_audio_transcription.completed")):
    item_id: str
    content_index: int
    transcript: str
    usage: dict[str, Any]


class TranscriptionFailed(_event("conversation.item.input_audio_transcription.failed")):
    item_id: str
    content_index: int
    error: dict[str, Any]


class SpeechStarted(_event("input_audio_buffer.speech_started")):
    item_id: str
    audio_start_ms: int


class SpeechStopped(_event("input_audio_buffer.speech_stopped")):
    item_id: str
    audio_end_ms: int


class BufferCommitted(_event("input_audio_buffer.committed")):
    item_id: str
    previous_item_id: str | None


class BufferCleared(_event("input_audio_buffer.cleared")):
    pass


class BufferTimeoutTriggered(_event("input_audio_buffer.timeout_triggered")):
    item_id: str
    audio_start_ms: int
    audio_end_ms: int


class OutputAudioBufferStarted(_event("output_audio_buffer.started")):
    response_id: str


class OutputAudioBufferStopped(_event("output_audio_buffer.stopped")):
    response_id: str


class OutputAudioBufferCleared(_event("output_audio_buffer.cleared")):
    response_id: str


class ResponseCreated(_event("response.created")):
    response: dict[str, Any]


class ResponseDone(_event("response.done")):
    response: dict[str, Any]


class OutputItemAdded(_event("response.output_item.added")):
    response_id: str
    output_index: int
    item: dict[str, Any]


class OutputItemDone(_event("response.output_item.done")):
    response_id: str
    output_index: int
    item: dict[str, Any]


class _PartEvent(ServerEvent):
    response_id: str
    item_id: str
    output_index: int
    content_index: int


class ContentPartAdded(_PartEvent, _event("response.content_part.added")):
    part: dict[str, Any]


class ContentPartDone(_PartEvent, _event("response.content_part.done")):
    part: dict[str, Any]


class OutputAudioDelta(_PartEvent, _event("response.output_audio.delta")):
    delta: str


class OutputAudioDone(_PartEvent, _event("response.output_audio.done")):
    pass


class OutputAudioTranscriptDelta(_PartEvent, _event("response.output_audio_transcript.delta")):
    delta: str


class OutputAudioTranscriptDone(_PartEvent, _event("response.output_audio_transcript.done")):
    transcript: str


class OutputTextDelta(_PartEvent, _event("response.output_text.delta")):
    delta: str


class OutputTextDone(_PartEvent, _event("response.output_text.done")):
    text: str


class FunctionCallArgumentsDelta(_event("response.function_call_arguments.delta")):
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    delta: str


class FunctionCallArgumentsDone(_event("response.function_call_arguments.done")):
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: str


class RateLimit(BaseModel):
    name: str
    limit: int
    remaining: int
    reset_seconds: float


class RateLimitsUpdated(_event("rate_limits.updated")):
    rate_limits: list[RateLimit]
