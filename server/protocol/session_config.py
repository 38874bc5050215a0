"""The GA Realtime session object (`type: "realtime"` and `type: "transcription"`).

Field names follow the `openai` SDK's generated types exactly
(`openai/types/realtime/realtime_session_create_request.py` and friends).
Unknown fields are rejected (`extra="forbid"`) because upstream rejects the
whole `session.update` on one unknown field, and clients rely on that.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from .types import Int, JsonValue
from .voices import MAX_SPEED, MIN_SPEED


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# ---------------------------------------------------------------- audio formats


class AudioPCM(_Strict):
    type: Literal["audio/pcm"] = "audio/pcm"
    # Upstream accepts only 24 kHz and names a lower rate `integer_below_min_value`.
    rate: Annotated[Int, Field(ge=24000, le=24000)] = 24000


class AudioPCMU(_Strict):
    type: Literal["audio/pcmu"]


class AudioPCMA(_Strict):
    type: Literal["audio/pcma"]


AudioFormat = Annotated[Union[AudioPCM, AudioPCMU, AudioPCMA], Field(discriminator="type")]


# ---------------------------------------------------------------- input


class NoiseReduction(_Strict):
    type: Literal["near_field", "far_field"] | None = None
    strength: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class AudioTranscription(_Strict):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    languages: list[str] | None = None
    keywords: list[str] | None = None
    delay: JsonValue | None = None


class ServerVad(_Strict):
    type: Literal["server_vad"]
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    prefix_padding_ms: Annotated[Int, Field(ge=0, le=10_000)] = 300
    silence_duration_ms: Annotated[Int, Field(ge=0, le=10_000)] = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: Annotated[Int, Field(ge=1000, le=600_000)] | None = None


class SemanticVad(_Strict):
    type: Literal["semantic_vad"]
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True


TurnDetection = Annotated[Union[ServerVad, SemanticVad], Field(discriminator="type")]


class AudioInput(_Strict):
    format: AudioFormat = Field(default_factory=AudioPCM)
    noise_reduction: NoiseReduction | None = None
    transcription: AudioTranscription | None = None
    turn_detection: TurnDetection | None = Field(default_factory=lambda: ServerVad(type="server_vad"))


class VoiceId(_Strict):
    id: str


class AudioOutput(_Strict):
    format: AudioFormat = Field(default_factory=AudioPCM)
    voice: str | VoiceId = "alloy"
    speed: Annotated[float, Field(ge=MIN_SPEED, le=MAX_SPEED)] = 1.0


class Audio(_Strict):
    input: AudioInput = Field(default_factory=AudioInput)
    output: AudioOutput = Field(default_factory=AudioOutput)


class TranscriptionAudioInput(_Strict):
    format: AudioFormat = Field(default_factory=AudioPCM)
    noise_reduction: NoiseReduction | None = None
    transcription: AudioTranscription | None = None
    turn_detection: TurnDetection | None = Field(default_factory=lambda: ServerVad(type="server_vad"))


class TranscriptionAudio(_Strict):
    input: TranscriptionAudioInput = Field(default_factory=TranscriptionAudioInput)


# ---------------------------------------------------------------- tools


class FunctionTool(_Strict):
    type: Literal["function"] = "function"
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")]
    description: str | None = None
    parameters: dict[str, JsonValue] | None = None


class McpTool(BaseModel):
    """Accepted so clients that list MCP servers are not rejected; see docs (not executed)."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["mcp"]
    server_label: str
    __pydantic_extra__: dict[str, JsonValue]


Tool = Annotated[Union[FunctionTool, McpTool], Field(discriminator="type")]


class ToolChoiceFunction(_Strict):
    type: Literal["function"]
    name: str


class ToolChoiceMcp(_Strict):
    type: Literal["mcp"]
    server_label: str
    name: str | None = None


ToolChoice = Union[
    Literal["auto", "none", "required"],
    Annotated[Union[ToolChoiceFunction, ToolChoiceMcp], Field(discriminator="type")],
]


class TracingConfig(_Strict):
    workflow_name: str | None = None
    group_id: str | None = None
    metadata: JsonValue | None = None


class RetentionRatio(_Strict):
    type: Literal["retention_ratio"]
    retention_ratio: Annotated[float, Field(ge=0.0, le=1.0)]
    token_limits: dict[str, JsonValue] | None = None


class Prompt(_Strict):
    id: str
    version: str | None = None
    variables: dict[str, JsonValue] | None = None


class Reasoning(_Strict):
    effort: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None


# ---------------------------------------------------------------- sessions


class _EchoedSession(_Strict):
    def wire(self) -> dict[str, Any]:
        """The session as `session.created` / `session.updated` carry it.

        Unset optional fields are left out, as upstream does (pipecat's parser, for one,
        cannot take `"language": null`). Only `audio.input.turn_detection` keeps its
        `null`: there it means "manual turns", where leaving it out would mean the default
        (server VAD). Client data (tool schemas, metadata) is echoed as sent, nulls included.
        """
        data = self.model_dump(mode="json", exclude_none=True)
        audio_input = data.get("audio", {}).get("input")
        if audio_input is not None:
            audio_input.setdefault("turn_detection", None)  # only left out when it was None
        return data


class RealtimeSession(_EchoedSession):
    """The effective state of a speech-to-speech session."""

    type: Literal["realtime"]
    object: Literal["realtime.session"] = "realtime.session"
    id: str = ""
    model: str = "hearth"
    output_modalities: list[Literal["text", "audio"]] = Field(default_factory=lambda: ["audio"], min_length=1, max_length=1)
    instructions: str = ""
    audio: Audio = Field(default_factory=Audio)
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None
    tools: list[Tool] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    max_output_tokens: Annotated[Int, Field(ge=1, le=4096)] | Literal["inf"] = "inf"
    tracing: Literal["auto"] | TracingConfig | None = None
    truncation: Literal["auto", "disabled"] | RetentionRatio = "auto"
    prompt: Prompt | None = None
    reasoning: Reasoning | None = None
    parallel_tool_calls: bool | None = None
    expires_at: Int = 0


class TranscriptionSession(_EchoedSession):
    """A transcription-only session (`?intent=transcription`)."""

    type: Literal["transcription"]
    object: Literal["realtime.transcription_session"] = "realtime.transcription_session"
    id: str = ""
    audio: TranscriptionAudio = Field(default_factory=TranscriptionAudio)
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None
    expires_at: Int = 0


#: Keys whose values merge recursively on `session.update`; every other value is replaced whole.
MERGED_KEYS = frozenset({"audio", "input", "output"})

#: Fields the server owns; a client may send them (agents echo them) but cannot change them.
READ_ONLY = frozenset({"id", "object", "expires_at"})


def merge_update(current: dict[str, Any], update: dict[str, Any], _depth: int = 0) -> dict[str, Any]:
    """Partial `session.update` merge: nested audio config merges, leaves replace."""
    merged = dict(current)
    for key, value in update.items():
        if _depth == 0 and key in READ_ONLY:
            continue
        if key in MERGED_KEYS and isinstance(value, dict) and isinstance(current.get(key), dict):
            merged[key] = merge_update(current[key], value, _depth + 1)
        else:
            merged[key] = value
    return merged
