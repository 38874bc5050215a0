"""The satellite's state machine: wake word → stream → reply → (maybe) listen again.

Everything that changes satellite state runs on one thread, in :meth:`Satellite.step`,
once per captured audio frame (20 ms): it drains the inbox (MQTT messages
decoded by :mod:`.mqtt`, playback completions from the player thread, local
mute toggles), checks timers, then runs the wake word detector or streams the
frame. There are no locks around state because nothing else touches it.

States (published in the retained status and passed to hooks):
idle → listening (wake word; streaming) → thinking (utterance over, waiting
for the reply) → speaking (reply playing) → idle, or → listening again when
the reply asked a question (continued conversation, only after playback
finished and the ``playback-finished`` ack was sent). ``error`` is shown for
``session.error_hold`` seconds; ``muted`` replaces idle while muted.

Home Assistant's retained ``satellite-settings`` arrive on the same path (paho's
thread decodes them into the inbox; :meth:`Satellite.step` applies them before the
next frame reaches the wake word detector), so the detector is only ever touched
from this thread:

* ``wake_sensitivity`` sets the detector's thresholds at once (unset: ``medium``, the
  configured thresholds; see :func:`.wake.threshold_for_sensitivity`). Re-applying an
  unchanged level is a no-op.
* ``muted`` is applied when it differs from the last value Home Assistant sent (the
  first settings after a start always count). So HA's choice survives a satellite
  restart, while a broker reconnect, or HA changing only the sensitivity, replays the
  same value and does not undo a local mute toggle (button, SIGUSR1) made since.
"""

from __future__ import annotations

import logging
import math
import queue
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, assert_never

from hearth.wire import (
    AudioFrame,
    AudioStop,
    AudioStopReason,
    BargeIn,
    ErrorCode,
    ErrorEvent,
    Mute,
    PlaybackFinished,
    ReplyEnd,
    SatelliteSettings,
    ReplyStart,
    SatelliteCapabilities,
    SatelliteState,
    SatelliteStatus,
    SessionAccepted,
    SessionEnd,
    SessionStart,
    StandDown,
    StopPlayback,
    WakeCandidate,
    WakeSensitivity,
    new_session_id,
)

from .audio import BYTES_PER_MS, AudioSink, AudioSource, Player
from .config import SatelliteConfig
from .feedback import StateChange
from .mqtt import (
    BadMessage,
    CommandReceived,
    LinkDown,
    LinkUp,
    ReplyFrameReceived,
    ServerStatusReceived,
    SettingsReceived,
)
from .vad import Endpointer, VoiceActivityDetector
from .wake import Detection, WakeWordDetector

_LOGGER = logging.getLogger(__name__)

ENERGY_WINDOW_MS = 1000  # loudness of the wake word, for multi-room arbitration
#: At most one `error` event about bad messages per this many seconds (a flood is not echoed).
BAD_MESSAGE_REPORT_S = 1.0


@dataclass(frozen=True)
class PlaybackDone:
    """Posted by the player thread when a reply has been played to the end."""

    session_id: str
    played_ms: int


@dataclass(frozen=True)
class ToggleMute:
    """Posted by a signal handler or a GPIO button."""


@dataclass
class Reply:
    end_received: bool = False
    expects_reply: bool = False
    last_seq: int | None = None
    highest_seq: int = -1
    end_frame: bool = False
    handed_to_player: bool = False
    grace_deadline: float | None = None


@dataclass
class Session:
    id: str
    accepted: bool = False
    streaming: bool = False
    seq: int = 0
    ending: bool = False  # the server sent session-end: no continued conversation
    accept_deadline: float | None = None
    reply_deadline: float | None = None
    reply: Reply | None = None
    wake_word: str | None = None


class SatelliteLink:
    """What the satellite needs from its broker connection (``MqttLink`` or a fake in tests)."""

    inbox: "queue.Queue[object]"
    connected: bool

    def start(self) -> None: ...
    def poll(self) -> None: ...
    def stop(self, final_status: SatelliteStatus | None = None) -> None: ...
    def publish_status(self, status: SatelliteStatus) -> None: ...
    def publish_event(self, message) -> None: ...  # noqa: ANN001
    def publish_audio(self, frame: AudioFrame) -> None: ...


class Satellite:
    def __init__(
        self,
        config: SatelliteConfig,
        *,
        link: SatelliteLink,
        source: AudioSource,
        sink: AudioSink,
        detector: WakeWordDetector,
        vad: VoiceActivityDetector,
        listeners: Iterable[Callable[[StateChange], None]] = (),
        sounds: dict[str, bytes] | None = None,
        clock: Callable[[], float] = time.monotonic,
        version: str | None = None,
    ) -> None:
        self.config = config
        self.id = config.satellite_id
        self.link = link
        self.inbox = link.inbox
        self.source = source
        self.detector = detector
        self.vad = vad
        self.listeners = list(listeners)
        self.sounds = sounds or {}
        self.clock = clock
        self.version = version
        self.player = Player(sink, self._on_playback_done)
        self.frame_ms = config.audio.frame_ms
        self.endpointer = Endpointer(
            frame_ms=self.frame_ms,
            min_speech_ms=config.vad.min_speech,
            silence_ms=config.vad.silence,
            no_speech_timeout_ms=int(config.vad.no_speech_timeout * 1000),
            max_ms=int(config.vad.max_utterance * 1000),
        )
        self.muted = config.mute.start_muted
        self.state = SatelliteState.MUTED if self.muted else SatelliteState.IDLE
        self.session: Session | None = None
        self.servers_online: set[str] = set()
        self.error_until: float | None = None
        self._recent = deque(maxlen=max(1, ENERGY_WINDOW_MS // self.frame_ms))
        self._stopped = False
        self._last_bad_report = -math.inf
        #: The last `muted` Home Assistant's settings carried (None: none seen since the start).
        self._ha_muted: bool | None = None

    # -- running -----------------------------------------------------------------------
    def run(self, *, until_input_ends: bool = False, connect_timeout: float = 15.0) -> None:
        """Run until :meth:`stop`, or (file mode) until the input is used up and all is quiet."""
        self.link.start()
        if until_input_ends and not self.link.connected:
            # With a file there is no point reading audio before the broker is there.
            wait = getattr(self.link, "wait_connected", None)
            if wait is not None and not wait(connect_timeout):
                _LOGGER.warning("No broker connection after %.0f s; running anyway", connect_timeout)
        self._notify(SatelliteState.IDLE, self.state)
        try:
            while not self._stopped:
                self.step(self.source.read())
                if until_input_ends and self.source.exhausted and self.quiet:
                    break
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread-safe, e.g. from a signal handler)."""
        self._stopped = True

    def toggle_mute(self) -> None:
        """Thread-safe local mute toggle (signal handler, GPIO button)."""
        self.inbox.put(ToggleMute())

    def shutdown(self) -> None:
        if self.session is not None:
            self._abort_session(AudioStopReason.CANCELLED)
        self.player.close()
        self.link.stop(SatelliteStatus.offline(self.id))
        self.source.close()

    @property
    def quiet(self) -> bool:
        return self.session is None and self.state in (SatelliteState.IDLE, SatelliteState.MUTED) and self.player.playing is None

    def step(self, pcm: bytes) -> None:
        """Process one captured frame and everything that arrived since the last one."""
        self.link.poll()
        self._drain_inbox()
        self._check_timers()
        self._recent.append(pcm)
        session = self.session
        if session is not None and session.streaming:
            self._stream(session, pcm)
        elif self._listening_for_wake_word:
            detection = self.detector.process(pcm)
            if detection is not None:
                self._on_wake(detection)

    @property
    def _listening_for_wake_word(self) -> bool:
        if self.muted:
            return False
        if self.state == SatelliteState.IDLE:
            return True
        return self.config.session.barge_in and self.state in (SatelliteState.SPEAKING, SatelliteState.THINKING)

    # -- state -------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        _LOGGER.info("State %s → %s", previous, state)
        self._notify(previous, state)
        self._publish_status()

    def _notify(self, previous: str, state: str) -> None:
        change = StateChange(previous, state, self.id, self.session.id if self.session else None)
        for listener in self.listeners:
            try:
                listener(change)
            except Exception:  # noqa: BLE001 - a broken hook must not stop the satellite
                _LOGGER.exception("state listener failed")

    def _rest_state(self) -> str:
        return SatelliteState.MUTED if self.muted else SatelliteState.IDLE

    def status(self) -> SatelliteStatus:
        return SatelliteStatus(
            satellite_id=self.id,
            state=self.state,
            muted=self.muted,
            session_id=self.session.id if self.session else None,
            name=self.config.satellite.name,
            area=self.config.satellite.area,
            version=self.version,
            capabilities=SatelliteCapabilities(
                wake_words=self.detector.wake_words,
                wake_engine=self.detector.engine,
                has_vad=True,
                frame_ms=self.frame_ms,
                barge_in=self.config.session.barge_in,
                continue_conversation=self.config.session.continue_conversation,
            ),
        )

    def _publish_status(self) -> None:
        self.link.publish_status(self.status())

    def _sound(self, name: str) -> None:
        pcm = self.sounds.get(name)
        if pcm:
            self.player.play_sound(pcm)

    # -- inbox -------------------------------------------------------------------------
    def _drain_inbox(self) -> None:
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return
            try:
                self._handle(item)
            except Exception:  # noqa: BLE001 - no message may stop the satellite
                _LOGGER.exception("Handling %s failed; carrying on", type(item).__name__)

    def _handle(self, item: object) -> None:
        if isinstance(item, CommandReceived):
            self._on_command(item.command)
        elif isinstance(item, ReplyFrameReceived):
            self._on_reply_frame(item.frame)
        elif isinstance(item, PlaybackDone):
            self._on_reply_played(item)
        elif isinstance(item, LinkUp):
            self._publish_status()
        elif isinstance(item, LinkDown):
            self.servers_online.clear()
            if self.session is not None:
                self._enter_error("lost the broker connection", notify_server=False)
        elif isinstance(item, ServerStatusReceived):
            if item.status.online:
                self.servers_online.add(item.status.server_id)
            else:
                self.servers_online.discard(item.status.server_id)
        elif isinstance(item, BadMessage):
            _LOGGER.warning("Bad message from the broker: %s", str(item.error)[:500])
            now = self.clock()
            if now - self._last_bad_report < BAD_MESSAGE_REPORT_S:
                return
            self._last_bad_report = now
            self.link.publish_event(
                ErrorEvent(
                    ErrorCode.PROTOCOL,
                    str(item.error).splitlines()[0][:200],
                    context={k: str(v)[:200] for k, v in item.error.context.items()},
                )
            )
        elif isinstance(item, SettingsReceived):
            self.apply_settings(item.settings)
        elif isinstance(item, ToggleMute):
            self.set_muted(not self.muted)
        else:
            _LOGGER.error("unexpected inbox item %r", item)

    def _is_current(self, session_id: str | None) -> bool:
        return self.session is not None and session_id == self.session.id

    def _on_command(self, command) -> None:  # noqa: ANN001, C901 - one branch per message type
        session = self.session
        match command:
            case SessionAccepted(session_id=sid):
                if session is not None and self._is_current(sid):
                    session.accepted = True
                    session.accept_deadline = None
            case StandDown(session_id=sid):
                if session is not None and self._is_current(sid):
                    _LOGGER.info("Standing down (%s)", command.reason)
                    session.streaming = False
                    self.player.stop()
                    self._end_session()
            case SessionStart(session_id=sid):
                if session is None and self.state == SatelliteState.IDLE and not self.muted:
                    self.session = Session(sid, accepted=True)
                    self._sound("wake")
                    self._open_mic(self.session)
                else:
                    reason = "muted" if self.muted else "busy"
                    self.link.publish_event(ErrorEvent(ErrorCode.BUSY, f"satellite is {reason}", session_id=sid))
            case SessionEnd(session_id=sid):
                if session is not None and self._is_current(sid):
                    session.streaming = False
                    session.ending = True
                    if self.state != SatelliteState.SPEAKING:
                        self._end_session(sound="done")
            case AudioStop(session_id=sid):
                if session is not None and self._is_current(sid) and session.streaming:
                    session.streaming = False
                    self._await_reply(session)
            case ReplyStart(session_id=sid):
                self._on_reply_start(sid)
            case ReplyEnd(session_id=sid):
                if session is not None and self._is_current(sid) and session.reply is not None:
                    reply = session.reply
                    reply.end_received = True
                    reply.expects_reply = command.expects_reply
                    reply.last_seq = command.last_seq
                    reply.grace_deadline = self.clock() + self.config.session.reply_grace
                    self._maybe_finish_reply(session)
            case StopPlayback(session_id=sid):
                if session is not None and self.state == SatelliteState.SPEAKING and (sid is None or self._is_current(sid)):
                    played = self.player.stop()
                    self.link.publish_event(PlaybackFinished(session.id, played_ms=played, interrupted=True))
                    self._end_session()
            case Mute(muted=muted):
                self.set_muted(muted)
            case ErrorEvent(session_id=sid):
                if sid is not None and self._is_current(sid):
                    self._enter_error(f"server error {command.code}: {command.message}", notify_server=False)
                else:
                    _LOGGER.warning("Server reported an error: %s: %s", command.code, command.message)
            case _:
                assert_never(command)

    # -- wake word, streaming, end of speech ---------------------------------------------
    def _on_wake(self, detection: Detection) -> None:
        session = self.session
        if session is not None and self.state in (SatelliteState.SPEAKING, SatelliteState.THINKING):
            played = self.player.stop() if self.state == SatelliteState.SPEAKING else 0
            _LOGGER.info("Barge-in (%s %.2f) after %d ms of reply", detection.wake_word, detection.score, played)
            self.link.publish_event(
                BargeIn(session.id, played_ms=played, wake_word=detection.wake_word, score=round(detection.score, 4))
            )
            session.reply = None
            session.ending = False
            self._open_mic(session)
            return
        if not self.link.connected:
            _LOGGER.warning("Wake word %s, but there is no broker connection", detection.wake_word)
            self._enter_error("no broker connection", notify_server=False)
            return
        session = Session(new_session_id(), wake_word=detection.wake_word)
        self.session = session
        energy = self._energy_dbfs()
        _LOGGER.info("Wake word %s (score %.2f, %.1f dBFS), session %s", detection.wake_word, detection.score, energy, session.id)
        self.link.publish_event(
            WakeCandidate(
                session.id, detection.wake_word, round(detection.score, 4), energy=round(energy, 1), timestamp=round(time.time(), 3)
            )
        )
        session.accept_deadline = self.clock() + self.config.session.accept_timeout
        self._sound("wake")
        self._open_mic(session)

    def _energy_dbfs(self) -> float:
        import array

        samples = array.array("h")
        for chunk in self._recent:
            samples.frombytes(chunk)
        if not samples:
            return -96.0
        mean_square = sum(s * s for s in samples) / len(samples)
        return max(-96.0, 10 * math.log10(mean_square / (32768.0**2)) if mean_square > 0 else -96.0)

    def _open_mic(self, session: Session) -> None:
        session.streaming = True
        session.reply_deadline = None
        self.endpointer.reset()
        self.vad.reset()
        self._set_state(SatelliteState.LISTENING)

    def _stream(self, session: Session, pcm: bytes) -> None:
        self.link.publish_audio(AudioFrame(session.id, session.seq, pcm))
        session.seq += 1
        reason = self.endpointer.process(self.vad.is_speech(pcm))
        if reason is not None:
            _LOGGER.info("Mic closed: %s after %d ms", reason, self.endpointer.elapsed_ms)
            self._close_mic(session, reason)
            if reason == AudioStopReason.NO_SPEECH:
                self._end_session()
            else:
                self._await_reply(session)

    def _close_mic(self, session: Session, reason: str) -> None:
        """Stop streaming on our own initiative: end frame + audio-stop."""
        self.link.publish_audio(AudioFrame(session.id, session.seq, b"", end=True))
        self.link.publish_event(AudioStop(session.id, reason=reason, last_seq=session.seq))
        session.seq += 1
        session.streaming = False

    def _await_reply(self, session: Session) -> None:
        session.reply_deadline = self.clock() + self.config.session.reply_timeout
        self._set_state(SatelliteState.THINKING)

    # -- the reply -----------------------------------------------------------------------
    def _on_reply_start(self, sid: str) -> None:
        session = self.session
        if session is None and self.state in (SatelliteState.IDLE, SatelliteState.MUTED):
            session = self.session = Session(sid, accepted=True)  # an announcement
        if session is None or session.id != sid:
            self.link.publish_event(ErrorEvent(ErrorCode.BUSY, "satellite is in another session", session_id=sid))
            return
        if session.reply is not None:
            return  # a duplicate
        session.accepted = True
        session.accept_deadline = None
        session.streaming = False  # the server decided the turn is over
        session.reply = Reply()
        session.reply_deadline = self.clock() + self.config.session.reply_timeout
        self.player.begin(sid)
        self._set_state(SatelliteState.SPEAKING)

    def _on_reply_frame(self, frame: AudioFrame) -> None:
        session = self.session
        if session is None or frame.session_id != session.id or session.reply is None:
            return
        reply = session.reply
        if reply.handed_to_player and reply.end_frame:
            return
        if frame.seq <= reply.highest_seq:
            _LOGGER.debug("reply frame %d out of order (after %d); dropped", frame.seq, reply.highest_seq)
            return
        if frame.seq != reply.highest_seq + 1:
            _LOGGER.debug("reply frames %d..%d lost", reply.highest_seq + 1, frame.seq - 1)
        reply.highest_seq = frame.seq
        if frame.pcm:
            self.player.feed(frame.pcm)
        if frame.end:
            reply.end_frame = True
        session.reply_deadline = self.clock() + self.config.session.reply_timeout
        self._maybe_finish_reply(session)

    def _maybe_finish_reply(self, session: Session, *, force: bool = False) -> None:
        reply = session.reply
        if reply is None or reply.handed_to_player or not reply.end_received:
            return
        complete = reply.end_frame or (reply.last_seq is not None and reply.highest_seq >= reply.last_seq)
        if complete or force:
            reply.handed_to_player = True
            session.reply_deadline = None
            self.player.end()

    def _on_playback_done(self, session_id: str, played_ms: int, interrupted: bool) -> None:
        self.inbox.put(PlaybackDone(session_id, played_ms))  # player thread → main loop

    def _on_reply_played(self, done: PlaybackDone) -> None:
        session = self.session
        if session is None or session.id != done.session_id or session.reply is None or self.state != SatelliteState.SPEAKING:
            return  # stale (barge-in, stop or mute came first)
        cont = (
            session.reply.expects_reply
            and self.config.session.continue_conversation
            and not self.muted
            and not session.ending
        )
        # The ack goes out before the mic reopens: the server never reopens on a timer.
        self.link.publish_event(PlaybackFinished(session.id, played_ms=done.played_ms, continue_conversation=cont))
        session.reply = None
        if cont:
            _LOGGER.info("Reply asked a question: listening again without a wake word")
            self._sound("wake")
            self._open_mic(session)
        else:
            self._end_session(sound="done")

    # -- timers, errors, mute ---------------------------------------------------------------
    def _check_timers(self) -> None:
        now = self.clock()
        if self.state == SatelliteState.ERROR:
            if self.error_until is not None and now >= self.error_until:
                self.error_until = None
                self._set_state(self._rest_state())
            return
        session = self.session
        if session is None:
            return
        if session.accept_deadline is not None and now >= session.accept_deadline and not session.accepted:
            self._enter_error("no server accepted the wake word")
        elif session.reply is not None and session.reply.grace_deadline is not None and now >= session.reply.grace_deadline:
            self._maybe_finish_reply(session, force=True)
        elif session.reply_deadline is not None and now >= session.reply_deadline:
            if session.reply is not None:
                _LOGGER.warning("Reply audio stalled; finishing playback")
                session.reply.end_received = True
                self._maybe_finish_reply(session, force=True)
            else:
                self._enter_error("no reply from the server")

    def _enter_error(self, message: str, *, notify_server: bool = True) -> None:
        _LOGGER.warning("Error: %s", message)
        session = self.session
        if session is not None:
            if session.streaming and self.link.connected:
                self._close_mic(session, AudioStopReason.CANCELLED)
            if notify_server and self.link.connected:
                self.link.publish_event(ErrorEvent(ErrorCode.TIMEOUT, message, session_id=session.id))
        self.player.stop()
        self.session = None
        self.error_until = self.clock() + self.config.session.error_hold
        self._set_state(SatelliteState.ERROR)
        self._sound("error")

    def _end_session(self, sound: str | None = None) -> None:
        self.session = None
        self._set_state(self._rest_state())
        if sound:
            self._sound(sound)

    def _abort_session(self, reason: str) -> None:
        """Drop the session on our side (mute, shutdown), telling the server."""
        session = self.session
        if session is None:
            return
        if session.streaming:
            self._close_mic(session, reason)
        elif session.reply is not None and self.state == SatelliteState.SPEAKING:
            played = self.player.stop()
            self.link.publish_event(PlaybackFinished(session.id, played_ms=played, interrupted=True))
        else:
            self.link.publish_event(AudioStop(session.id, reason=reason))
        self.player.stop()
        self.session = None

    def apply_settings(self, settings: SatelliteSettings | None) -> None:
        """Apply Home Assistant's settings (None: they were deleted). Main loop only (see the module doc)."""
        level = (settings.wake_sensitivity if settings is not None else None) or WakeSensitivity.MEDIUM
        if level != self.detector.sensitivity:
            self.detector.set_sensitivity(level)
            _LOGGER.info(
                "Wake word sensitivity %s: thresholds %s",
                level,
                ", ".join(f"{name} {value:.3f}" for name, value in self.detector.thresholds.items()),
            )
        muted = settings.muted if settings is not None else None
        if muted is not None and muted != self._ha_muted:
            self.set_muted(muted)
        self._ha_muted = muted

    def set_muted(self, muted: bool) -> None:
        if muted == self.muted:
            return
        _LOGGER.info("%s", "Muted" if muted else "Unmuted")
        self.muted = muted
        if muted:
            self._abort_session(AudioStopReason.CANCELLED)
            self.detector.reset()
        if self.state != SatelliteState.ERROR:
            before = self.state
            self._set_state(self._rest_state())
            if before == self.state:
                self._publish_status()
        else:
            self._publish_status()


__all__ = ["Satellite", "SatelliteLink", "PlaybackDone", "ToggleMute", "BYTES_PER_MS"]
