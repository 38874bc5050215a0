"""The `relay` engine: an upstream Realtime server hears each session and makes its responses.

The upstream is OpenAI's GA Realtime API or another Hearth, reached over WebSocket with the
`openai` package's realtime client (`AsyncOpenAI(...).realtime.connect`). Hearth keeps the
session: its satellites, console and Realtime clients talk to Hearth as always, Home
Assistant's tools are answered by Hearth's tool layer, client tools go back to the client.

* Input: the session's audio streams to the upstream as `input_audio_buffer.append`
  (resampled to 24 kHz PCM16 where it is not), and the upstream's own turn detection and
  transcription are used as they are: the session's `turn_detection` (with
  `create_response` and `interrupt_response` off: Hearth answers and interrupts) and
  `transcription` are forwarded, and the upstream's `speech_started/stopped`, `committed`
  and input transcription come back through the session's `InputEvents`. The session's own
  commits (manual, idle timeout, end of input) and clears are forwarded too. The relay
  session has no VAD and no transcriber: nothing local is in the way.
* Output: for each response the relay sends one out-of-band `response.create`
  (`conversation: "none"`) whose `input` is the whole context as Hearth holds it: user turns
  the upstream committed as `item_reference`s (their audio is already there), other user
  audio resampled to 24 kHz, text, assistant turns as heard (a truncated turn is only the
  heard words: truncation happens here, where the playback is known, so there is nothing
  to truncate upstream), calls and their outputs. The upstream's deltas come back as
  engine chunks: speech (24 kHz), its transcript, function calls with their argument
  pieces and the upstream's call ids, and the upstream's token usage.

One upstream connection per session, opened at its first audio or response and kept; every
message to it goes through one queue, so a commit always precedes the response that
answers it. Closing a response stream (barge-in, `response.cancel`) sends `response.cancel`
upstream at once. A lost connection fails the response in progress with
`upstream_disconnected`, or, between responses, is an `error` event with that code (the turn
being spoken is dropped); the next audio or response opens a fresh connection (retried at
most every `RETRY_S`). The upstream's API key stays in the server's config: clients never see it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from collections import deque
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
    InputEvents,
    OutputAudio,
    OutputFunctionCall,
    OutputFunctionCallDelta,
    OutputText,
    OutputUsage,
    ResponseChunk,
    ResponseRequest,
)

_LOGGER = logging.getLogger(__name__)

#: The upstream's audio: PCM16 mono at 24 kHz, both ways.
UPSTREAM_RATE = 24_000
#: Seconds between attempts to reach an upstream that could not be reached.
RETRY_S = 2.0
#: Seconds a response waits for the upstream to acknowledge a commit the session made.
COMMIT_WAIT_S = 5.0
MarkCallback = Callable[[str, float], None]

class RelayEngine:
    """A `SpeechEngine` whose sessions are heard and answered by an upstream Realtime server."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self._client = AsyncOpenAI(base_url=config.base_url, api_key=config.key(), max_retries=0)
        self._sessions: set[RelaySession] = set()

    async def warm_up(self) -> None:
        """Nothing to load; the upstream is reached at each session's first audio or response."""
        _LOGGER.info("relay engine: sessions heard and answered by %s (model %s)", self.config.base_url,
                     self.config.model)

    def open(self, info: EngineSessionInfo) -> RelaySession:
        session = RelaySession(self, info)
        self._sessions.add(session)
        return session

    async def close(self) -> None:
        for session in list(self._sessions):
            await session.disconnect()
        await self._client.close()

    def _forget(self, session: RelaySession) -> None:
        self._sessions.discard(session)


class RelaySession:
    """One Hearth session's upstream connection: its ears (`listener`) and its responses, one at a time."""

    #: The upstream detects turns and transcribes user audio itself.
    vad = None
    transcriber = None

    def __init__(self, engine: RelayEngine, info: EngineSessionInfo) -> None:
        self.info = info
        self._engine = engine
        self._conn: Any = None
        self._manager: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[_Out] = asyncio.Queue()
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._closed = False
        #: The writer holds a message it has not sent yet (it may be connecting).
        self._writing = False
        self._retry_at = 0.0
        self._unreachable: EngineFailure | None = None
        #: The input's outage was reported (once per outage).
        self._down = False
        # --- the listener
        self._events: InputEvents | None = None
        self._turn_detection: dict[str, Any] | None = None
        self._transcription: dict[str, Any] | None = None
        self._resampler: StreamResampler | None = None
        self._resampler_rate = 0
        #: Milliseconds of input the session appended (its `audio_start_ms` clock), and where
        #: the current connection's clock began on it (a fresh upstream counts from 0).
        self._appended_ms = 0.0
        self._clock_offset_ms: float | None = None
        #: Hearth's user item id -> the upstream's, for turns the upstream committed, and back.
        self._upstream_ids: dict[str, str] = {}
        self._hearth_ids: dict[str, str] = {}
        #: Upstream items whose speech stopped: their commit is the upstream's own.
        self._stopped: set[str] = set()
        #: Commits the session made, in order, waiting for the upstream's `committed`.
        self._pending: deque[tuple[str, asyncio.Future[str | None]]] = deque()
        #: Final status of each upstream response, for diagnostics and tests.
        self.upstream_statuses: list[str] = []
        self.connections = 0

    @property
    def listener(self) -> RelaySession:
        """The session's input goes to the upstream: its VAD and transcription are the ones used."""
        return self

    # ------------------------------------------------------------ the listener (session -> upstream)

    def listen(self, events: InputEvents, turn_detection: dict[str, Any] | None,
               transcription: dict[str, Any] | None) -> None:
        self._events = events
        self._turn_detection, self._transcription = turn_detection, transcription
        if self._conn is not None:
            self._post(_Out(self._session_update()))

    def append(self, pcm: np.ndarray, rate: int) -> None:
        at_ms = self._appended_ms
        self._appended_ms += 1000 * len(pcm) / rate
        if rate != UPSTREAM_RATE:
            if self._resampler is None or self._resampler_rate != rate:
                self._resampler, self._resampler_rate = StreamResampler(rate, UPSTREAM_RATE), rate
            pcm = self._resampler.process(pcm)
        if len(pcm) and self._reachable():
            self._post(_Out({"type": "input_audio_buffer.append", "audio": _b64(pcm)}, at_ms=at_ms))

    def commit(self, item_id: str) -> None:
        if self._idle():
            return  # the upstream has none of this audio: the turn goes inline with its response
        waiter: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending.append((item_id, waiter))
        self._post(_Out({"type": "input_audio_buffer.commit"}, commit=waiter))

    def clear(self) -> None:
        if not self._idle():
            self._post(_Out({"type": "input_audio_buffer.clear"}))

    def _idle(self) -> bool:
        """No connection and nothing on its way to one: the upstream holds no audio of this session."""
        return self._conn is None and self._outbox.empty() and not self._writing

    def _session_update(self) -> dict[str, Any]:
        turn = self._turn_detection
        if turn is not None:  # Hearth answers turns and interrupts its own responses; idle timeouts are Hearth's
            turn = {**{k: v for k, v in turn.items() if k != "idle_timeout_ms"},
                    "create_response": False, "interrupt_response": False}
        return {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": UPSTREAM_RATE}, "turn_detection": turn,
            "transcription": self._transcription}}}}

    # ------------------------------------------------------------ the connection

    def _reachable(self) -> bool:
        """False while an unreachable upstream waits for its next attempt (audio meanwhile is dropped)."""
        return self._conn is not None or asyncio.get_running_loop().time() >= self._retry_at

    def _post(self, out: _Out) -> None:
        """Queue one message to the upstream, after every message queued before it."""
        if self._closed:
            return
        self._outbox.put_nowait(out)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write(), name=f"relay-out-{self.info.session_id}")

    async def _send(self, message: dict[str, Any]) -> None:
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._post(_Out(message, sent=sent))
        await sent

    async def _write(self) -> None:
        while True:
            self._writing = False
            out = await self._outbox.get()
            self._writing = True
            try:
                conn = await self._connected()
                if out.at_ms is not None and self._clock_offset_ms is None:
                    self._clock_offset_ms = out.at_ms
                await conn.send(out.message)
            except EngineFailure as failure:
                self._undelivered(out, failure)
                continue
            except Exception as err:  # the socket broke under the send: the reader reports the loss
                self._undelivered(out, EngineFailure(
                    "upstream_disconnected", f"The connection to the upstream Realtime server was lost: {err!r}"))
                continue
            if out.sent is not None and not out.sent.done():
                out.sent.set_result(None)

    def _undelivered(self, out: _Out, failure: EngineFailure) -> None:
        if out.sent is not None:
            if not out.sent.done():
                out.sent.set_exception(failure)
            return
        if out.commit is not None:  # that turn's audio goes inline instead
            self._pending = deque(p for p in self._pending if p[1] is not out.commit)
            if not out.commit.done():
                out.commit.set_result(None)
        if not self._down:  # the session's input: its client is told once per outage
            self._down = True
            self._input_failed(failure)

    async def _connected(self) -> Any:
        if self._conn is not None:
            return self._conn
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at and self._unreachable is not None:
            raise EngineFailure(self._unreachable.code, self._unreachable.message)
        config = self._engine.config
        manager = self._engine._client.realtime.connect(model=config.model)
        try:
            conn = await asyncio.wait_for(manager.__aenter__(), config.connect_timeout_s)
        except Exception as err:
            self._retry_at = loop.time() + RETRY_S
            self._unreachable = EngineFailure(
                "upstream_unreachable", f"Cannot open the upstream Realtime connection at {config.base_url}: {err}")
            raise self._unreachable from err
        self._conn, self._manager, self._down, self._clock_offset_ms = conn, manager, False, None
        self.connections += 1
        self._inbox = asyncio.Queue()
        self._reader = loop.create_task(self._read(conn, self._inbox), name=f"relay-in-{self.info.session_id}")
        await conn.send(self._session_update())
        _LOGGER.info("relay %s: connected to %s", self.info.session_id, config.base_url)
        return conn

    async def _read(self, conn: Any, inbox: asyncio.Queue[Any]) -> None:
        try:
            async for event in conn:
                try:
                    heard = self._heard(event)
                except Exception:  # a failing session callback must not look like a lost upstream
                    _LOGGER.exception("relay %s: handling the upstream's %s failed", self.info.session_id, event.type)
                    heard = True
                if not heard:
                    inbox.put_nowait(event)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a lost or broken connection
            self._drop(conn, repr(err))
        else:
            self._drop(conn, "the upstream closed the connection")

    def _drop(self, conn: Any, reason: str) -> None:
        """Forget a connection that is gone: its responses fail, its turns are forgotten, the next use reconnects."""
        if self._conn is not conn:
            return
        manager = self._manager
        self._conn = self._manager = self._reader = None
        self._inbox.put_nowait(_Lost(reason))
        self._upstream_ids.clear()
        self._hearth_ids.clear()
        self._stopped.clear()
        while self._pending:
            _, waiter = self._pending.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if manager is not None:
            _background(manager.__aexit__(None, None, None))
        if not self._lock.locked() and not self._closed:  # a response in progress reports it itself
            self._input_failed(EngineFailure(
                "upstream_disconnected", f"The connection to the upstream Realtime server was lost: {reason}"))

    def _input_failed(self, failure: EngineFailure) -> None:
        _LOGGER.warning("relay %s: %s", self.info.session_id, failure.message)
        if self._events is not None and not self._closed:
            self._events.failed(failure.code, failure.message)

    async def disconnect(self) -> None:
        self._closed = True
        writer, reader, manager = self._writer, self._reader, self._manager
        self._conn = self._manager = self._reader = self._writer = None
        for task in (writer, reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if manager is not None:
            with contextlib.suppress(Exception):
                await manager.__aexit__(None, None, None)

    def close(self) -> None:
        """The Hearth session is over: drop the upstream connection (in the background)."""
        self._engine._forget(self)
        if self._writer is None and self._conn is None:
            self._closed = True
            return
        _background(self.disconnect())

    # ------------------------------------------------------------ what the upstream heard (upstream -> session)

    def _heard(self, event: Any) -> bool:
        """Handle an input event from the upstream; False for what the response in progress reads."""
        kind, events = event.type, self._events
        if kind.startswith("response."):
            return False
        if kind == "input_audio_buffer.speech_started":
            if events is not None:
                events.speech_started(self._session_ms(event.audio_start_ms))
        elif kind == "input_audio_buffer.speech_stopped":
            self._stopped.add(event.item_id)
            if events is not None:
                events.speech_stopped(self._session_ms(event.audio_end_ms))
        elif kind == "input_audio_buffer.committed":
            self._committed(event.item_id)
        elif kind == "conversation.item.input_audio_transcription.completed":
            item_id = self._hearth_ids.get(event.item_id)
            if item_id is not None and events is not None:
                events.transcribed(item_id, event.transcript or "")
        elif kind == "conversation.item.input_audio_transcription.failed":
            item_id = self._hearth_ids.get(event.item_id)
            if item_id is not None and events is not None:
                events.transcription_failed(item_id, getattr(event.error, "message", None) or "transcription failed")
        elif kind == "error":
            error = event.error
            if error.code == "input_audio_buffer_commit_empty" and self._pending:
                _, waiter = self._pending.popleft()  # that turn's audio goes inline instead
                if not waiter.done():
                    waiter.set_result(None)
                return True
            if self._lock.locked():
                return False
            self._input_failed(EngineFailure("upstream_error", f"The upstream Realtime server: {error.message}"))
        return True

    def _session_ms(self, upstream_ms: int) -> int:
        """A position on this connection's clock as one on the session's."""
        return int(upstream_ms + (self._clock_offset_ms or 0.0))

    def _committed(self, upstream_id: str) -> None:
        waiter: asyncio.Future[str | None] | None = None
        if upstream_id not in self._stopped and self._pending:
            item_id: str | None
            item_id, waiter = self._pending.popleft()  # a commit the session made
        else:
            self._stopped.discard(upstream_id)
            item_id = self._events.committed() if self._events is not None else None
        if item_id is not None:
            self._upstream_ids[item_id] = upstream_id
            self._hearth_ids[upstream_id] = item_id
        if waiter is not None and not waiter.done():
            waiter.set_result(upstream_id)

    # ------------------------------------------------------------ responses

    async def respond(self, request: ResponseRequest, *, on_mark: MarkCallback | None = None
                      ) -> AsyncIterator[ResponseChunk]:
        """One upstream response for `request`, streamed as engine chunks."""
        async with self._lock:
            await self._commits_acknowledged(request)
            tag = secrets.token_hex(8)
            await self._send({"type": "response.create", "response": self._response_params(request, tag)})
            conn, inbox = self._conn, self._inbox
            response_id: str | None = None
            calls: dict[str, str] = {}  # upstream item id -> function name
            finished = False
            try:
                while True:
                    timeout = self._engine.config.response_timeout_s
                    try:
                        event = await asyncio.wait_for(inbox.get(), timeout)
                    except TimeoutError:
                        stage = "start a response" if response_id is None else "go on with its response"
                        self._drop(conn, f"it did not {stage} in time")
                        raise EngineFailure("upstream_timeout", f"The upstream Realtime server did not {stage} "
                                            f"within {timeout:.0f} s.") from None
                    if isinstance(event, _Lost):
                        raise EngineFailure("upstream_disconnected",
                                            f"The connection to the upstream Realtime server was lost: {event.reason}")
                    kind = event.type
                    if kind == "error":
                        raise EngineFailure("upstream_error", f"The upstream Realtime server: {event.error.message}")
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
                    elif kind == "response.output_item.added" and event.item.type == "function_call":
                        calls[event.item.id or ""] = event.item.name or ""
                    elif kind == "response.function_call_arguments.delta":
                        if event.delta and event.item_id in calls:
                            yield OutputFunctionCallDelta(call_id=event.call_id, name=calls[event.item_id],
                                                          delta=event.delta)
                    elif kind == "response.output_item.done" and event.item.type == "function_call":
                        item = event.item
                        if item.status == "completed":
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
                if not finished and response_id is not None and self._conn is conn:
                    # Barge-in or cancel: the upstream stops generating now.
                    self._post(_Out({"type": "response.cancel", "response_id": response_id}))

    async def _commits_acknowledged(self, request: ResponseRequest) -> None:
        """Wait until the upstream has committed the turns the session committed itself (so they can be referenced)."""
        waiting = {item.id for item in request.items if item.type == "message" and item.role == "user"}
        waiters = [waiter for item_id, waiter in self._pending if item_id in waiting]
        if waiters:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(asyncio.shield(w) for w in waiters)), COMMIT_WAIT_S)

    def _response_params(self, request: ResponseRequest, tag: str) -> dict[str, Any]:
        config = self._engine.config
        items = [item for item in (self._upstream_item(i) for i in request.items) if item is not None]
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

    def _upstream_item(self, item: ContextItem) -> dict[str, Any] | None:
        upstream_id = self._upstream_ids.get(item.id) if item.role == "user" else None
        if upstream_id is not None:  # a turn the upstream heard and committed: it has the audio
            return {"type": "item_reference", "id": upstream_id}
        return upstream_item(item)


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


@dataclass(frozen=True)
class _Out:
    """One message for the upstream, and who waits on it."""

    message: dict[str, Any]
    #: Set once sent (a response waits for its `response.create`).
    sent: asyncio.Future[None] | None = None
    #: A commit the session made: resolved with the upstream's item id once it commits.
    commit: asyncio.Future[str | None] | None = None
    #: An append's start on the session's clock (ms).
    at_ms: float | None = None


_BACKGROUND: set[asyncio.Task[Any]] = set()


def _background(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro, name="relay-close")
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _b64(pcm: np.ndarray) -> str:
    return base64.b64encode(np.asarray(pcm, dtype="<i2").tobytes()).decode("ascii")


def _response_of(event: Any) -> str | None:
    if event.type == "response.done":
        return event.response.id
    return getattr(event, "response_id", None)


def _failure(details: Any) -> EngineFailure:
    error = getattr(details, "error", None)
    code = getattr(error, "code", None) or "upstream_error"
    message = getattr(error, "message", None) or "The upstream Realtime server failed the response."
    return EngineFailure(str(code), f"Upstream: {message}")
