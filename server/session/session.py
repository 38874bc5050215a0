"""RealtimeSession: one Realtime conversation, independent of any transport.

The session is the port transports drive: typed client events (`submit`), PCM at any
rate (`append_pcm`), the end of the input stream (`end_input`) and what the listener
heard (`report_playback`). It answers through an `EventSink` (typed server events)
and, for transports with a media track, a `MediaSink` (reply audio at the track's
rate). The work is split by concern: `InputStage` (buffer, turn detection,
speculation, commits), `Items` (create/retrieve/delete/truncate), `Responses` (one
plan per response, the engine loop, server-side tools) and `PlaybackTracker`.

Everything here runs on the event loop; model work happens inside the engine, which
keeps it off the loop. Handlers are synchronous so the order of server events always
follows the order of client events; engine work runs in tasks the session owns and
cancels.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import json
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal, assert_never

import numpy as np
from pydantic import ValidationError

from ..audio.formats import AudioFormat, decode, format_for
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
from .input import InputHooks, InputStage, sounds_complete
from .interfaces import (
    EngineSessionInfo,
    EventSink,
    MediaSink,
    NoTools,
    Playback,
    SpeechEngine,
    Toolbox,
)
from .items import Items, heard_text
from .limits import RequestBudget, SessionLimits, duration_words
from .playback import PlaybackTracker
from .response import ResponsePlan
from .responses import ActiveResponse, ResponseHooks, Responses
from .timings import TimingLog, TurnTimings
from .work import WORK_OWNER, Priority, WorkOwner

__all__ = ["RealtimeSession", "SessionOptions", "heard_text", "sounds_complete"]

_LOGGER = logging.getLogger(__name__)


@dataclass
class SessionOptions:
    kind: Literal["realtime", "transcription"] = "realtime"
    model: str = "hearth"
    #: Session defaults in wire form (validated when the session starts).
    defaults: dict[str, Any] | None = None
    max_duration_s: float = 3600.0
    #: Rate of the transport's media track (MQTT satellites, WebRTC); None: audio in events.
    media_rate: int | None = None
    #: Send `output_audio_buffer.started/stopped` from playback reports (WebRTC does).
    playback_events: bool = False
    #: Seconds a server-side tool may take before the session apologises.
    tool_timeout_s: float = 2.5
    #: The satellite this session serves, if any (engines and tools may care).
    satellite_id: str | None = None
    limits: SessionLimits = field(default_factory=SessionLimits)


class RealtimeSession:
    def __init__(
        self,
        engine: SpeechEngine,
        sink: EventSink,
        options: SessionOptions | None = None,
        *,
        media: MediaSink | None = None,
        toolbox: Toolbox | None = None,
    ) -> None:
        self.options = options or SessionOptions()
        self.sink = sink
        self.media = media
        self.id = new_id("sess")
        self.conversation_id = new_id("conv")
        self.created_at = time.time()
        self.config = self._initial_config()
        self.conversation = Conversation()
        self.toolbox = toolbox or NoTools()
        self.engine = engine.open(EngineSessionInfo(session_id=self.id, kind=self.options.kind,
                                                    satellite_id=self.options.satellite_id))
        self.timings = TimingLog(self.id)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._idle_timer: asyncio.TimerHandle | None = None
        self._turn_timings: TurnTimings | None = None
        per_minute = self.options.limits.responses_per_minute
        self._requests = RequestBudget(per_minute) if per_minute > 0 else None
        self.closed = False
        self.items = Items(self.conversation, self._send, lambda: self._input_format, lambda: self._output_format,
                           lambda item_id: self.responses.in_progress(item_id), self.options.limits)
        self.input = InputStage(
            InputHooks(emit=self._send, spawn=self._spawn, config=lambda: self.config,
                       speech_started=self._speech_started, turn_committed=self._turn_committed,
                       turn_timings=self._set_turn_timings, reply_plan=self._reply_plan,
                       speculate=self._speculate_reply, drop_speculation=lambda: self.responses.drop_speculation(),
                       reply_first_output=lambda: self.responses.held_first_output()),
            self.conversation, self.engine.vad, self.engine.transcriber, self._input_format.rate,
            self.options.limits, listener=getattr(self.engine, "listener", None),
            turn_end=getattr(self.engine, "end_of_turn", None))
        self.responses = Responses(
            ResponseHooks(emit=self._send, spawn=self._spawn, session_id=self.id, transcript=self.input.transcribe_entry,
                          finished=self._response_finished, tool_timeout_s=self.options.tool_timeout_s,
                          max_context_items=self.options.limits.max_context_items),
            self.engine, self.conversation, self.items, self.toolbox, self.timings, media)
        self.playback = PlaybackTracker(self.responses, self.items, self._send,
                                        buffer_events=self.options.playback_events, on_finished=self._playback_done)

    # ================================================================ lifecycle

    def _initial_config(self) -> RealtimeConfig | TranscriptionConfig:
        expires = int(self.created_at + self.options.max_duration_s)
        base = {**(self.options.defaults or {}), "type": self.options.kind, "id": self.id, "expires_at": expires}
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
            message=f"Your session hit the maximum duration of {duration_words(self.options.max_duration_s)}.",
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
        self._cancel_idle_timer()
        self.responses.close()
        for task in list(self._tasks):
            task.cancel()
        try:
            self.engine.close()
        except Exception:  # the session is over either way
            _LOGGER.exception("session %s: engine session close failed", self.id)

    async def wait_closed(self, timeout: float = 2.0) -> None:
        """After `close()`: let the cancelled tasks finish unwinding (their streams close cleanly)."""
        tasks = [task for task in self._tasks if not task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def _spawn(self, coro: Any, name: str, priority: Priority = "live") -> asyncio.Task[Any]:
        """A task the session owns; model work it submits is this session's, at `priority`."""
        context = contextvars.copy_context()
        context.run(WORK_OWNER.set, WorkOwner(self.id, priority))
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.id}:{name}", context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ================================================================ output

    def _send(self, event: ev.ServerEvent) -> None:
        if not self.closed:
            self.sink.send(event)

    def _error(self, error: RealtimeProtocolError, event_id: str | None = None) -> None:
        self._send(ev.Error(error=ev.ErrorDetail(
            type=error.type, code=error.code, message=error.message, param=error.param,
            event_id=error.event_id if error.event_id is not None else event_id)))

    def protocol_error(self, error: RealtimeProtocolError) -> None:
        """Report a transport-level problem (a frame that does not parse, say) as an `error` event."""
        _LOGGER.info("session %s: %s (%s)", self.id, error.message, error.code)
        self._error(error)

    def session_wire(self) -> dict[str, Any]:
        return self.config.wire()

    # ================================================================ the port: client events

    def handle_text(self, text: str) -> None:
        """Parse one client text frame and submit it; a frame that does not parse is an `error` event."""
        if self.closed:
            return
        try:
            event = ce.parse_client_event(text)
        except RealtimeProtocolError as err:
            _LOGGER.info("session %s: rejected client event: %s", self.id, err.message)
            self._error(err)
            return
        self.submit(event)

    def submit(self, event: ce.ClientEvent) -> None:
        """Handle one typed client event; every failure becomes an `error` event."""
        if self.closed:
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
                self.input.clear()
            case ce.ConversationItemCreate():
                self._item_create(event)
            case ce.ConversationItemRetrieve():
                self.items.retrieve(event)
            case ce.ConversationItemTruncate():
                self.items.truncate(event)
            case ce.ConversationItemDelete():
                self.items.delete(event)
                self.input.forget(event.item_id)
            case ce.ResponseCreate():
                self._response_create(event)
            case ce.ResponseCancel():
                self.responses.cancel_event(event.response_id)
            case ce.OutputAudioBufferClear():
                self._output_audio_clear()
            case _:
                assert_never(event)

    # ================================================================ the port: audio and playback

    def append_pcm(self, pcm: np.ndarray, rate: int) -> None:
        """int16 mono input audio at any rate (transports without base64 events use this)."""
        if self.closed or not len(pcm):
            return
        self.input.append(pcm, rate)

    def end_input(self) -> bool:
        """The input stream ended: close the turn in progress now. True when a turn was committed."""
        if self.closed:
            return False
        return self.input.end()

    def report_playback(self, playback: Playback) -> None:
        """How much of a response the listener heard; `finished` cuts the unheard rest."""
        if not self.closed:
            self.playback.report(playback)

    # ================================================================ session.update

    @property
    def _input_cfg(self) -> Any:
        return self.config.audio.input

    @property
    def _input_format(self) -> AudioFormat:
        return format_for(self._input_cfg.format.type)

    @property
    def _output_format(self) -> AudioFormat:
        return format_for(self.config.audio.output.format.type)

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
        merged = merge_update(self.session_wire(), update)
        try:
            new = type(self.config).model_validate(merged)
        except ValidationError as err:
            raise from_validation_error(err, merged, "session") from None
        if isinstance(new, RealtimeConfig):
            check_tools(list(new.tools), self.options.limits, "session.tools")
        self.config = new
        self.input.reconfigure(self._input_format.rate)
        self._send(ev.SessionUpdated(session=self.session_wire()))

    # ================================================================ input

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
        self.input.check_room()
        self.append_pcm(decode(fmt, raw), fmt.rate)

    def _commit_manual(self) -> None:
        self.input.commit_manual()

    def _speech_started(self) -> None:
        self._cancel_idle_timer()
        vad = self._input_cfg.turn_detection
        if vad is not None and vad.interrupt_response:
            self.responses.interrupt("turn_detected")
            # A reply fully generated may still be playing on a media track: stop it there too.
            last = self.responses.last_id
            if self.options.playback_events and last is not None and self.playback.playing(last):
                self.playback.cleared(last)
                self._send(ev.OutputAudioBufferCleared(response_id=last))

    def _turn_committed(self, item_id: str, vad: ServerVad | SemanticVad) -> None:
        if not vad.create_response or self.config.type != "realtime":
            return
        if self.responses.busy:
            _LOGGER.info("session %s: turn ended while a response is active; not starting another", self.id)
            return
        self._start_response(ce.ResponseParams())

    def _reply_plan(self) -> ResponsePlan | None:
        """The plan a committed turn's reply would get now (None: a transcription session)."""
        if self.config.type != "realtime":
            return None
        return self._plan(ce.ResponseParams())

    def _speculate_reply(self, item_id: str, text: str) -> None:
        """A trusted transcript of the turn so far: prepare the reply the commit would start."""
        vad = self._input_cfg.turn_detection
        if vad is None or not vad.create_response or self.config.type != "realtime" or self.responses.busy:
            _LOGGER.debug("session %s: no speculative reply (busy: %s)", self.id, self.responses.busy)
            return
        plan = self._reply_plan()
        if plan is not None:
            self.responses.speculate(item_id, text, plan)

    def _set_turn_timings(self, timings: TurnTimings) -> None:
        self._turn_timings = timings

    # ================================================================ items

    def _item_create(self, event: ce.ConversationItemCreate) -> None:
        if self.config.type != "realtime":
            raise RealtimeProtocolError(message="Transcription sessions have no conversation items.",
                                        code="invalid_value", param="type")
        entry = self.items.create(event)
        if entry.audio is not None and not _has_transcript(entry):
            self.input.transcribe_entry(entry)

    # ================================================================ responses

    def _response_create(self, event: ce.ResponseCreate) -> None:
        if self.config.type != "realtime":
            raise RealtimeProtocolError(message="Transcription sessions cannot create responses.",
                                        code="invalid_value", param="type")
        params = event.response or ce.ResponseParams()
        active = self.responses.active
        if (params.conversation or "auto") == "auto" and active is not None:
            raise RealtimeProtocolError(
                message=f"Conversation already has an active response in progress: {active.builder.id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response")
        limit = self.options.limits.max_side_responses
        if params.conversation == "none" and len(self.responses.side) >= limit:
            raise RealtimeProtocolError(
                message=f"Too many out-of-band responses in progress (at most {limit}); wait for one to finish.",
                code="too_many_concurrent_responses")
        if params.tools is not None:
            check_tools(list(params.tools), self.options.limits, "response.tools")
        budget = self._requests
        if budget is not None and not budget.available():
            raise RealtimeProtocolError(
                message=f"Rate limit reached for requests per minute (RPM) on this session: Limit {budget.limit}, "
                f"Used {budget.limit}, Requested 1. Please try again in {budget.retry_after():.1f}s.",
                code="rate_limit_exceeded", type="requests")
        active = self._start_response(params)
        if budget is not None:
            budget.take()
            # As upstream does, the client learns where it stands after the response's `response.done`.
            active.builder.after_done.append(self._rate_limits_updated)

    def _rate_limits_updated(self) -> None:
        budget = self._requests
        if budget is not None:
            self._send(ev.RateLimitsUpdated(rate_limits=[ev.RateLimit(
                name="requests", limit=budget.limit, remaining=budget.remaining(),
                reset_seconds=budget.reset_seconds())]))

    def say(self, text: str) -> str | None:
        """Speak `text` word for word as the next response; its id, or None when a response is active.

        For transports that start a turn themselves (an announcement, a timer's line on a
        satellite): they have no client to send `response.create`, and the line must be
        spoken as given, not composed by the brain.
        """
        if self.closed or self.config.type != "realtime" or self.responses.active is not None:
            return None
        plan = replace(self._plan(ce.ResponseParams()), say=text)
        self._cancel_idle_timer()
        return self.responses.start(plan).builder.id

    def _plan(self, params: ce.ResponseParams) -> ResponsePlan:
        """Resolve one response's settings from its parameters and the session's."""
        cfg = self.config
        in_conversation = (params.conversation or "auto") == "auto"
        entries = tuple(self._resolve_input(params)) if params.input is not None else None
        out = params.audio.output if params.audio and params.audio.output else None
        fmt = format_for(out.format.type) if out and out.format else self._output_format
        voice = out.voice if out and out.voice else cfg.audio.output.voice
        voice_name = voice if isinstance(voice, str) else voice["id"] if isinstance(voice, dict) else voice.id
        max_tokens = params.max_output_tokens if params.max_output_tokens is not None else cfg.max_output_tokens
        client_tools = params.tools if params.tools is not None else cfg.tools
        tools = [t.model_dump(exclude_none=True) for t in client_tools if t.type == "function"]
        declared = {t["name"] for t in tools}
        tools += [dict(t) for t in self.toolbox.definitions() if t["name"] not in declared]
        instructions = params.instructions if params.instructions is not None else cfg.instructions
        extra = self.toolbox.instructions()
        if extra:
            instructions = f"{instructions}\n\n{extra}" if instructions else extra
        choice = params.tool_choice if params.tool_choice is not None else cfg.tool_choice
        return ResponsePlan(
            output_modalities=list(params.output_modalities or cfg.output_modalities),
            output_format=fmt,
            voice=voice_name,
            speed=cfg.audio.output.speed,
            in_conversation=in_conversation,
            conversation_id=self.conversation_id if in_conversation else None,
            max_output_tokens=None if max_tokens == "inf" else max_tokens,
            metadata=params.metadata,
            instructions=instructions,
            tools=tuple(tools),
            tool_choice=choice if isinstance(choice, str) else choice.model_dump(exclude_none=True),
            input=entries,
            audio_in_events=self.media is None,
            media_rate=self.options.media_rate if self.media is not None else None,
        )

    def _start_response(self, params: ce.ResponseParams) -> ActiveResponse:
        plan = self._plan(params)
        timings = self._turn_timings
        self._turn_timings = None
        if plan.in_conversation:
            self._cancel_idle_timer()
        return self.responses.start(plan, timings)

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
                entries.append(self.items.entry_from_client(item.model_dump(exclude_none=True)))
        return entries

    def _output_audio_clear(self) -> None:
        last = self.responses.last_id
        if last is None:
            raise RealtimeProtocolError(message="There is no output audio to clear.", code="invalid_value",
                                        param="type")
        active = self.responses.active
        if active is not None and not active.builder.done:
            self.responses.cancel(active, "client_cancelled")
        self.playback.cleared(last)
        self._send(ev.OutputAudioBufferCleared(response_id=last))

    def _response_finished(self, active: ActiveResponse) -> None:
        # With a media track the idle timer waits for the listener's playback to finish
        # (`_playback_done`); otherwise for as long as the generated audio takes to play.
        if self.media is None:
            self._arm_idle_timer(active.builder.audio_ms)
        elif active.builder.audio_ms == 0:
            self._arm_idle_timer(0)

    def _playback_done(self) -> None:
        self._arm_idle_timer(0)

    # ================================================================ idle timeout

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _arm_idle_timer(self, audio_ms: float) -> None:
        vad = self._input_cfg.turn_detection
        if not isinstance(vad, ServerVad) or vad.idle_timeout_ms is None or self.closed:
            return
        self._cancel_idle_timer()
        delay = (vad.idle_timeout_ms + audio_ms) / 1000
        self._idle_timer = asyncio.get_running_loop().call_later(delay, self._idle_timeout)

    def _idle_timeout(self) -> None:
        self._idle_timer = None
        if self.closed or self.input.in_speech or self.responses.busy:
            return
        self.input.commit_all()
        self._start_response(ce.ResponseParams())


# ==================================================================== helpers


def check_tools(tools: list[Any], limits: SessionLimits, param: str) -> None:
    """Refuse tool lists whose size would make every turn of the session slow."""
    if len(tools) > limits.max_tools:
        raise RealtimeProtocolError(
            message=f"Too many tools: {len(tools)} (at most {limits.max_tools}).", code="invalid_value", param=param)
    for index, tool in enumerate(tools):
        data = tool.model_dump(exclude_none=True) if hasattr(tool, "model_dump") else tool
        size = len(json.dumps(data, separators=(",", ":")))
        if size > limits.max_tool_bytes:
            raise RealtimeProtocolError(
                message=f"Tool definition too large: {size} bytes (at most {limits.max_tool_bytes}).",
                code="invalid_value", param=f"{param}[{index}]")


def _has_transcript(entry: Entry) -> bool:
    part = next((p for p in entry.item.get("content", []) if p.get("type") == "input_audio"), None)
    return part is not None and part.get("transcript") is not None
