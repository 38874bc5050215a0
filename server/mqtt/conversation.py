"""One satellite conversation mapped onto one RealtimeSession.

The conversation is the session's transport, like the WebSocket handler is for a
Realtime client: it turns wire messages into session input and session output into
wire messages, and holds no conversation logic of its own (turns, responses,
cancellation and truncation stay in the session). It is its session's `EventSink`,
reads the few server events it needs (speech started/stopped, response
created/done, the reply transcript), and gets the reply audio through
`on_output_audio`, so the first reply frame leaves the moment the engine has
synthesized the first chunk.

Phases::

    LISTENING ──server VAD ends the turn──▶ THINKING ──first audio──▶ SPEAKING
        ▲                                                              │ response.done
        │  playback-finished with continue_conversation                ▼
        └────────────────────────────────────────────────────── AWAITING_ACK
                                 (else session-end; a barge-in from THINKING,
                                  SPEAKING or AWAITING_ACK goes back to LISTENING)

Everything runs on the event loop; every method is synchronous, so the order of
wire messages always follows the order of events. Timers are loop timer handles
owned (and cancelled) here; there are no tasks.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hearth.wire import (
    AudioFrame,
    AudioStop,
    AudioStopReason,
    BargeIn,
    ErrorCode,
    ErrorEvent,
    Message,
    PlaybackFinished,
    ReplyEnd,
    ReplyStart,
    SessionEnd,
    SessionEndReason,
    StopPlayback,
)
from hearth.wire.audio import SAMPLE_RATE as WIRE_RATE

from ..audio.formats import format_for
from ..audio.resample import StreamResampler
from ..protocol import server_events as ev
from ..session.session import EventSink, RealtimeSession

_LOGGER = logging.getLogger(__name__)

#: soxr quality of the mic's 16 -> 24 kHz step. The session resamples to 16 kHz again for its
#: VAD and STT, so this step only needs to be transparent, not hi-fi, and must be quick:
#: soxr's HQ filter holds back about 30 ms of a streamed chunk, which delayed every turn's
#: end by a VAD frame (+33 ms p50, bench/satellite_e2e.py); "QQ" holds back under 1 ms, and
#: 16 -> 24 -> 16 kHz of piper speech still measures 40 dB SNR.
MIC_UPSAMPLE_QUALITY = "QQ"

#: Silence appended, in steps, when the satellite ends its stream while the server's VAD
#: still hears speech: the VAD then ends the turn at once instead of waiting for audio
#: that will never come. Capped (semantic_vad waits up to 8 s).
PAD_STEP_MS = 100
PAD_MAX_MS = 10_000

#: Builds the conversation's session around its sink and reply-audio callback.
SessionFactory = Callable[[EventSink, Callable[[str, np.ndarray], None]], RealtimeSession]


class Outbox(Protocol):
    """Where a conversation's wire messages go (the bridge publishes them)."""

    def command(self, satellite_id: str, message: Message) -> None: ...

    def reply_frame(self, satellite_id: str, frame: AudioFrame) -> None: ...


class Phase(enum.Enum):
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    AWAITING_ACK = "awaiting-ack"
    CLOSED = "closed"


@dataclass(frozen=True)
class ConversationSettings:
    #: Longest reply frame (20-40 ms per the protocol).
    reply_frame_ms: int = 40
    #: A listening session with no mic frame for this long is closed.
    stream_timeout_s: float = 5.0
    #: After the reply's audio would have finished playing, wait this long for the ack.
    ack_timeout_s: float = 10.0


@dataclass
class _Reply:
    """The response being spoken."""

    response_id: str
    item_id: str | None = None
    text: str = ""
    started: bool = False
    done: bool = False
    seq: int = 0
    #: Reply audio handed to the wire so far (ms at the wire rate).
    sent_ms: float = 0.0
    resampler: StreamResampler | None = None


class SatelliteConversation:
    def __init__(
        self,
        satellite_id: str,
        session_id: str,
        outbox: Outbox,
        session_factory: SessionFactory,
        settings: ConversationSettings,
        on_closed: Callable[[SatelliteConversation, str], None],
    ) -> None:
        self.satellite_id = satellite_id
        self.session_id = session_id
        self.outbox = outbox
        self.settings = settings
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self.phase = Phase.LISTENING
        self._speech_active = False
        self._reply: _Reply | None = None
        self._in_resampler = StreamResampler(WIRE_RATE, 24_000, quality=MIC_UPSAMPLE_QUALITY)
        self._last_frame_at = self._loop.time()
        self._last_seq: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.close_reason: str | None = None
        #: Turns answered (tests read it).
        self.turns = 0
        sink = ConversationSink()
        sink.conversation = self
        self.session = session_factory(sink, self.on_output_audio)
        self._session_rate = format_for(self.session.config.audio.input.format.type).rate
        if self._session_rate != 24_000:
            self._in_resampler = StreamResampler(WIRE_RATE, self._session_rate, quality=MIC_UPSAMPLE_QUALITY)
        self._arm_stream_timer()
        _LOGGER.info("%s: session %s accepted (Realtime %s)", satellite_id, session_id, self.session.id)

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    # ================================================================ satellite → server

    def feed(self, frame: AudioFrame) -> None:
        """A mic frame for this session."""
        if self.phase is not Phase.LISTENING:
            return  # in flight after the turn ended: never let it start another turn
        if self._last_seq is not None and frame.seq > self._last_seq + 1:
            _LOGGER.debug("%s: mic frames %d..%d lost", self.satellite_id, self._last_seq + 1, frame.seq - 1)
        self._last_seq = frame.seq
        self._last_frame_at = self._loop.time()
        if frame.pcm:
            pcm = np.frombuffer(frame.pcm, dtype="<i2").astype(np.int16)
            self._append(self._in_resampler.process(pcm))
        if frame.end:
            self._end_of_stream()

    def audio_stop(self, message: AudioStop) -> None:
        """The satellite stopped streaming."""
        if message.reason in (AudioStopReason.END_OF_SPEECH, AudioStopReason.MAX_LENGTH):
            self._end_of_stream()
        else:  # no-speech, cancelled (muted, shut down) or a reason from a newer satellite
            self.close(f"satellite stopped: {message.reason}")

    def playback_finished(self, message: PlaybackFinished) -> None:
        reply = self._reply
        if self.phase not in (Phase.SPEAKING, Phase.AWAITING_ACK):
            _LOGGER.debug("%s: playback-finished while %s; ignored", self.satellite_id, self.phase.value)
            return
        if self.phase is Phase.SPEAKING:  # the satellite gave up before the reply ended
            self._cancel_response()
        self._truncate(reply, message.played_ms if message.interrupted else None)
        if message.interrupted:
            self.close("playback stopped")
        elif message.continue_conversation:
            _LOGGER.info("%s: listening again (continued conversation)", self.satellite_id)
            self._listen()
        else:
            self.close("done", notify=SessionEndReason.DONE)

    def barge_in(self, message: BargeIn) -> None:
        """The wake word during the reply: stop it at once and take the next turn."""
        if self.phase is Phase.LISTENING:
            return  # already listening (a duplicate)
        reply = self._reply
        _LOGGER.info("%s: barge-in after %s ms of reply", self.satellite_id, message.played_ms)
        self._cancel_response()
        self.outbox.command(self.satellite_id, StopPlayback(self.session_id))
        self._truncate(reply, message.played_ms if message.played_ms is not None else 0)
        self._listen()

    # ================================================================ EventSink (session → here)

    def send(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == ev.SpeechStarted.TYPE:
            self._speech_active = True
        elif kind == ev.SpeechStopped.TYPE:
            self._speech_active = False
            self._turn_ended()
        elif kind == ev.ResponseCreated.TYPE:
            self._reply = _Reply(response_id=event["response"]["id"])
        elif kind == ev.OutputItemAdded.TYPE:
            item = event["item"]
            reply = self._reply
            if reply is not None and event["response_id"] == reply.response_id and item.get("role") == "assistant":
                reply.item_id = item["id"]
        elif kind == ev.OutputAudioTranscriptDone.TYPE:
            reply = self._reply
            if reply is not None and event["response_id"] == reply.response_id:
                reply.text = event["transcript"]
        elif kind == ev.ResponseDone.TYPE:
            response = event["response"]
            if self._reply is not None and response["id"] == self._reply.response_id:
                self._response_done(response)
        elif kind == ev.TranscriptionCompleted.TYPE:
            _LOGGER.info("%s heard: %r", self.satellite_id, event["transcript"])
        elif kind == ev.Error.TYPE:
            _LOGGER.warning("%s: session error: %s", self.satellite_id, event["error"].get("message"))

    def close_sink(self, code: int, reason: str) -> None:
        self.close(f"session closed ({reason})", notify=SessionEndReason.TIMEOUT)

    def on_output_audio(self, response_id: str, pcm: np.ndarray) -> None:
        """Reply audio at the session's output rate, straight from the response builder."""
        reply = self._reply
        if self.closed or reply is None or response_id != reply.response_id:
            return  # a cancelled response flushing its tail, or a closed session
        if reply.resampler is None:
            rate = format_for(self.session.config.audio.output.format.type).rate
            reply.resampler = StreamResampler(rate, WIRE_RATE)
        if not reply.started:
            reply.started = True
            self.phase = Phase.SPEAKING
            self.outbox.command(self.satellite_id, ReplyStart(self.session_id))
        self._send_reply(reply, reply.resampler.process(pcm))

    # ================================================================ internals

    def _append(self, pcm: np.ndarray) -> None:
        if len(pcm):
            self.session.append_audio(pcm)

    def _end_of_stream(self) -> None:
        """The satellite will send no more audio for this turn."""
        if self.phase is not Phase.LISTENING:
            return
        self._append(self._in_resampler.process(np.zeros(0, dtype=np.int16), last=True))
        step = np.zeros(self._session_rate * PAD_STEP_MS // 1000, dtype=np.int16)
        padded = 0
        while self._speech_active and self.phase is Phase.LISTENING and padded < PAD_MAX_MS:
            self._append(step)
            padded += PAD_STEP_MS
        if self.phase is Phase.LISTENING:
            if self._speech_active:  # a VAD that never ends: commit by hand
                self.session.handle_text(json.dumps({"type": "input_audio_buffer.commit"}))
                self.session.handle_text(json.dumps({"type": "response.create"}))
                self._turn_ended(notify_satellite=False)
            else:
                self.close("nothing heard", notify=SessionEndReason.DONE)

    def _turn_ended(self, *, notify_satellite: bool = True) -> None:
        if self.phase is not Phase.LISTENING:
            return
        self.phase = Phase.THINKING
        self._cancel_timer()
        self.turns += 1
        if notify_satellite:
            # The server heard enough: the satellite can stop streaming now.
            self.outbox.command(self.satellite_id, AudioStop(self.session_id, reason=AudioStopReason.END_OF_SPEECH,
                                                             last_seq=self._last_seq))

    def _send_reply(self, reply: _Reply, pcm: np.ndarray, *, end: bool = False) -> None:
        step = WIRE_RATE * self.settings.reply_frame_ms // 1000
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step].astype("<i2").tobytes()
            self.outbox.reply_frame(self.satellite_id, AudioFrame(self.session_id, reply.seq, chunk))
            reply.seq += 1
        reply.sent_ms += 1000 * len(pcm) / WIRE_RATE
        if end:
            self.outbox.reply_frame(self.satellite_id, AudioFrame(self.session_id, reply.seq, b"", end=True))

    def _response_done(self, response: dict[str, Any]) -> None:
        reply = self._reply
        assert reply is not None
        reply.done = True
        status = response.get("status")
        if reply.started:
            if reply.resampler is not None:
                self._send_reply(reply, reply.resampler.process(np.zeros(0, dtype=np.int16), last=True), end=True)
            expects = reply.text.rstrip().endswith("?")
            self.outbox.command(self.satellite_id, ReplyEnd(self.session_id, last_seq=reply.seq,
                                                            expects_reply=expects, text=reply.text or None))
            _LOGGER.info("%s: replied %r (%.0f ms%s)", self.satellite_id, reply.text, reply.sent_ms,
                         ", expects a reply" if expects else "")
            self.phase = Phase.AWAITING_ACK
            self._set_timer(reply.sent_ms / 1000 + self.settings.ack_timeout_s, self._ack_timeout)
            return
        if status == "failed":
            error = ((response.get("status_details") or {}).get("error") or {})
            message = error.get("message") or "the speech engine failed"
            self.outbox.command(self.satellite_id, ErrorEvent(ErrorCode.INTERNAL, message, session_id=self.session_id))
            self.close(f"response failed: {message}")
        else:
            self.close(f"response {status} without audio", notify=SessionEndReason.DONE)

    def _cancel_response(self) -> None:
        reply, self._reply = self._reply, None  # first: the cancel's response.done is not ours any more
        if reply is not None and not reply.done:
            self.session.handle_text(json.dumps({"type": "response.cancel", "response_id": reply.response_id}))

    def _truncate(self, reply: _Reply | None, played_ms: int | None) -> None:
        """Cut the assistant's item to what the satellite played (what the user heard)."""
        if reply is None or reply.item_id is None or played_ms is None or not reply.started:
            return
        audio_end = max(0, min(int(played_ms), int(reply.sent_ms)))
        if audio_end >= int(reply.sent_ms):
            return  # all of it was heard
        self.session.handle_text(json.dumps({"type": "conversation.item.truncate", "item_id": reply.item_id,
                                             "content_index": 0, "audio_end_ms": audio_end}))

    def _listen(self) -> None:
        self._reply = None
        self._speech_active = False
        self._in_resampler.reset()
        self._last_seq = None
        self._last_frame_at = self._loop.time()
        self.phase = Phase.LISTENING
        self._arm_stream_timer()

    # ---------------------------------------------------------------- timers

    def _set_timer(self, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = self._loop.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_stream_timer(self) -> None:
        self._set_timer(self.settings.stream_timeout_s, self._check_stream)

    def _check_stream(self) -> None:
        self._timer = None
        if self.phase is not Phase.LISTENING:
            return
        idle = self._loop.time() - self._last_frame_at
        if idle >= self.settings.stream_timeout_s:
            _LOGGER.warning("%s: no audio for %.1f s; closing session %s", self.satellite_id, idle, self.session_id)
            self.close("mic stream timed out", notify=SessionEndReason.TIMEOUT)
        else:
            self._set_timer(self.settings.stream_timeout_s - idle, self._check_stream)

    def _ack_timeout(self) -> None:
        self._timer = None
        if self.phase is Phase.AWAITING_ACK:
            _LOGGER.warning("%s: no playback-finished for session %s", self.satellite_id, self.session_id)
            self.close("no playback-finished", notify=SessionEndReason.TIMEOUT)

    # ---------------------------------------------------------------- closing

    def close(self, reason: str, *, notify: str | None = None) -> None:
        """End the conversation: stop the session's work, free everything. Safe to call twice.

        `notify` is a SessionEndReason to send the satellite; None when it already
        knows (it ended the session, went offline, or the broker is gone).
        """
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        self.close_reason = reason
        self._cancel_timer()
        self._reply = None
        if notify is not None:
            self.outbox.command(self.satellite_id, SessionEnd(self.session_id, reason=notify))
        self.session.close()
        _LOGGER.info("%s: session %s closed (%s)", self.satellite_id, self.session_id, reason)
        self._on_closed(self, reason)


class ConversationSink:
    """The `EventSink` a conversation's session writes to (the conversation is built after its session)."""

    def __init__(self) -> None:
        self.conversation: SatelliteConversation | None = None

    def send(self, event: dict[str, Any]) -> None:
        if self.conversation is not None:
            self.conversation.send(event)

    def close(self, code: int, reason: str) -> None:
        if self.conversation is not None:
            self.conversation.close_sink(code, reason)
