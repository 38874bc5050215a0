"""One satellite conversation mapped onto one RealtimeSession through the session port.

The conversation is the session's transport, like the WebSocket handler is for a
Realtime client: mic frames go in with `append_pcm` at the wire's 16 kHz (the pipeline
rate, so nothing is resampled), the end of the satellite's stream is `end_input`, a
barge-in or the satellite's playback report is `report_playback`, and the reply comes
back through `reply_audio` at 16 kHz (one resample from the voice's rate, done by the
session). It reads the typed server events it needs (speech stopped, response created
and done, the reply transcript) and holds no conversation logic of its own: turns,
responses, cancellation and truncation stay in the session.

Phases::

    LISTENING ──the turn ends──▶ THINKING ──first audio──▶ SPEAKING
        ▲                                                     │ response.done
        │  playback-finished with continue_conversation       ▼
        └───────────────────────────────────────────── AWAITING_ACK
                                 (else session-end; a barge-in from THINKING,
                                  SPEAKING or AWAITING_ACK goes back to LISTENING)

Everything runs on the event loop; every method is synchronous, so the order of
wire messages always follows the order of events. Timers are loop timer handles
owned (and cancelled) here; there are no tasks.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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

from ..protocol import server_events as ev
from ..session.interfaces import MediaSink, Playback, ReplyAudio
from ..session.session import RealtimeSession

_LOGGER = logging.getLogger(__name__)

#: Builds the conversation's session around the conversation itself (its sink and media track).
SessionFactory = Callable[[MediaSink], RealtimeSession]


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
    text: str = ""
    started: bool = False
    done: bool = False
    seq: int = 0
    #: Reply audio handed to the wire so far (ms).
    sent_ms: float = 0.0
    #: Samples held back until a whole frame is ready.
    pending: np.ndarray | None = None
    #: Audio played before the response's own (an announcement's chime), ms.
    prelude_ms: float = 0.0


def _calls_a_tool(response: dict) -> bool:
    return any(o.get("type") == "function_call" for o in response.get("output") or ())


class SatelliteConversation:
    """A `MediaSink` for one satellite session."""

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
        self._reply: _Reply | None = None
        #: A reply stream left open by a tool call, for its follow-up response to go on in.
        self._continued: _Reply | None = None
        self._last_frame_at = self._loop.time()
        self._last_seq: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.close_reason: str | None = None
        #: Turns answered (tests read it).
        self.turns = 0
        #: One-shot overrides for the next reply (set by `announce`).
        self._expects_reply: bool | None = None
        self._prelude: np.ndarray | None = None
        self.session = session_factory(self)
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
            self.session.append_pcm(np.frombuffer(frame.pcm, dtype="<i2").astype(np.int16), WIRE_RATE)
        if frame.end:
            self._end_of_stream()

    def audio_stop(self, message: AudioStop) -> None:
        """The satellite stopped streaming."""
        if message.reason in (AudioStopReason.END_OF_SPEECH, AudioStopReason.MAX_LENGTH):
            self._end_of_stream()
        else:  # no-speech, cancelled (muted, shut down) or a reason from a newer satellite
            self._close(f"satellite stopped: {message.reason}")

    def playback_finished(self, message: PlaybackFinished) -> None:
        reply = self._reply
        if self.phase not in (Phase.SPEAKING, Phase.AWAITING_ACK) or reply is None:
            _LOGGER.debug("%s: playback-finished while %s; ignored", self.satellite_id, self.phase.value)
            return
        self._reply = None  # first: a cancel's response.done is not ours any more
        played = message.played_ms if message.interrupted and message.played_ms is not None else reply.sent_ms
        played = max(0.0, played - reply.prelude_ms)
        self.session.report_playback(Playback(reply.response_id, played_ms=played, finished=True))
        if message.interrupted:
            self._close("playback stopped")
        elif message.continue_conversation:
            _LOGGER.info("%s: listening again (continued conversation)", self.satellite_id)
            self._listen()
        else:
            self._close("done", notify=SessionEndReason.DONE)

    def barge_in(self, message: BargeIn) -> None:
        """The wake word during the reply: stop it at once and take the next turn."""
        if self.phase is Phase.LISTENING:
            return  # already listening (a duplicate)
        reply, self._reply = self._reply, None
        _LOGGER.info("%s: barge-in after %s ms of reply", self.satellite_id, message.played_ms)
        self.outbox.command(self.satellite_id, StopPlayback(self.session_id))
        if reply is not None:
            played = max(0.0, (message.played_ms if message.played_ms is not None else 0) - reply.prelude_ms)
            self.session.report_playback(Playback(reply.response_id, played_ms=played, finished=True))
        self._listen()

    def announce(self, text: str, *, listen: bool = False, prelude: np.ndarray | None = None) -> bool:
        """Speak `text` first (the server opened this session): an announcement, or a question when `listen`.

        `listen` makes the reply expect an answer, so the satellite reopens its mic after
        playing it, as in continued conversation; `prelude` (16 kHz PCM, a chime) plays
        before the text. False when the session cannot speak now.
        """
        if self.phase is not Phase.LISTENING or self.turns:
            return False
        self.phase = Phase.THINKING
        self._cancel_timer()
        self._expects_reply = listen
        self._prelude = prelude
        if self.session.say(text) is None:
            self._close("could not speak the announcement")
            return False
        return True

    # ================================================================ MediaSink (session → here)

    def send(self, event: ev.ServerEvent) -> None:
        match event:
            case ev.SpeechStopped():
                self._turn_ended()
            case ev.ResponseCreated():
                if self.phase is not Phase.CLOSED:
                    self._reply = self._next_reply(event.response["id"])
            case ev.OutputAudioTranscriptDone():
                if self._reply is not None and event.response_id == self._reply.response_id:
                    self._reply.text = event.transcript
            case ev.ResponseDone():
                if self._reply is not None and event.response["id"] == self._reply.response_id:
                    self._response_done(event.response)
            case ev.TranscriptionCompleted():
                _LOGGER.info("%s heard: %r", self.satellite_id, event.transcript)
            case ev.Error():
                _LOGGER.warning("%s: session error: %s", self.satellite_id, event.error.message)
            case _:
                pass

    def close(self, code: int, reason: str) -> None:
        """The session ended itself (its maximum duration): end the conversation too."""
        self._close(f"session closed ({reason})", notify=SessionEndReason.TIMEOUT)

    def end(self, reason: str, *, notify: str | None = None) -> None:
        """End the conversation from outside (the bridge). Safe to call twice."""
        self._close(reason, notify=notify)

    def reply_audio(self, audio: ReplyAudio) -> None:
        """Reply audio at 16 kHz, straight from the response builder."""
        reply = self._reply
        if self.closed or reply is None or audio.response_id != reply.response_id:
            return  # a cancelled response flushing its tail, or a closed session
        if not reply.started:
            reply.started = True
            self.phase = Phase.SPEAKING
            self.outbox.command(self.satellite_id, ReplyStart(self.session_id))
            prelude, self._prelude = self._prelude, None
            if prelude is not None and len(prelude):
                self._send_reply(reply, prelude)
                reply.prelude_ms = reply.sent_ms
        self._send_reply(reply, audio.pcm)

    # ================================================================ internals

    def _end_of_stream(self) -> None:
        """The satellite will send no more audio for this turn."""
        if self.phase is not Phase.LISTENING:
            return
        committed = self.session.end_input()
        if self.phase is Phase.LISTENING and not committed:
            self._close("nothing heard", notify=SessionEndReason.DONE)

    def _turn_ended(self) -> None:
        if self.phase is not Phase.LISTENING:
            return
        self.phase = Phase.THINKING
        self._cancel_timer()
        self.turns += 1
        # The server heard enough: the satellite can stop streaming now.
        self.outbox.command(self.satellite_id, AudioStop(self.session_id, reason=AudioStopReason.END_OF_SPEECH,
                                                         last_seq=self._last_seq))

    def _send_reply(self, reply: _Reply, pcm: np.ndarray, *, end: bool = False) -> None:
        step = WIRE_RATE * self.settings.reply_frame_ms // 1000
        if reply.pending is not None and len(reply.pending):
            pcm = np.concatenate([reply.pending, pcm])
            reply.pending = None
        whole = len(pcm) if end else len(pcm) - len(pcm) % step
        for offset in range(0, whole, step):
            chunk = pcm[offset : min(offset + step, whole)].astype("<i2").tobytes()
            self.outbox.reply_frame(self.satellite_id, AudioFrame(self.session_id, reply.seq, chunk))
            reply.seq += 1
        reply.sent_ms += 1000 * whole / WIRE_RATE
        if whole < len(pcm):
            reply.pending = pcm[whole:]
        if end:
            self.outbox.reply_frame(self.satellite_id, AudioFrame(self.session_id, reply.seq, b"", end=True))

    def _response_done(self, response: dict) -> None:
        reply = self._reply
        assert reply is not None
        reply.done = True
        status = response.get("status")
        if reply.started and status == "completed" and _calls_a_tool(response):
            # "Okay." before a Home Assistant call: the call's follow-up response goes on in
            # the same reply stream, so the satellite plays both as one reply.
            self._continued, self._reply = reply, None
            self._set_timer(self.settings.ack_timeout_s + reply.sent_ms / 1000, self._follow_up_timeout)
            return
        if reply.started:
            self._end_reply(reply)
            return
        if status == "failed":
            error = ((response.get("status_details") or {}).get("error") or {})
            message = error.get("message") or "the speech engine failed"
            self.outbox.command(self.satellite_id, ErrorEvent(ErrorCode.INTERNAL, message, session_id=self.session_id))
            self._close(f"response failed: {message}")
        elif _calls_a_tool(response):
            self._reply = None  # a server-side tool runs; its follow-up response speaks
        else:
            self._close(f"response {status} without audio", notify=SessionEndReason.DONE)

    def _next_reply(self, response_id: str) -> _Reply:
        """The reply for a new response: a fresh stream, or the one a tool call left open."""
        before, self._continued = self._continued, None
        if before is None:
            return _Reply(response_id=response_id)
        self._cancel_timer()
        own = before.sent_ms - before.prelude_ms
        self.session.report_playback(Playback(before.response_id, played_ms=own, finished=True))
        return _Reply(response_id=response_id, started=True, seq=before.seq, sent_ms=before.sent_ms,
                      pending=before.pending, prelude_ms=before.sent_ms)

    def _follow_up_timeout(self) -> None:
        """A tool call's follow-up never came: end the reply stream that waited for it."""
        reply, self._continued = self._continued, None
        if reply is None or self.closed:
            return
        _LOGGER.warning("%s: no follow-up after a tool call; ending the reply", self.satellite_id)
        self._reply = reply  # the satellite's playback-finished is for this stream
        self._end_reply(reply)

    def _end_reply(self, reply: _Reply) -> None:
        """Close the reply stream (the last frames, `reply-end`) and wait for the satellite's playback."""
        self._send_reply(reply, np.zeros(0, dtype=np.int16), end=True)
        expects = reply.text.rstrip().endswith("?") if self._expects_reply is None else self._expects_reply
        self._expects_reply = None
        self.outbox.command(self.satellite_id, ReplyEnd(self.session_id, last_seq=reply.seq,
                                                        expects_reply=expects, text=reply.text or None))
        _LOGGER.info("%s: replied %r (%.0f ms%s)", self.satellite_id, reply.text, reply.sent_ms,
                     ", expects a reply" if expects else "")
        self.phase = Phase.AWAITING_ACK
        self._set_timer(reply.sent_ms / 1000 + self.settings.ack_timeout_s, self._ack_timeout)

    def _listen(self) -> None:
        self._continued = None
        self._reply = None
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
            self._close("mic stream timed out", notify=SessionEndReason.TIMEOUT)
        else:
            self._set_timer(self.settings.stream_timeout_s - idle, self._check_stream)

    def _ack_timeout(self) -> None:
        self._timer = None
        if self.phase is Phase.AWAITING_ACK:
            _LOGGER.warning("%s: no playback-finished for session %s", self.satellite_id, self.session_id)
            self._close("no playback-finished", notify=SessionEndReason.TIMEOUT)

    # ---------------------------------------------------------------- closing

    def _close(self, reason: str, *, notify: str | None = None) -> None:
        """End the conversation and free its session. Safe to call twice.

        `notify` is a SessionEndReason to send the satellite; None when it already
        knows (it ended the session, went offline, or the broker is gone).
        """
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        self.close_reason = reason
        self._cancel_timer()
        self._reply = self._continued = None
        if notify is not None:
            self.outbox.command(self.satellite_id, SessionEnd(self.session_id, reason=notify))
        _LOGGER.info("%s: session %s closed (%s)", self.satellite_id, self.session_id, reason)
        self._on_closed(self, reason)
