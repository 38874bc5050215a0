"""The verbs between the session and the outside world.

The session package never imports a transport, an engine or a network library:
it talks to these small interfaces, and the composition root (`hearth.server.app`)
plugs concrete implementations in.

* transport -> session: the session port (`RealtimeSession.submit`, `append_pcm`,
  `end_input`, `report_playback`), with `Playback` as its one data type;
* session -> transport: `EventSink` (typed server events) and, for transports with a
  media track, `MediaSink` (reply audio at the transport's own rate);
* session -> engine: `SpeechEngine.open()` gives each session an `EngineSession`,
  whose VAD and transcription are optional capabilities; an engine that hears the
  input audio itself (the relay) offers a `Listener` instead and reports its turns
  back through `InputEvents`;
* session -> tools: a `Toolbox` that lists the server-side tools of this session and
  executes their calls.

Audio crossing these interfaces is mono PCM as numpy arrays.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..protocol.server_events import ServerEvent

#: Rate of all audio the session hands to VAD and speech-to-text.
PIPELINE_RATE = 16_000


# --------------------------------------------------------------------------- transports


class EventSink(Protocol):
    """Where a session's server events go: the transport's side."""

    def send(self, event: ServerEvent) -> None:
        """Queue one server event for delivery, in order (a WebSocket serializes `event.wire()`)."""

    def close(self, code: int, reason: str) -> None:
        """End the connection after already-queued events are delivered."""


@dataclass(frozen=True)
class ReplyAudio:
    """Reply speech for a media track: int16 mono at the session's `media_rate`."""

    response_id: str
    item_id: str
    pcm: np.ndarray
    rate: int


class MediaSink(EventSink, Protocol):
    """A sink with a media track (MQTT satellites, WebRTC): reply audio bypasses the events."""

    def reply_audio(self, audio: ReplyAudio) -> None:
        """Play this chunk after the ones before it."""


@dataclass(frozen=True)
class Playback:
    """What a transport's listener actually heard of one response's audio.

    `played_ms` counts from the start of the response's spoken item; `finished` says
    playback of the response has ended, either at its end or cut off (barge-in, a
    stop). The session truncates the unheard part from the conversation.
    """

    response_id: str
    played_ms: float
    finished: bool
    item_id: str | None = None


# --------------------------------------------------------------------------- VAD and STT


class VoiceActivityModel(Protocol):
    """A stateful speech scorer; each engine session has its own."""

    #: Samples per call at 16 kHz (Silero: 512 = 32 ms).
    frame_samples: int

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability of one float32 frame of exactly `frame_samples` samples."""

    def reset(self) -> None:
        """Forget the recurrent state (new stream)."""


@dataclass(frozen=True)
class TranscriptionRequest:
    #: float32 mono at PIPELINE_RATE, range [-1, 1].
    audio: np.ndarray
    language: str | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class Transcript:
    text: str
    #: Seconds of audio transcribed (for `usage: {type: "duration"}`).
    duration_s: float
    language: str | None = None


class Transcriber(Protocol):
    async def transcribe(self, request: TranscriptionRequest) -> Transcript:
        """Transcribe off the event loop. Raises TranscriptionError on failure."""


class TranscriptionError(Exception):
    """A transcription that failed for a reason worth telling the client."""


# --------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class ItemAudio:
    """An item's audio: int16 mono at `rate`."""

    pcm: np.ndarray
    rate: int


@dataclass(frozen=True)
class ContextItem:
    """One conversation item as an engine sees it.

    `type` is the Realtime item type. For messages, `text` holds the text or the audio
    transcript of all content parts joined (a truncated assistant turn holds only the
    words that were heard); `audio` is the item's audio where it has some, for engines
    that hear audio themselves.
    """

    type: Literal["message", "function_call", "function_call_output"]
    id: str
    role: Literal["user", "assistant", "system"] | None = None
    text: str = ""
    name: str | None = None
    arguments: str | None = None
    call_id: str | None = None
    output: str | None = None
    audio: ItemAudio | None = None
    #: True for an assistant message cut off by the listener.
    truncated: bool = False


@dataclass(frozen=True)
class ResponseRequest:
    """Everything an engine needs to produce one response."""

    instructions: str
    items: list[ContextItem]
    #: Realtime function tool definitions: {"type": "function", "name", "description", "parameters"}.
    tools: list[dict[str, Any]]
    #: "auto" | "none" | "required" | {"type": "function", "name": ...}
    tool_choice: str | dict[str, Any]
    output_modalities: list[str]
    voice: str
    speed: float
    max_output_tokens: int | None = None
    metadata: dict[str, str] | None = None
    temperature: float | None = None
    #: Speak exactly this text instead of thinking (the session's own apologies).
    say: str | None = None


@dataclass(frozen=True)
class OutputText:
    """A piece of the reply's text (the transcript when audio is produced)."""

    delta: str


@dataclass(frozen=True)
class OutputAudio:
    """A chunk of reply speech: int16 mono at `rate`."""

    pcm: np.ndarray
    rate: int


@dataclass(frozen=True)
class OutputFunctionCallDelta:
    """A piece of a function call's arguments, as the model streams them.

    The first piece of a `call_id` opens the call's item; the `OutputFunctionCall` with the
    same `call_id` closes it. Pieces of parallel calls may interleave; a call that never gets
    its `OutputFunctionCall` (a cancel) ends `incomplete` and is never run.
    """

    call_id: str
    name: str
    #: The next piece of the JSON-encoded arguments (may be empty for the opening piece).
    delta: str


@dataclass(frozen=True)
class OutputFunctionCall:
    """A complete function call; after `OutputFunctionCallDelta` pieces of the same `call_id`, it closes them."""

    name: str
    #: JSON-encoded arguments.
    arguments: str
    #: The model's own call id, kept on the wire; None lets the session make one.
    call_id: str | None = None


@dataclass(frozen=True)
class OutputUsage:
    """Token counts the engine measured itself (an LLM endpoint's own usage)."""

    input_tokens: int
    output_tokens: int


ResponseChunk = OutputText | OutputAudio | OutputFunctionCallDelta | OutputFunctionCall | OutputUsage


class EngineFailure(Exception):
    """An engine could not finish a reply for a reason the client can act on (an upstream error).

    The response ends with status `failed` and `status_details.error` holding `code` and
    `message`; the session goes on.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Declined:
    """A brain's typed "not mine": no match, with the reason and what to say if nobody else answers."""

    reason: str
    reply: str


@dataclass(frozen=True)
class EngineSessionInfo:
    """What an engine may know about the session it serves."""

    session_id: str
    #: "realtime" or "transcription".
    kind: str = "realtime"
    #: The satellite this session belongs to, if any.
    satellite_id: str | None = None


MarkCallback = Callable[[str, float], None]


class InputEvents(Protocol):
    """What an engine that hears the input audio itself tells the session: its turns.

    The session turns these into exactly the events its own turn detection sends
    (`input_audio_buffer.speech_started/stopped/committed`, the user item, its
    transcription) and answers the turn. Positions are milliseconds of all input audio
    the session appended, the clock `audio_start_ms` counts on.
    """

    def speech_started(self, audio_start_ms: int) -> str | None:
        """Speech began (barge-in); returns the id of the user item it will become (None: ignored)."""

    def speech_stopped(self, audio_end_ms: int) -> None:
        """Speech ended; a commit follows."""

    def committed(self) -> str | None:
        """The engine committed the turn it heard; returns the user item's id (None: nothing to commit here)."""

    def transcribed(self, item_id: str, text: str) -> None:
        """The engine's transcript of a committed user item."""

    def transcription_failed(self, item_id: str, message: str) -> None:
        """The engine could not transcribe a committed user item."""

    def failed(self, code: str, message: str) -> None:
        """The engine lost the input (its upstream went away): the client is told, the turn is dropped."""


class Listener(Protocol):
    """An engine session's own ears: input audio goes to it, turn detection and transcription are its.

    The session still keeps the buffer (for commits, items' audio and retrieve) and tells
    the listener what the client did with it.
    """

    def listen(self, events: InputEvents, turn_detection: dict[str, Any] | None,
               transcription: dict[str, Any] | None) -> None:
        """Where turns go, and the session's `turn_detection` / `transcription` (wire form; again on each update)."""

    def append(self, pcm: np.ndarray, rate: int) -> None:
        """int16 mono input audio as the client sent it, in order."""

    def commit(self, item_id: str) -> None:
        """The session committed the buffer itself as `item_id` (a manual commit, the idle timeout, end of input)."""

    def clear(self) -> None:
        """The client cleared the input buffer."""


class EngineSession(Protocol):
    """One conversation's engine state. VAD, transcription and a listener are optional capabilities."""

    #: A VAD model for the session's turn detection; None when the engine hears audio itself.
    vad: VoiceActivityModel | None
    #: Speech-to-text for input audio; None when the engine needs no transcripts.
    transcriber: Transcriber | None
    #: The engine's own turn detection and transcription (the relay's upstream); None: the session's.
    listener: Listener | None

    def respond(self, request: ResponseRequest, *, on_mark: MarkCallback | None = None) -> AsyncIterator[ResponseChunk]:
        """Stream the reply. Cancelling the iteration must stop all work promptly.

        `on_mark(stage, monotonic_time)` reports stage timings. With "audio" in
        `output_modalities`, each OutputText is followed by the OutputAudio that speaks
        it; with ["text"] no audio is produced.
        """

    def close(self) -> None:
        """Free the session's state (the session is over)."""


class SpeechEngine(Protocol):
    """Produces the assistant's turns for every session; the composition root owns it."""

    async def warm_up(self) -> None:
        """Load and exercise models so the first turn is as fast as any other."""

    def open(self, info: EngineSessionInfo) -> EngineSession:
        """A new engine session for one conversation."""

    async def close(self) -> None:
        """Release models and workers at server shutdown."""


# --------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class ToolCall:
    name: str
    #: JSON-encoded arguments, as the engine produced them.
    arguments: str
    call_id: str
    session_id: str


@dataclass(frozen=True)
class ToolResult:
    """A server-side tool's answer: `output` goes into the `function_call_output` item."""

    output: str
    #: What to say about it, when the tool's owner phrased it (Home Assistant's speech).
    speech: str | None = None
    #: Set when the call failed; the session speaks `speech` or a short apology.
    error: str | None = None


class ToolTimeout(Exception):
    """A server-side tool did not answer in time."""


class Toolbox(Protocol):
    """The server-side tools of one session (Home Assistant's, configured ones)."""

    def definitions(self) -> Sequence[dict[str, Any]]:
        """Realtime function definitions to offer the engine beside the client's tools."""

    def instructions(self) -> str | None:
        """Text the tools' owner wants in the instructions (Home Assistant's API prompt)."""

    def handles(self, name: str) -> bool:
        """Whether a call of this name runs on the server."""

    async def call(self, call: ToolCall) -> ToolResult:
        """Run one call; raises ToolTimeout, or returns a result with `error` set on failure."""


class NoTools:
    """A toolbox with nothing in it (sessions with client tools only)."""

    def definitions(self) -> Sequence[dict[str, Any]]:
        return ()

    def instructions(self) -> str | None:
        return None

    def handles(self, name: str) -> bool:
        return False

    async def call(self, call: ToolCall) -> ToolResult:
        raise LookupError(f"no server-side tool {call.name!r}")
