"""The few verbs the session engine needs from the outside world.

The session package never imports a transport, an engine or a network library:
it talks to these small interfaces, and the composition root (`hearth.server.app`)
plugs concrete implementations in. Audio crossing these interfaces is always
mono PCM as numpy arrays; the session owns wire encodings and resampling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

#: Rate of all audio the session hands to VAD and speech-to-text.
PIPELINE_RATE = 16_000


# --------------------------------------------------------------------------- VAD


class VoiceActivityModel(Protocol):
    """A stateful speech scorer; the session creates one per conversation."""

    #: Samples per call at 16 kHz (Silero: 512 = 32 ms).
    frame_samples: int

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability of one float32 frame of exactly `frame_samples` samples."""

    def reset(self) -> None:
        """Forget the recurrent state (new stream)."""


# --------------------------------------------------------------------------- STT


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
class ContextItem:
    """One conversation item as an engine sees it (transcripts filled in, no audio bytes).

    `type` is the Realtime item type: "message", "function_call" or
    "function_call_output". For messages, `text` holds the text or the audio
    transcript of all content parts joined.
    """

    type: Literal["message", "function_call", "function_call_output"]
    id: str
    role: Literal["user", "assistant", "system"] | None = None
    text: str = ""
    name: str | None = None
    arguments: str | None = None
    call_id: str | None = None
    output: str | None = None


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
class OutputFunctionCall:
    name: str
    #: JSON-encoded arguments.
    arguments: str


ResponseChunk = OutputText | OutputAudio | OutputFunctionCall


class SpeechEngine(Protocol):
    """Produces the assistant's turns. The cascade and the relay engine implement it."""

    #: True when `respond` needs transcripts of user audio (a cascade does; an
    #: engine that hears audio itself does not).
    needs_transcripts: bool

    def new_vad(self) -> VoiceActivityModel:
        """A fresh VAD model for one session."""

    async def transcribe(self, request: TranscriptionRequest) -> Transcript:
        """Speech-to-text for turn input and `audio.input.transcription`."""

    def respond(
        self, request: ResponseRequest, *, on_mark: Callable[[str, float], None] | None = None
    ) -> AsyncIterator[ResponseChunk]:
        """Stream the reply. Cancelling the iteration must stop all work promptly.

        `on_mark(stage, monotonic_time)` reports stage timings (e.g. the brain's
        first output, the first synthesized audio) for benchmarks.

        With "audio" in `output_modalities`, each OutputText is followed by the
        OutputAudio that speaks it; with ["text"] no audio is produced.
        """
