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

from ..protocol.server_events import ServerEvent
from .end_of_turn import TurnGuess
from .interfaces import (
    EngineSessionInfo,
    OutputAudio,
    OutputFunctionCall,
    OutputText,
    ResponseChunk,
    ResponseRequest,
    ToolCall,
    ToolResult,
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
    #: Fast end-of-turn guesses, answered in order (the last one repeats); None: no fast judge.
    guesses: list[TurnGuess] | None = None
    guess_delay: float = 0.0
    guessed: list[np.ndarray] = field(default_factory=list)
    #: Full transcripts the scripted judge's `match` knows: text -> intent.
    intents: dict[str, str] = field(default_factory=dict)

    #: Engine sessions opened, in order (tests read them).
    opened: list[EngineSessionInfo] = field(default_factory=list)
    closed_sessions: int = 0
    warmed: bool = False

    async def warm_up(self) -> None:
        self.warmed = True

    def open(self, info: EngineSessionInfo) -> ScriptedEngineSession:
        self.opened.append(info)
        return ScriptedEngineSession(self)

    async def close(self) -> None:
        pass

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
        if request.say is not None:  # the session's own line: spoken as given
            chunks: list[ResponseChunk] = [OutputText(request.say), OutputAudio(np.zeros(2400, dtype=np.int16), 24000)]
        else:
            chunks = self.reply(request) if callable(self.reply) else self.reply
        for chunk in chunks:
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            if isinstance(chunk, OutputAudio) and "audio" not in request.output_modalities:
                continue
            yield chunk


class ScriptedEngineSession:
    """One session's view of a `ScriptedEngine` (shared script, own VAD)."""

    def __init__(self, engine: ScriptedEngine) -> None:
        self.engine = engine
        self.vad = engine.new_vad()
        self.transcriber = engine if engine.needs_transcripts else None
        self.listener = None
        self.end_of_turn = ScriptedTurnEnd(engine) if engine.guesses is not None else None

    def respond(self, request: ResponseRequest, *, on_mark: Callable[[str, float], None] | None = None
                ) -> AsyncIterator[ResponseChunk]:
        return self.engine.respond(request, on_mark=on_mark)

    def close(self) -> None:
        self.engine.closed_sessions += 1


class ScriptedTurnEnd:
    """A fast end-of-turn judge that answers the engine's scripted `guesses` in order."""

    def __init__(self, engine: ScriptedEngine) -> None:
        self.engine = engine

    async def guess(self, audio: np.ndarray, *, tools: Any, instructions: str) -> TurnGuess:
        self.engine.guessed.append(audio)
        if self.engine.guess_delay:
            await asyncio.sleep(self.engine.guess_delay)
        guesses = self.engine.guesses or [TurnGuess("")]
        return guesses.pop(0) if len(guesses) > 1 else guesses[0]

    async def match(self, text: str, *, tools: Any, instructions: str) -> str | None:
        return self.engine.intents.get(text)


class RecordingSink:
    """Collects server events; `wait_for` lets a test await one."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self._changed = asyncio.Event()

    def send(self, event: ServerEvent) -> None:
        self.events.append(event.wire())
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


@dataclass
class ScriptedToolbox:
    """Server-side tools whose answers a test scripts: a result, an exception, or a delay."""

    tools: dict[str, ToolResult | Exception] = field(default_factory=dict)
    delay: float = 0.0
    prompt: str | None = None
    calls: list[ToolCall] = field(default_factory=list)

    def definitions(self) -> list[dict[str, Any]]:
        return [{"type": "function", "name": name, "description": f"server tool {name}",
                 "parameters": {"type": "object", "properties": {}}} for name in self.tools]

    def instructions(self) -> str | None:
        return self.prompt

    def handles(self, name: str) -> bool:
        return name in self.tools

    async def call(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self.tools[call.name]
        if isinstance(answer, Exception):
            raise answer
        return answer
