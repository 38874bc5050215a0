"""The `relay` engine: each response is made by an upstream Realtime server over WebSocket.

The upstream is OpenAI's GA Realtime API or another Hearth, reached with the `openai`
package's realtime client (`AsyncOpenAI(...).realtime.connect`). Hearth keeps the session:
its satellites, console and Realtime clients talk to Hearth as always, turn detection runs
here, and Home Assistant's tools are answered by Hearth's tool layer while client tools go
back to the client. For each response the relay sends the upstream one out-of-band
`response.create` (`conversation: "none"`) whose `input` is the whole context: user audio
(resampled to 24 kHz PCM16) or text, assistant turns as heard (a truncated turn is only the
heard words), calls and their outputs. The upstream's deltas come back as engine chunks:
speech (24 kHz PCM16, resampled by the session to each client's format), its transcript,
function calls with the upstream's call ids, and the upstream's token usage.

One upstream connection per session, opened at the first response and kept. Closing the
response stream (barge-in, `response.cancel`) sends `response.cancel` upstream at once. A
lost connection fails the response with `upstream_disconnected` (the session speaks no
apology; the client sees the error) and the next response opens a fresh connection. The
upstream's API key stays in the server's config: clients never see it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from openai import AsyncOpenAI

from hearth.server.audio.resample import StreamResampler
from hearth.server.engines.relay.options import UpstreamConfig
from hearth.server.session.interfaces import (
    ContextItem,
    EngineFailure,
    EngineSessionInfo,
    OutputAudio,
    OutputFunctionCall,
    OutputText,
    OutputUsage,
    ResponseChunk,
    ResponseRequest,
)

_LOGGER = logging.getLogger(__name__)

#: The upstream's audio: PCM16 mono at 24 kHz, both ways.
UPSTREAM_RATE = 24_000
MarkCallback = Callable[[str, float], None]


class RelayEngine:
    """A `SpeechEngine` whose responses come from an upstream Realtime server."""

    def __init__(self, config: UpstreamConfig, vad_factory: Callable[[], Any] | None = None) -> None:
        """`vad_factory` gives each session its turn detector (Silero in the composition root)."""
        self.config = config
        self._vad_factory = vad_factory
        self._client = AsyncOpenAI(base_url=config.base_url, api_key=config.key(), max_retries=0)
        self._sessions: set[RelaySession] = set()

    async def warm_up(self) -> None:
        """Nothing to load; the upstream is reached at each session's first response."""
        if self._vad_factory is not None:
            self._vad_factory()
        _LOGGER.info("relay engine: responses from %s (model %s)", self.config.base_url, self.config.model)

    def open(self, info: EngineSessionInfo) -> RelaySession:
        session = RelaySession(self, info, self._vad_factory() if self._vad_factory is not None else None)
        self._sessions.add(session)
        return session

    async def close(self) -> None:
        for session in list(self._sessions):
            await session.disconnect()
        await self._client.close()

    def _forget(self, session: RelaySession) -> None:
        self._sessions.discard(session)


class RelaySession:
    """One Hearth session's upstream connection and its responses, one at a time."""

    #: The upstream transcribes user audio itself.
    transcriber = None

    def __init__(self, engine: RelayEngine, info: EngineSessionInfo, vad: Any) -> None:
        self.info = info
        self.vad = vad
        self._engine = engine
        self._conn: Any = None
        self._manager: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._lock = asyncio.Lock()
        #: Final status of each upstream response, for diagnostics and tests.
        self.upstream_statuses: list[str] = []
        self.connections = 0

    # ------------------------------------------------------------ the connection

    async def _connect(self) -> None:
        if self._conn is not None:
            return
        config = self._engine.config
        manager = self._engine._client.realtime.connect(model=config.model)
        try:
            self._conn = await asyncio.wait_for(manager.__aenter__(), config.connect_timeout_s)
        except Exception as err:
            raise EngineFailure("upstream_unreachable",
                                f"Cannot open the upstream Realtime connection at {config.base_url}: {err}") from err
        self._manager = manager
        self.connections += 1
        self._inbox = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(self._conn, self._inbox), name=f"relay-{self.info.session_id}")
        _LOGGER.info("relay %s: connected to %s", self.info.session_id, config.base_url)

    async def _read(self, conn: Any, inbox: asyncio.Queue[Any]) -> None:
        try:
            async for event in conn:
                inbox.put_nowait(event)
        except Exception as err:  # a lost or broken connection: the waiting response is told
            inbox.put_nowait(_Lost(repr(err)))
        else:
            inbox.put_nowait(_Lost("the upstream closed the connection"))

    async def disconnect(self) -> None:
        reader, manager = self._reader, self._manager
        self._conn = self._manager = self._reader = None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if manager is not None:
            with contextlib.suppress(Exception):
                await manager.__aexit__(None, None, None)

    def close(self) -> None:
        """The Hearth session is over: drop the upstream connection (in the background)."""
        self._engine._forget(self)
        if self._conn is not None:
            task = asyncio.get_running_loop().create_task(self.disconnect(), name="relay-disconnect")
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)

    # ------------------------------------------------------------ responses

    async def respond(self, request: ResponseRequest, *, on_mark: MarkCallback | None = None
                      ) -> AsyncIterator[ResponseChunk]:
        """One upstream response for `request`, streamed as engine chunks."""
        async with self._lock:
            await self._connect()
            tag = secrets.token_hex(8)
            await self._conn.send({"type": "response.create", "response": self._response_params(request, tag)})
            response_id: str | None = None
            finished = False
            try:
                while True:
                    timeout = self._engine.config.response_timeout_s if response_id is None else None
                    try:
                        event = await asyncio.wait_for(self._inbox.get(), timeout)
                    except TimeoutError:
                        await self.disconnect()
                        raise EngineFailure("upstream_timeout", "The upstream Realtime server did not start a "
                                            f"response within {timeout:.0f} s.") from None
                    if isinstance(event, _Lost):
                        await self.disconnect()
                        raise EngineFailure("upstream_disconnected",
                                            f"The connection to the upstream Realtime server was lost: {event.reason}")
                    kind = event.type
                    if kind == "error":
                        error = event.error
                        raise EngineFailure("upstream_error", f"The upstream Realtime server: {error.message}")
                    if kind == "response.created":
                        if (event.response.metadata or {}).get("hearth_relay") == tag:
                            response_id = event.response.id
                        continue
                    if response_id is None or _response_of(event) != response_id:
                        continue  # another (an earlier, cancelled) response's events
                    if kind == "response.output_audio.delta":
                        pcm = np.frombuffer(base64.b64decode(event.delta), dtype="<i2").astype(np.int16)
                        yield OutputAudio(pcm=pcm, rate=UPSTREAM_RATE)
                    elif kind in ("response.output_audio_transcript.delta", "response.output_text.delta"):
                        if event.delta:
                            yield OutputText(event.delta)
                    elif kind == "response.output_item.done" and event.item.type == "function_call":
                        item = event.item
                        yield OutputFunctionCall(name=item.name or "", arguments=item.arguments or "{}",
                                                 call_id=item.call_id)
                    elif kind == "response.done":
                        finished = True
                        response = event.response
                        self.upstream_statuses.append(response.status or "")
                        if response.status == "failed":
                            raise _failure(response.status_details)
                        usage = response.usage
                        if usage is not None and usage.input_tokens is not None:
                            yield OutputUsage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens or 0)
                        return
            finally:
                if not finished and response_id is not None and self._conn is not None:
                    # Barge-in or cancel: the upstream stops generating now.
                    with contextlib.suppress(Exception):
                        await self._conn.send({"type": "response.cancel", "response_id": response_id})

    def _response_params(self, request: ResponseRequest, tag: str) -> dict[str, Any]:
        config = self._engine.config
        items = [item for item in (upstream_item(i) for i in request.items) if item is not None]
        instructions = request.instructions
        if request.say is not None:  # the session's own line (a failed tool's apology), in the upstream's voice
            items = []
            instructions = f"Say exactly this, and nothing else: {request.say}"
        params: dict[str, Any] = {
            "conversation": "none",
            "input": items,
            "instructions": instructions,
            "output_modalities": request.output_modalities,
            "tools": request.tools,
            "tool_choice": request.tool_choice,
            "metadata": {**(request.metadata or {}), "hearth_relay": tag},
        }
        if "audio" in request.output_modalities:
            params["audio"] = {"output": {"format": {"type": "audio/pcm", "rate": UPSTREAM_RATE},
                                          "voice": config.voice or request.voice}}
        if request.max_output_tokens is not None:
            params["max_output_tokens"] = request.max_output_tokens
        return params


def upstream_item(item: ContextItem) -> dict[str, Any] | None:
    """A context item as a GA Realtime input item (None for what carries nothing)."""
    if item.type == "function_call":
        return {"type": "function_call", "call_id": item.call_id, "name": item.name, "arguments": item.arguments or "{}"}
    if item.type == "function_call_output":
        return {"type": "function_call_output", "call_id": item.call_id, "output": item.output or ""}
    if item.role == "user" and item.audio is not None and len(item.audio.pcm):
        pcm = item.audio.pcm
        if item.audio.rate != UPSTREAM_RATE:
            pcm = StreamResampler(item.audio.rate, UPSTREAM_RATE).process(pcm, last=True)
        audio = base64.b64encode(np.asarray(pcm, dtype="<i2").tobytes()).decode("ascii")
        return {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": audio}]}
    if not item.text.strip():
        return None
    if item.role == "assistant":
        return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": item.text}]}
    return {"type": "message", "role": item.role or "user", "content": [{"type": "input_text", "text": item.text}]}


@dataclass(frozen=True)
class _Lost:
    reason: str


_BACKGROUND: set[asyncio.Task[None]] = set()


def _response_of(event: Any) -> str | None:
    if event.type == "response.done":
        return event.response.id
    return getattr(event, "response_id", None)


def _failure(details: Any) -> EngineFailure:
    error = getattr(details, "error", None)
    code = getattr(error, "code", None) or "upstream_error"
    message = getattr(error, "message", None) or "The upstream Realtime server failed the response."
    return EngineFailure(str(code), f"Upstream: {message}")
