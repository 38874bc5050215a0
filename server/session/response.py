"""One response's output items and the exact event sequence upstream sends for them.

The session drives a `ResponseBuilder` with engine chunks; the builder emits
`response.output_item.*`, `response.content_part.*`, the delta events and the
`conversation.item.*` events for items written to the default conversation.
Finishing is synchronous and idempotent so a cancel can close a response at
once, whatever the engine task is doing.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from ..audio.formats import AudioFormat, encode
from ..audio.resample import StreamResampler
from ..protocol import server_events as ev
from ..protocol.ids import new_id
from ..protocol.items import AssistantMessage, FunctionCall
from .conversation import Conversation, Entry, SpokenSpan
from .interfaces import ContextItem, MediaSink, ReplyAudio, ResponseRequest
from .usage import Usage, text_tokens

#: Longest audio carried by one `response.output_audio.delta`.
DELTA_MS = 250

Emit = Callable[[ev.ServerEvent], None]
Status = Literal["completed", "cancelled", "failed", "incomplete"]


@dataclass
class _Message:
    entry: Entry
    output_index: int
    modality: Literal["audio", "text"]
    text: list[str] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    audio_samples: int = 0
    open_span: SpokenSpan | None = None


@dataclass
class _Call:
    """A function call item whose arguments are still streaming."""

    entry: Entry
    output_index: int
    name: str
    call_id: str
    arguments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ResponsePlan:
    """One response's settings, resolved once when it is created and carried to the engine."""

    output_modalities: list[str]
    output_format: AudioFormat
    voice: str
    speed: float
    in_conversation: bool
    conversation_id: str | None
    max_output_tokens: int | None
    metadata: dict[str, str] | None
    instructions: str = ""
    #: Realtime function definitions offered to the engine (the client's and the server's).
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] = "auto"
    temperature: float | None = None
    #: Explicit `response.input` entries; None means the default conversation.
    input: tuple[Entry, ...] | None = None
    #: Speak exactly this (the session's own apology after a failed server-side tool).
    say: str | None = None
    #: How many server-side tool rounds led to this response.
    tool_round: int = 0
    #: True over WebSocket (audio travels in events); False where a media track carries it.
    audio_in_events: bool = True
    #: The media track's rate, where one carries the audio.
    media_rate: int | None = None

    def engine_request(self, items: list[ContextItem]) -> ResponseRequest:
        """The engine's view of this response."""
        return ResponseRequest(
            instructions=self.instructions, items=items, tools=list(self.tools), tool_choice=self.tool_choice,
            output_modalities=self.output_modalities, voice=self.voice, speed=self.speed,
            max_output_tokens=self.max_output_tokens, metadata=self.metadata, temperature=self.temperature,
            say=self.say)

    def follow_up(self, *, say: str | None = None) -> ResponsePlan:
        """The response that continues after server-side tools answered."""
        return replace(self, input=None, say=say, tool_round=self.tool_round + 1)


def format_wire(fmt: AudioFormat) -> dict[str, Any]:
    """The Realtime JSON form of an audio format (`rate` only for PCM)."""
    return {"type": fmt.type, "rate": fmt.rate} if fmt.type == "audio/pcm" else {"type": fmt.type}


class ResponseBuilder:
    def __init__(
        self,
        plan: ResponsePlan,
        conversation: Conversation,
        emit: Emit,
        media: MediaSink | None = None,
    ) -> None:
        self.id = new_id("resp")
        self.options = plan
        self.conversation = conversation
        self.emit = emit
        self.media = media
        self.status: Literal["in_progress"] | Status = "in_progress"
        self.usage = Usage()
        #: Called right after `response.done` is sent (events that follow it, e.g. rate limits).
        self.after_done: list[Callable[[], None]] = []
        self.outputs: list[Entry] = []
        self._message: _Message | None = None
        #: Function calls open for streamed arguments, by call id.
        self._calls: dict[str, _Call] = {}
        self._resampler: StreamResampler | None = None
        self._resampler_rate = 0
        self.first_audio_at: float | None = None

    # ------------------------------------------------------------ wire objects

    @property
    def audio_rate(self) -> int:
        """Rate of the audio this response keeps and delivers (the media track's, else the format's)."""
        return self.options.media_rate or self.options.output_format.rate

    @property
    def spoken(self) -> Entry | None:
        """The assistant message that carries this response's audio, if any."""
        return next((e for e in self.outputs if e.item.get("type") == "message" and e.audio is not None), None) \
            if self._message is None else self._message.entry

    @property
    def audio_mode(self) -> bool:
        return "audio" in self.options.output_modalities

    @property
    def done(self) -> bool:
        return self.status != "in_progress"

    def wire(self, status_details: dict[str, Any] | None = None, *, final: bool = False) -> dict[str, Any]:
        options = self.options
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": self.status,
            "status_details": status_details,
            "output": [entry.item for entry in self.outputs] if final else [],
            "conversation_id": options.conversation_id,
            "output_modalities": options.output_modalities,
            "max_output_tokens": options.max_output_tokens if options.max_output_tokens else "inf",
            "audio": {"output": {"format": format_wire(options.output_format), "voice": options.voice}},
            "usage": self.usage.wire() if final else None,
            "metadata": options.metadata,
        }

    def start(self) -> None:
        self.emit(ev.ResponseCreated(response=self.wire()))

    # ------------------------------------------------------------ items

    def _add_item(self, item: dict[str, Any]) -> Entry:
        entry = Entry(item=item)
        output_index = len(self.outputs)
        self.outputs.append(entry)
        self.emit(ev.OutputItemAdded(response_id=self.id, output_index=output_index, item=dict(item)))
        if self.options.in_conversation:
            previous = self.conversation.insert(entry)
            self.emit(ev.ConversationItemAdded(previous_item_id=previous, item=dict(item)))
        return entry

    def _item_done(self, entry: Entry, output_index: int) -> None:
        if self.options.in_conversation and entry.id in self.conversation:
            previous = self.conversation.previous_id(entry.id)
            self.emit(ev.ConversationItemDone(previous_item_id=previous, item=entry.item))
        self.emit(ev.OutputItemDone(response_id=self.id, output_index=output_index, item=entry.item))

    def _ensure_message(self) -> _Message:
        if self._message is None:
            modality = "audio" if self.audio_mode else "text"
            item = AssistantMessage(id=new_id("item"), object="realtime.item", type="message", role="assistant",
                                    status="in_progress", content=[]).wire()
            entry = self._add_item(item)
            self._message = _Message(entry=entry, output_index=len(self.outputs) - 1, modality=modality)
            part = {"type": "audio", "transcript": ""} if modality == "audio" else {"type": "text", "text": ""}
            self.emit(ev.ContentPartAdded(response_id=self.id, item_id=entry.id, output_index=self._message.output_index,
                                          content_index=0, part=part))
        return self._message

    def _part_ids(self, message: _Message) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": message.entry.id, "output_index": message.output_index, "content_index": 0}

    # ------------------------------------------------------------ engine chunks

    def add_text(self, delta: str) -> bool:
        """Stream a text delta; returns False when max_output_tokens stops the response."""
        if not delta:
            return True
        message = self._ensure_message()
        limit = self.options.max_output_tokens
        if limit is not None and self.usage.output_text + text_tokens(delta) > limit:
            return False
        self.usage.output_text += text_tokens(delta)
        message.text.append(delta)
        if message.modality == "audio":
            start_ms = 1000.0 * message.audio_samples / self.audio_rate
            if message.open_span is None or message.open_span.end_ms > message.open_span.start_ms:
                message.open_span = SpokenSpan(text=delta, start_ms=start_ms, end_ms=start_ms)
                message.entry.spans.append(message.open_span)
            else:
                message.open_span.text += delta
            self.emit(ev.OutputAudioTranscriptDelta(**self._part_ids(message), delta=delta))
        else:
            self.emit(ev.OutputTextDelta(**self._part_ids(message), delta=delta))
        return True

    def add_audio(self, pcm: np.ndarray, rate: int, now: float) -> None:
        if not self.audio_mode:
            return
        message = self._ensure_message()
        if self._resampler is None or self._resampler_rate != rate:
            self._resampler = StreamResampler(rate, self.audio_rate)
            self._resampler_rate = rate
        self._push_audio(message, self._resampler.process(pcm), now)

    def _push_audio(self, message: _Message, pcm: np.ndarray, now: float) -> None:
        if not len(pcm):
            return
        rate = self.audio_rate
        message.audio.append(pcm)
        message.audio_samples += len(pcm)
        if message.open_span is not None:
            message.open_span.end_ms = 1000.0 * message.audio_samples / rate
        self.usage.output_audio_ms += 1000.0 * len(pcm) / rate
        if self.first_audio_at is None:
            self.first_audio_at = now
        if self.media is not None:
            self.media.reply_audio(ReplyAudio(self.id, message.entry.id, pcm, rate))
        if not self.options.audio_in_events:
            return
        fmt = self.options.output_format
        step = fmt.rate * DELTA_MS // 1000
        for offset in range(0, len(pcm), step):
            payload = base64.b64encode(encode(fmt, pcm[offset : offset + step])).decode("ascii")
            self.emit(ev.OutputAudioDelta(**self._part_ids(message), delta=payload))

    def _open_call(self, name: str, call_id: str) -> _Call:
        self._close_message("completed")
        item = FunctionCall(id=new_id("item"), object="realtime.item", type="function_call", status="in_progress",
                            name=name, call_id=call_id, arguments="").wire()
        entry = self._add_item(item)
        call = self._calls[call_id] = _Call(entry=entry, output_index=len(self.outputs) - 1, name=name, call_id=call_id)
        return call

    def _call_ids(self, call: _Call) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": call.entry.id, "output_index": call.output_index,
                "call_id": call.call_id}

    def add_function_call_delta(self, call_id: str, name: str, delta: str) -> None:
        """A piece of a call's arguments: the first opens its item, each one is a delta event."""
        call = self._calls.get(call_id) or self._open_call(name, call_id)
        if delta:
            call.arguments.append(delta)
            self.emit(ev.FunctionCallArgumentsDelta(**self._call_ids(call), delta=delta))

    def add_function_call(self, name: str, arguments: str, call_id: str | None = None) -> Entry:
        """A complete function call: closes the call its pieces opened, or makes the whole item at once."""
        call_id = call_id or new_id("call")
        call = self._calls.get(call_id)
        if call is None:
            call = self._open_call(name, call_id)
            self.emit(ev.FunctionCallArgumentsDelta(**self._call_ids(call), delta=arguments))
        self._close_call(call, "completed", arguments)
        return call.entry

    def _close_call(self, call: _Call, status: str, arguments: str | None = None) -> None:
        """`arguments.done` for a completed call only: a cut-off call's arguments are not a call to run."""
        del self._calls[call.call_id]
        if arguments is None:
            arguments = "".join(call.arguments)
        else:
            self.emit(ev.FunctionCallArgumentsDone(**self._call_ids(call), name=call.name, arguments=arguments))
        self.usage.output_text += text_tokens(call.name) + text_tokens(arguments)
        call.entry.item = {**call.entry.item, "status": status, "arguments": arguments}
        self._item_done(call.entry, call.output_index)

    # ------------------------------------------------------------ finishing

    def _close_message(self, status: str, *, flush: bool = True) -> None:
        message = self._message
        if message is None:
            return
        self._message = None
        if self._resampler is not None:
            # A cancelled response sends no audio after the cancel: the resampler's tail is dropped.
            if flush:
                self._push_audio(message, self._resampler.process(np.zeros(0, dtype=np.int16), last=True), 0.0)
            self._resampler = None
        text = "".join(message.text)
        ids = self._part_ids(message)
        entry = message.entry
        if message.modality == "audio":
            if self.options.audio_in_events:
                self.emit(ev.OutputAudioDone(**ids))
            self.emit(ev.OutputAudioTranscriptDone(**ids, transcript=text))
            part = {"type": "audio", "transcript": text}
            content = [{"type": "output_audio", "transcript": text}]
            entry.audio = np.concatenate(message.audio) if message.audio else np.zeros(0, dtype=np.int16)
            entry.audio_rate = self.audio_rate
        else:
            self.emit(ev.OutputTextDone(**ids, text=text))
            part = {"type": "text", "text": text}
            content = [{"type": "output_text", "text": text}]
        self.emit(ev.ContentPartDone(**ids, part=part))
        entry.item = {**entry.item, "status": status, "content": content}
        self._item_done(entry, message.output_index)

    def finish(self, status: Status, details: dict[str, Any] | None = None) -> bool:
        """Close open items and send `response.done`; False if already finished."""
        if self.done:
            return False
        self._close_message("completed" if status == "completed" else "incomplete", flush=status != "cancelled")
        for call in list(self._calls.values()):  # arguments still streaming when the response ended
            self._close_call(call, "incomplete")
        self.status = status
        self.emit(ev.ResponseDone(response=self.wire(details, final=True)))
        for callback in self.after_done:
            callback()
        return True

    @property
    def audio_ms(self) -> float:
        return self.usage.output_audio_ms
