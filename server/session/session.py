"""RealtimeSession: one Realtime conversation, independent of any transport.

A transport feeds it client events (`handle_text`) and receives server events
through an `EventSink`. Everything here runs on the event loop; model work
happens inside the engine, which keeps it off the loop. Handlers are
synchronous so the order of server events always follows the order of client
events; engine work runs in tasks the session owns and cancels.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, assert_never

import numpy as np
from pydantic import ValidationError

from ..audio.formats import AudioFormat, decode, encode, format_for
from ..audio.resample import StreamResampler
from ..protocol import client_events as ce
from ..protocol import server_events as ev
from ..protocol.errors import RealtimeProtocolError, from_validation_error
from ..protocol.ids import new_id
from ..protocol.items import ItemReference
from ..protocol.session_config import RealtimeSession as RealtimeConfig
from ..protocol.session_config import SemanticVad, ServerVad
from ..protocol.session_config import TranscriptionSession as TranscriptionConfig
from ..protocol.session_config import merge_update
from .conversation import Conversation, Entry
from .input_buffer import InputBuffer
from .interfaces import (
    PIPELINE_RATE,
    ContextItem,
    OutputAudio,
    OutputFunctionCall,
    OutputText,
    ResponseRequest,
    SpeechEngine,
    Transcript,
    TranscriptionError,
    TranscriptionRequest,
)
from .response import ResponseBuilder, ResponseOptions
from .turn_detection import TurnDetector, TurnSignal, VadSettings
from .usage import INPUT_AUDIO_MS_PER_TOKEN, audio_tokens, text_tokens

_LOGGER = logging.getLogger(__name__)

#: The shortest commit upstream accepts.
MIN_COMMIT_MS = 100
#: Longest input buffer kept without a commit (manual mode); older audio is an error.
MAX_BUFFER_S = 15 * 60
#: In VAD mode, silence older than the prefix padding is dropped once the buffer exceeds this.
IDLE_TRIM_S = 2.0
#: semantic_vad: silence needed after a complete-sounding phrase, and the cap, by eagerness (ms).
SEMANTIC_MIN_SILENCE = {"high": 200, "medium": 350, "auto": 350, "low": 600}
SEMANTIC_MAX_SILENCE = {"high": 2000, "medium": 4000, "auto": 4000, "low": 8000}
_TRAILING_CONTINUATIONS = re.compile(
    r"\b(and|or|but|so|because|the|a|an|to|of|with|for|in|on|at|um|uh|like|then|if|my|your|is)\W*$", re.IGNORECASE
)


class EventSink(Protocol):
    """Where a session's server events go: the transport's side."""

    def send(self, event: dict[str, Any]) -> None:
        """Queue one server event (wire dict) for delivery, in order."""

    def close(self, code: int, reason: str) -> None:
        """End the connection after already-queued events are delivered."""


@dataclass
class SessionOptions:
    kind: Literal["realtime", "transcription"] = "realtime"
    model: str = "hearth"
    #: Session defaults in wire form (validated when the session starts).
    defaults: dict[str, Any] = field(default_factory=dict)
    max_duration_s: float = 3600.0
    #: False where a media track carries output audio (WebRTC, MQTT satellites).
    audio_in_events: bool = True


@dataclass
class TurnTimings:
    """Monotonic timestamps of one turn's stages, for benchmarks and diagnostics."""

    item_id: str | None = None
    response_id: str | None = None
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str, at: float | None = None) -> None:
        self.marks.setdefault(name, time.monotonic() if at is None else at)


@dataclass
class _Speculation:
    """A transcription started at the first silence, reused if the turn ends there."""

    start: int
    end: int
    task: asyncio.Task[Transcript]


@dataclass(eq=False)
class _ActiveResponse:
    builder: ResponseBuilder
    task: asyncio.Task[None] | None = None
    timings: TurnTimings | None = None


class RealtimeSession:
    def __init__(
        self,
        engine: SpeechEngine,
        sink: EventSink,
        options: SessionOptions | None = None,
        *,
        on_output_audio: Callable[[str, np.ndarray], None] | None = None,
    ) -> None:
        self.engine = engine
        self.sink = sink
        self.options = options or SessionOptions()
        self.on_output_audio = on_output_audio
        self.id = new_id("sess")
        self.conversation_id = new_id("conv")
        self.created_at = time.time()
        self.config = self._initial_config()
        self.conversation = Conversation()
        fmt = self._input_format
        self.buffer = InputBuffer(fmt.rate)
        self._in_resampler = _input_resampler(fmt.rate)
        self.detector = TurnDetector(engine.new_vad(), self._vad_settings())
        self._speech_item: str | None = None
        self._speech_start = 0
        self._speculation: _Speculation | None = None
        self._transcripts: dict[str, asyncio.Task[Transcript | None]] = {}
        self._active: _ActiveResponse | None = None
        self._side_responses: set[_ActiveResponse] = set()
        self._last_response_id: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._idle_timer: asyncio.TimerHandle | None = None
        self._pending_timings: TurnTimings | None = None
        self._silence_began_at: float | None = None
        self._turn_timings: TurnTimings | None = None
        self.timings: list[TurnTimings] = []
        self.closed = False

    # ================================================================ lifecycle

    def _initial_config(self) -> RealtimeConfig | TranscriptionConfig:
        expires = int(self.created_at + self.options.max_duration_s)
        base = {**self.options.defaults, "type": self.options.kind, "id": self.id, "expires_at": expires}
        if self.options.kind == "realtime":
            base["model"] = self.options.model
            return RealtimeConfig.model_validate(base)
        base.pop("model", None)
        keep = {"type", "id", "expires_at", "audio", "include"}
        base = {k: v for k, v in base.items() if k in keep}
        if "audio" in base:
            base["audio"] = {"input": base["audio"].get("input", {})}
        return TranscriptionConfig.model_validate(base)

    def start(self) -> None:
        """Send `session.created` and arm the session's maximum duration."""
        self._send(ev.SessionCreated(session=self.session_wire()))
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(self.options.max_duration_s, self._expire))

    def _expire(self) -> None:
        self._error(RealtimeProtocolError(
            message=f"Your session hit the maximum duration of {_duration_words(self.options.max_duration_s)}.",
            code="session_expired"))
        self.sink.close(1001, "invalid_request_error.session_expired")
        self.close()

    def close(self) -> None:
        """Stop all work. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        for timer in self._timers:
            timer.cancel()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ================================================================ output

    def _send(self, event: ev.ServerEvent) -> None:
        if not self.closed:
            self.sink.send(event.wire())

    def _error(self, error: RealtimeProtocolError, event_id: str | None = None) -> None:
        self._send(ev.Error(error=ev.ErrorDetail(
            type=error.type, code=error.code, message=error.message, param=error.param,
            event_id=error.event_id if error.event_id is not None else event_id)))

    def protocol_error(self, error: RealtimeProtocolError) -> None:
        """Report a transport-level problem (a binary frame, say) as an `error` event."""
        _LOGGER.info("session %s: %s (%s)", self.id, error.message, error.code)
        self._error(error)

    def session_wire(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json", exclude_none=False)

    # ================================================================ input

    def handle_text(self, text: str) -> None:
        """Handle one client text frame; every failure becomes an `error` event."""
        if self.closed:
            return
        try:
            event = ce.parse_client_event(text)
        except RealtimeProtocolError as err:
            _LOGGER.info("session %s: rejected client event: %s", self.id, err.message)
            self._error(err)
            return
        try:
            self._dispatch(event)
        except RealtimeProtocolError as err:
            _LOGGER.info("session %s: %s failed: %s", self.id, event.type, err.message)
            self._error(err, event.event_id)
        except Exception:  # a bug must not take the connection down
            _LOGGER.exception("session %s: internal error handling %s", self.id, event.type)
            self._error(RealtimeProtocolError(
                message="The server had an error while processing your request.", code=None, type="server_error"),
                event.event_id)

    def _dispatch(self, event: ce.ClientEvent) -> None:
        match event:
            case ce.SessionUpdate():
                self._session_update(event)
            case ce.InputAudioBufferAppend():
                self._append(event)
            case ce.InputAudioBufferCommit():
                self._commit_manual()
            case ce.InputAudioBufferClear():
                self._clear_buffer()
            case ce.ConversationItemCreate():
                self._item_create(event)
            case ce.ConversationItemRetrieve():
                self._item_retrieve(event)
            case ce.ConversationItemTruncate():
                self._item_truncate(event)
            case ce.ConversationItemDelete():
                self._item_delete(event)
            case ce.ResponseCreate():
                self._response_create(event)
            case ce.ResponseCancel():
                self._response_cancel(event)
            case ce.OutputAudioBufferClear():
                self._output_audio_clear()
            case _:
                assert_never(event)

    # ================================================================ session.update

    @property
    def _input_cfg(self) -> Any:
        return self.config.audio.input

    @property
    def _input_format(self) -> AudioFormat:
        return format_for(self._input_cfg.format.type)

    def _vad_settings(self) -> VadSettings:
        turn = self._input_cfg.turn_detection
        if isinstance(turn, ServerVad):
            return VadSettings(turn.threshold, turn.prefix_padding_ms, turn.silence_duration_ms)
        if isinstance(turn, SemanticVad):
            return VadSettings(0.5, 300, SEMANTIC_MAX_SILENCE[turn.eagerness])
        # manual turns: the VAD still runs to transcribe speculatively
        return VadSettings(0.5, 0, 300)

    def _session_update(self, event: ce.SessionUpdate) -> None:
        update = event.session
        kind = update.get("type")
        if kind is None:
            raise RealtimeProtocolError(
                message="Missing required parameter: 'session.type'.", code="missing_required_parameter",
                param="session.type")
        if kind != self.config.type:
            raise RealtimeProtocolError(
                message=f"Invalid value: '{kind}'. This is a '{self.config.type}' session; its type cannot change.",
                code="invalid_value", param="session.type")
        current = self.session_wire()
        merged = merge_update(current, update)
        model = type(self.config)
        try:
            new = model.model_validate(merged)
        except ValidationError as err:
            raise from_validation_error(err, merged, "session") from None
        old_format = self._input_format
        self.config = new
        if self._input_format != old_format:
            self._clear_buffer(silent=True)
            self.buffer = InputBuffer(self._input_format.rate)
            self._in_resampler = _input_resampler(self._input_format.rate)
        self.detector.configure(self._vad_settings())
        if self._input_cfg.turn_detection is None and self._speech_item is not None:
            self._speech_item = None
        self._send(ev.SessionUpdated(session=self.session_wire()))

    # ================================================================ audio in

    def _append(self, event: ce.InputAudioBufferAppend) -> None:
        try:
            raw = base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeProtocolError(
                message="Invalid 'audio': expected base64-encoded audio.", code="invalid_value", param="audio") from None
        fmt = self._input_format
        if fmt.type == "audio/pcm" and len(raw) % 2:
            raise RealtimeProtocolError(
                message="Invalid 'audio': PCM16 audio must have an even number of bytes.", code="invalid_value",
                param="audio")
        if self.buffer.duration_ms / 1000 > MAX_BUFFER_S:
            raise RealtimeProtocolError(
                message=f"The input audio buffer holds more than {MAX_BUFFER_S // 60} minutes; commit or clear it.",
                code="input_audio_buffer_full")
        self.append_audio(decode(fmt, raw))

    def append_audio(self, wire: np.ndarray) -> None:
        """Append int16 audio at the session's input format rate (transports without base64 use this)."""
        if self.closed:
            return
        pipe = self._in_resampler.process(wire).astype(np.float32) / 32768.0
        self.buffer.append(wire, pipe)
        for signal in self.detector.feed(pipe):
            self._on_turn_signal(signal)
        if self._speech_item is None and self._input_cfg.turn_detection is not None:
            self._trim_idle_audio()
        self._check_semantic_end()

    def _trim_idle_audio(self) -> None:
        if self.buffer.duration_ms / 1000 > IDLE_TRIM_S:
            padding = self.detector.settings.prefix_padding_ms * PIPELINE_RATE // 1000
            self.buffer.drop_until(self.detector.position - padding)

    def _on_turn_signal(self, signal: TurnSignal) -> None:
        vad = self._input_cfg.turn_detection
        match signal.kind:
            case "speech_started":
                self._cancel_speculation()
                if vad is None:
                    return
                self._speech_item = new_id("item")
                self._speech_start = max(signal.sample, self.buffer.start)
                if self._idle_timer is not None:
                    self._idle_timer.cancel()
                    self._idle_timer = None
                self._send(ev.SpeechStarted(item_id=self._speech_item, audio_start_ms=self._ms(self._speech_start)))
                if vad.interrupt_response and self._active is not None and not self._active.builder.done:
                    self._cancel_response(self._active, "turn_detected")
            case "silence_began":
                self._silence_began_at = time.monotonic()
            case "silence_settled":
                start = self._speech_start if vad is not None and self._speech_item else self.buffer.start
                self._speculate(start, signal.sample)
            case "speech_resumed":
                self._cancel_speculation()
            case "turn_ended":
                if vad is None or self._speech_item is None:
                    return
                self._end_turn(signal.sample, vad)

    def _ms(self, position: int) -> int:
        return int(position * 1000 // PIPELINE_RATE)

    # ---------------------------------------------------------------- speculative STT

    def _speculate(self, start: int, end: int) -> None:
        self._cancel_speculation()
        _, audio = self.buffer.slice(start, end)
        if not len(audio):
            return
        timings = self._pending_timings = TurnTimings()
        timings.mark("silence_began", self._silence_began_at)
        task = self._spawn(self._transcribe(audio, timings), "speculative-stt")
        self._speculation = _Speculation(start=start, end=end, task=task)
        task.add_done_callback(lambda _t: self._check_semantic_end())

    def _cancel_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation.task.cancel()
            self._speculation = None
            self._pending_timings = None

    async def _transcribe(self, audio: np.ndarray, timings: TurnTimings | None) -> Transcript:
        transcription = self._input_cfg.transcription
        request = TranscriptionRequest(
            audio=audio,
            language=transcription.language if transcription else None,
            prompt=transcription.prompt if transcription else None,
        )
        if timings:
            timings.mark("stt_start")
        result = await self.engine.transcribe(request)
        if timings:
            timings.mark("stt_done")
        return result

    def _check_semantic_end(self) -> None:
        """semantic_vad: end the turn early once the words so far sound complete."""
        vad = self._input_cfg.turn_detection
        spec = self._speculation
        if not isinstance(vad, SemanticVad) or self._speech_item is None or spec is None or not spec.task.done():
            return
        if spec.task.cancelled() or spec.task.exception() is not None:
            return
        silence_ms = (self.detector.position - spec.end) * 1000 / PIPELINE_RATE
        if silence_ms >= SEMANTIC_MIN_SILENCE[vad.eagerness] and sounds_complete(spec.task.result().text):
            self.detector.reset_turn()
            self._end_turn(self.detector.position, vad)

    # ---------------------------------------------------------------- commits

    def _end_turn(self, end: int, vad: ServerVad | SemanticVad) -> None:
        item_id = self._speech_item
        assert item_id is not None
        self._speech_item = None
        self._send(ev.SpeechStopped(item_id=item_id, audio_end_ms=self._ms(end)))
        self._commit(item_id, self._speech_start, end)
        if vad.create_response and self.config.type == "realtime":
            if self._active is None:
                self._start_response(ce.ResponseParams(), None)
            else:
                _LOGGER.info("session %s: turn ended while a response is active; not starting another", self.id)

    def _commit_manual(self) -> None:
        buffered = self.buffer.wire_duration_ms
        if buffered < MIN_COMMIT_MS:
            raise RealtimeProtocolError(
                message=f"Error committing input audio buffer: buffer too small. Expected at least {MIN_COMMIT_MS}ms "
                f"of audio, but buffer only has {buffered:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty")
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        start = self._speech_start if self._speech_start >= self.buffer.start else self.buffer.start
        self._commit(item_id, start, self.buffer.end)
        self.detector.reset_turn()

    def _commit(self, item_id: str, start: int, end: int) -> None:
        wire, pipe = self.buffer.slice(start, end)
        self.buffer.drop_until(end)
        timings = self._pending_timings or TurnTimings()
        self._pending_timings = None
        timings.item_id = item_id
        timings.mark("committed")
        spec, self._speculation = self._speculation, None
        if spec is not None and (spec.end < self.detector.last_speech_end or spec.start > start):
            spec.task.cancel()
            spec = None
            for stale in ("stt_start", "stt_done"):
                timings.marks.pop(stale, None)
        transcription = self._spawn(self._transcribe_item(item_id, pipe, spec, timings), "transcribe")
        self._transcripts[item_id] = transcription
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_audio", "transcript": None}]}
        entry = Entry(item=item, audio=wire, audio_rate=self.buffer.wire_rate)
        previous = self.conversation.insert(entry)
        self._send(ev.BufferCommitted(item_id=item_id, previous_item_id=previous))
        if self.config.type == "realtime":
            self._send(ev.ConversationItemAdded(previous_item_id=previous, item=item))
            self._send(ev.ConversationItemDone(previous_item_id=previous, item=item))
        self._turn_timings = timings

    async def _transcribe_item(
        self, item_id: str, audio: np.ndarray, spec: _Speculation | None, timings: TurnTimings
    ) -> Transcript | None:
        config = self._input_cfg.transcription
        try:
            if spec is not None:
                transcript = await spec.task
            else:
                transcript = await self._transcribe(audio, timings)
        except TranscriptionError as err:
            _LOGGER.warning("session %s: transcription of %s failed: %s", self.id, item_id, err)
            if config is not None:
                self._send(ev.TranscriptionFailed(item_id=item_id, content_index=0, error={
                    "type": "transcription_error", "code": "transcription_failed", "message": str(err), "param": None}))
            return None
        entry = self.conversation.get(item_id)
        if entry is not None:
            entry.item = {**entry.item, "content": [dict(part) for part in entry.item["content"]]}
            _audio_part(entry.item)["transcript"] = transcript.text
        if config is not None:
            text = transcript.text
            if text:
                self._send(ev.TranscriptionDelta(item_id=item_id, content_index=0, delta=text))
            self._send(ev.TranscriptionCompleted(item_id=item_id, content_index=0, transcript=text,
                                                 usage={"type": "duration", "seconds": round(transcript.duration_s, 3)}))
        return transcript

    def _clear_buffer(self, silent: bool = False) -> None:
        self._cancel_speculation()
        self.buffer.clear()
        self.detector.reset_turn()
        self._speech_item = None
        if not silent:
            self._send(ev.BufferCleared())

    # ================================================================ items

    def _item_create(self, event: ce.ConversationItemCreate) -> None:
        if self.config.type != "realtime":
            raise RealtimeProtocolError(message="Transcription sessions have no conversation items.",
                                        code="invalid_value", param="type")
        item = event.item
        data = item.model_dump(exclude_none=True)
        if data.get("role") == "assistant" and any(p["type"] == "output_audio" for p in data["content"]):
            raise RealtimeProtocolError(
                message="Assistant messages cannot contain audio content; use output_text.",
                code="invalid_value", param="item.content")
        data["object"] = "realtime.item"
        data["status"] = "completed"
        if data["type"] == "function_call":
            data.setdefault("call_id", new_id("call"))
        entry = self._entry_from_client(data)
        previous = self.conversation.insert(entry, event.previous_item_id)
        if entry.audio is not None and _audio_part(entry.item).get("transcript") is None:
            self._start_transcription(entry)
        self._send(ev.ConversationItemAdded(previous_item_id=previous, item=entry.item))
        self._send(ev.ConversationItemDone(previous_item_id=previous, item=entry.item))

    def _entry_from_client(self, data: dict[str, Any]) -> Entry:
        """An entry for a client-supplied item; its inline audio moves out of the wire form."""
        data.setdefault("id", new_id("item"))
        entry = Entry(item=data)
        audio_part = next((p for p in data.get("content", []) if p["type"] == "input_audio"), None)
        if audio_part is not None and audio_part.get("audio"):
            entry.audio = self._decode_item_audio(audio_part.pop("audio"))
            entry.audio_rate = self._input_format.rate
            audio_part.setdefault("transcript", None)
        return entry

    def _start_transcription(self, entry: Entry) -> asyncio.Task[Transcript | None]:
        assert entry.audio is not None
        pipe = StreamResampler(entry.audio_rate, PIPELINE_RATE).process(entry.audio, last=True)
        task = self._spawn(
            self._transcribe_item(entry.id, pipe.astype(np.float32) / 32768.0, None, TurnTimings()), "transcribe")
        self._transcripts[entry.id] = task
        return task

    def _decode_item_audio(self, payload: str) -> np.ndarray:
        try:
            return decode(self._input_format, base64.b64decode(payload, validate=True))
        except (binascii.Error, ValueError):
            raise RealtimeProtocolError(message="Invalid 'item.content.audio': expected base64 audio.",
                                        code="invalid_value", param="item.content") from None

    def _item_retrieve(self, event: ce.ConversationItemRetrieve) -> None:
        entry = self.conversation.get(event.item_id)
        if entry is None:
            raise RealtimeProtocolError(
                message=f"Error retrieving item: the item with id '{event.item_id}' does not exist.",
                code="item_retrieve_invalid_item_id", param="item_id")
        item = {**entry.item, "content": [dict(p) for p in entry.item.get("content", [])]} if "content" in entry.item \
            else dict(entry.item)
        if entry.audio is not None:
            fmt = self._input_format if item.get("role") == "user" else self._output_format
            audio = entry.audio
            if entry.audio_rate != fmt.rate:
                audio = StreamResampler(entry.audio_rate, fmt.rate).process(audio, last=True)
            for part in item["content"]:
                if part["type"] in ("input_audio", "output_audio"):
                    part["audio"] = base64.b64encode(encode(fmt, audio)).decode("ascii")
        self._send(ev.ConversationItemRetrieved(item=item))

    def _item_delete(self, event: ce.ConversationItemDelete) -> None:
        self.conversation.delete(event.item_id)
        self._transcripts.pop(event.item_id, None)
        self._send(ev.ConversationItemDeleted(item_id=event.item_id))

    def _item_truncate(self, event: ce.ConversationItemTruncate) -> None:
        entry = self.conversation.get(event.item_id)
        if entry is None:
            raise RealtimeProtocolError(
                message=f"Error truncating item: the item with id '{event.item_id}' does not exist.",
                code="item_truncate_invalid_item_id", param="item_id")
        if entry.item.get("role") != "assistant" or entry.audio is None:
            raise RealtimeProtocolError(
                message="Only assistant messages with audio can be truncated.", code="invalid_value", param="item_id")
        if event.content_index != 0:
            raise RealtimeProtocolError(message="Invalid 'content_index': the item has one content part.",
                                        code="invalid_value", param="content_index")
        if self._active is not None and self._active.builder.outputs and \
                any(e.id == entry.id for e in self._active.builder.outputs) and not self._active.builder.done:
            raise RealtimeProtocolError(message="Cannot truncate an item while its response is in progress.",
                                        code="invalid_value", param="item_id")
        if event.audio_end_ms > entry.audio_ms + 1:
            raise RealtimeProtocolError(
                message=f"audio_end_ms ({event.audio_end_ms}) is longer than the audio ({entry.audio_ms:.0f} ms).",
                code="invalid_value", param="audio_end_ms")
        cut = int(event.audio_end_ms * entry.audio_rate / 1000)
        entry.audio = entry.audio[:cut]
        heard = heard_text(entry, event.audio_end_ms)
        content = [{"type": "output_audio", "transcript": heard}]
        entry.item = {**entry.item, "content": content}
        self._send(ev.ConversationItemTruncated(item_id=entry.id, content_index=0, audio_end_ms=event.audio_end_ms))

    # ================================================================ responses

    @property
    def _output_format(self) -> AudioFormat:
        return format_for(self.config.audio.output.format.type)

    def _response_create(self, event: ce.ResponseCreate) -> None:
        if self.config.type != "realtime":
            raise RealtimeProtocolError(message="Transcription sessions cannot create responses.",
                                        code="invalid_value", param="type")
        params = event.response or ce.ResponseParams()
        if (params.conversation or "auto") == "auto" and self._active is not None:
            raise RealtimeProtocolError(
                message=f"Conversation already has an active response in progress: {self._active.builder.id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response")
        self._start_response(params, event.event_id)

    def _start_response(self, params: ce.ResponseParams, event_id: str | None) -> None:
        cfg = self.config
        in_conversation = (params.conversation or "auto") == "auto"
        context = self._resolve_input(params) if params.input is not None else None
        out = params.audio.output if params.audio and params.audio.output else None
        fmt = format_for(out.format.type) if out and out.format else self._output_format
        voice = out.voice if out and out.voice else cfg.audio.output.voice
        voice_name = voice if isinstance(voice, str) else voice["id"] if isinstance(voice, dict) else voice.id
        max_tokens = params.max_output_tokens if params.max_output_tokens is not None else cfg.max_output_tokens
        options = ResponseOptions(
            output_modalities=list(params.output_modalities or cfg.output_modalities),
            output_format=fmt,
            voice=voice_name,
            speed=cfg.audio.output.speed,
            in_conversation=in_conversation,
            conversation_id=self.conversation_id if in_conversation else None,
            max_output_tokens=None if max_tokens == "inf" else max_tokens,
            metadata=params.metadata,
            audio_in_events=self.options.audio_in_events,
        )
        builder = ResponseBuilder(options, self.conversation, self._send, self.on_output_audio)
        timings = self._turn_timings or TurnTimings()
        self._turn_timings = None
        timings.response_id = builder.id
        timings.mark("response_created")
        active = _ActiveResponse(builder=builder, timings=timings)
        if in_conversation:
            self._active = active
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
        else:
            self._side_responses.add(active)
        self._last_response_id = builder.id
        tools = params.tools if params.tools is not None else cfg.tools
        request_parts = {
            "instructions": params.instructions if params.instructions is not None else cfg.instructions,
            "tools": [t.model_dump(exclude_none=True) for t in tools if t.type == "function"],
            "tool_choice": _tool_choice_wire(params.tool_choice if params.tool_choice is not None else cfg.tool_choice),
        }
        builder.start()
        active.task = self._spawn(self._run_response(active, context, request_parts), f"response-{builder.id}")

    def _resolve_input(self, params: ce.ResponseParams) -> list[Entry]:
        entries: list[Entry] = []
        for index, item in enumerate(params.input or []):
            if isinstance(item, ItemReference):
                entry = self.conversation.get(item.id)
                if entry is None:
                    raise RealtimeProtocolError(
                        message=f"Item with id '{item.id}' not found.", code="invalid_value",
                        param=f"response.input[{index}].id")
                entries.append(entry)
            else:
                entries.append(self._entry_from_client(item.model_dump(exclude_none=True)))
        return entries

    async def _context(self, entries: list[Entry], builder: ResponseBuilder, instructions: str) -> list[ContextItem]:
        items: list[ContextItem] = []
        usage = builder.usage
        usage.input_text += text_tokens(instructions)
        for entry in entries:
            data = entry.item
            if data["type"] == "message":
                if self.engine.needs_transcripts and entry.audio is not None and data["role"] == "user":
                    task = self._transcripts.get(entry.id) or self._start_transcription(entry)
                    await asyncio.shield(task)
                    data = entry.item
                text = " ".join(
                    (part.get("text") or part.get("transcript") or "") for part in data["content"]
                ).strip()
                usage.input_text += text_tokens(text)
                if entry.audio is not None and data["role"] == "user":
                    usage.input_audio += audio_tokens(entry.audio_ms, INPUT_AUDIO_MS_PER_TOKEN)
                items.append(ContextItem(type="message", id=entry.id, role=data["role"], text=text))
            elif data["type"] == "function_call":
                usage.input_text += text_tokens(data["name"]) + text_tokens(data["arguments"])
                items.append(ContextItem(type="function_call", id=entry.id, name=data["name"],
                                         arguments=data["arguments"], call_id=data.get("call_id")))
            elif data["type"] == "function_call_output":
                usage.input_text += text_tokens(data["output"])
                items.append(ContextItem(type="function_call_output", id=entry.id, call_id=data["call_id"],
                                         output=data["output"]))
        return items

    async def _run_response(
        self, active: _ActiveResponse, context: list[Entry] | None, parts: dict[str, Any]
    ) -> None:
        builder = active.builder
        timings = active.timings or TurnTimings()
        loop = asyncio.get_running_loop()
        try:
            entries = context if context is not None else [
                e for e in self.conversation.entries() if e not in builder.outputs]
            items = await self._context(entries, builder, parts["instructions"])
            timings.mark("context_ready")
            options = builder.options
            request = ResponseRequest(
                instructions=parts["instructions"], items=items, tools=parts["tools"], tool_choice=parts["tool_choice"],
                output_modalities=options.output_modalities, voice=options.voice, speed=options.speed,
                max_output_tokens=options.max_output_tokens, metadata=options.metadata)
            stream = self.engine.respond(request, on_mark=timings.mark)
            try:
                async for chunk in stream:
                    if builder.done:
                        break
                    match chunk:
                        case OutputText():
                            if not builder.add_text(chunk.delta):
                                builder.finish("incomplete", {"type": "incomplete", "reason": "max_output_tokens"})
                                break
                        case OutputAudio():
                            builder.add_audio(chunk.pcm, chunk.rate, loop.time())
                            timings.mark("first_audio")
                        case OutputFunctionCall():
                            builder.add_function_call(chunk.name, chunk.arguments)
                        case _:
                            assert_never(chunk)
            finally:
                await stream.aclose()
            builder.finish("completed")
        except asyncio.CancelledError:
            builder.finish("cancelled", {"type": "cancelled", "reason": "client_cancelled"})
            raise
        except Exception as err:  # an engine failure ends this response, not the session
            _LOGGER.exception("session %s: response %s failed", self.id, builder.id)
            builder.finish("failed", {"type": "failed", "error": {
                "type": "server_error", "code": "engine_error", "message": f"The speech engine failed: {err}"}})
        finally:
            self._response_finished(active)

    def _response_finished(self, active: _ActiveResponse) -> None:
        if self._active is active:
            self._active = None
            self._arm_idle_timer(active.builder.audio_ms)
        self._side_responses.discard(active)
        if active.timings is not None and active.timings.marks:
            self.timings.append(active.timings)
            del self.timings[:-100]

    def _cancel_response(self, active: _ActiveResponse, reason: str) -> None:
        active.builder.finish("cancelled", {"type": "cancelled", "reason": reason})
        if active.task is not None:
            active.task.cancel()
        if self._active is active:
            self._active = None
        self._side_responses.discard(active)

    def _response_cancel(self, event: ce.ResponseCancel) -> None:
        candidates = ([self._active] if self._active else []) + list(self._side_responses)
        if event.response_id:
            candidates = [a for a in candidates if a.builder.id == event.response_id]
        live = [a for a in candidates if not a.builder.done]
        if not live:
            raise RealtimeProtocolError(
                message="Cancellation failed: no active response found.", code="response_cancel_not_active")
        self._cancel_response(live[0], "client_cancelled")

    def _output_audio_clear(self) -> None:
        if self._last_response_id is None:
            raise RealtimeProtocolError(message="There is no output audio to clear.", code="invalid_value",
                                        param="type")
        if self._active is not None and not self._active.builder.done:
            self._cancel_response(self._active, "client_cancelled")
        self._send(ev.OutputAudioBufferCleared(response_id=self._last_response_id))

    # ================================================================ idle timeout

    def _arm_idle_timer(self, audio_ms: float) -> None:
        vad = self._input_cfg.turn_detection
        if not isinstance(vad, ServerVad) or vad.idle_timeout_ms is None or self.closed:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        delay = (vad.idle_timeout_ms + audio_ms) / 1000
        self._idle_timer = asyncio.get_running_loop().call_later(delay, self._idle_timeout)

    def _idle_timeout(self) -> None:
        self._idle_timer = None
        if self.closed or self._speech_item is not None or self._active is not None:
            return
        item_id = new_id("item")
        start, end = self.buffer.start, self.buffer.end
        self._send(ev.BufferTimeoutTriggered(item_id=item_id, audio_start_ms=self._ms(start), audio_end_ms=self._ms(end)))
        self._commit(item_id, start, end)
        self._start_response(ce.ResponseParams(), None)


# ==================================================================== helpers


def _duration_words(seconds: float) -> str:
    """"60 minutes" as upstream says it; limits that are not whole minutes in seconds."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    whole = max(1, round(seconds))
    return f"{whole} second{'' if whole == 1 else 's'}"


def _input_resampler(rate: int) -> StreamResampler:
    """Input audio to 16 kHz for VAD and STT.

    soxr's low-quality filter holds back ~6 ms of audio where HQ holds back ~21 ms,
    and every held-back millisecond delays the end of every turn. The speech band
    the VAD and Whisper use is far below where the filters differ.
    """
    return StreamResampler(rate, PIPELINE_RATE, quality="LQ")


def _audio_part(item: dict[str, Any]) -> dict[str, Any]:
    """The input_audio content part of a user message item."""
    return next(part for part in item["content"] if part["type"] == "input_audio")


def _tool_choice_wire(choice: Any) -> str | dict[str, Any]:
    return choice if isinstance(choice, str) else choice.model_dump(exclude_none=True)


def sounds_complete(text: str) -> bool:
    """Whether a partial transcript reads like a finished request (semantic_vad)."""
    text = text.strip()
    if not text or text.endswith(("...", "…", ",", "-")):
        return False
    if _TRAILING_CONTINUATIONS.search(text):
        return False
    return text[-1] in ".!?"


def heard_text(entry: Entry, audio_end_ms: float) -> str:
    """The part of an assistant transcript spoken before `audio_end_ms`.

    Whole spans that ended before the cut stay; the span being spoken keeps the
    share of its words that fit its elapsed time.
    """
    heard: list[str] = []
    for span in entry.spans:
        if span.end_ms <= audio_end_ms:
            heard.append(span.text)
            continue
        if span.start_ms < audio_end_ms and span.end_ms > span.start_ms:
            share = (audio_end_ms - span.start_ms) / (span.end_ms - span.start_ms)
            words = span.text.split()
            heard.append(" ".join(words[: int(len(words) * share)]))
        break
    return "".join(heard).rstrip()
