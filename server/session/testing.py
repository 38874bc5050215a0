"""A scripted engine and an in-memory sink for fast session tests.

The real cascade and transports are tested end to end; these let the session
state machine be tested in milliseconds, without models or sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .interfaces import (
    OutputAudio,
    OutputFunctionCall,
    OutputText,
    ResponseChunk,
    ResponseRequest,
    Transcript,
    TranscriptionRequest,
)


class EnergyVad:
    """Calls a frame speech when its RMS exceeds a level: predictable for synthetic tones."""

    frame_samples = 512

    def __init__(self, level: float = 0.02) -> None:
        self.level = level

    def probability(self, frame: np.ndarray) -> float:
        return 1.0 if float(np.sqrt(np.mean(frame**2))) > self.level else 0.0

    def reset(self) -> None:
        pass


@dataclass
class ScriptedEngine:
    """Answers every response with `reply` (a list of chunks or a callable of the request)."""

    reply: list[ResponseChunk] | Callable[[ResponseRequest], list[ResponseChunk]] = field(
        default_factory=lambda: [OutputText("Hello there."), OutputAudio(np.zeros(2400, dtype=np.int16), 24000)]
    )
    transcript: str = "hello"
    #: Seconds to wait before each chunk (to test cancellation mid-stream).
    chunk_delay: float = 0.0
    transcribe_delay: float = 0.0
    needs_transcripts: bool = True
    requests: list[ResponseRequest] = field(default_factory=list)
    transcriptions: list[TranscriptionRequest] = field(default_factory=list)

    def new_vad(self) -> EnergyVad:
        return EnergyVad()

    async def transcribe(self, request: TranscriptionRequest) -> Transcript:
        self.transcriptions.append(request)
        if self.transcribe_delay:
            await asyncio.sleep(self.transcribe_delay)
        return Transcript(text=self.transcript, duration_s=len(request.audio) / 16000)

    async def respond(
        self, request: ResponseRequest, *, on_mark: Callable[[str, float], None] | None = None
    ) -> AsyncIterator[ResponseChunk]:
        self.requests.append(request)
        chunks = self.reply(request) if callable(self.reply) else self.reply
        for chunk in chunks:
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            if isinstance(chunk, OutputAudio) and "audio" not in request.output_modalities:
                continue
            yield chunk


class RecordingSink:
    """Collects server events; `wait_for` lets a test await one."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self._changed = asyncio.Event()

    def send(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._changed.set()

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self._changed.set()

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 5.0) -> dict[str, Any]:
        async def _wait() -> dict[str, Any]:
            while True:
                found = self.of_type(kind)
                if len(found) >= count:
                    return found[count - 1]
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(_wait(), timeout)


def function_call(name: str, arguments: str) -> OutputFunctionCall:
    return OutputFunctionCall(name=name, arguments=arguments)
