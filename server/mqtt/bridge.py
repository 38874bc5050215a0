"""The MQTT bridge: satellites' wire messages in, one RealtimeSession per conversation.

The bridge routes what arrives on ``hearth/v1/satellite/+/{event,audio,status}``:

* a ``wake`` enters multi-room arbitration (:mod:`.arbitration`); the mic frames that
  follow it are buffered until the window closes; the winner gets
  ``session-accepted`` and a :class:`~.conversation.SatelliteConversation` (which
  opens its session through the server's session registry), every other candidate gets
  ``stand-down``;
* mic frames, ``audio-stop``, ``playback-finished`` and ``barge-in`` go to the
  conversation of their session id;
* a satellite whose status turns ``offline`` (its last will, or a clean stop) loses
  its conversation and any pending wake; so does everything when the broker
  connection drops (the satellites dropped their sessions too).

Bad input never raises out of :meth:`handle_message`: a payload that does not decode
is logged with its cause and answered with an ``error`` event (code ``protocol``) on
the satellite's command topic, at most one per satellite per second.

All of it runs on the event loop (the MQTT client hands messages over from its
thread), so no state here needs a lock.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, assert_never

import numpy as np
from aiohttp import web

from hearth.wire import (
    AudioFrame,
    AudioStop,
    BargeIn,
    ErrorCode,
    ErrorEvent,
    Message,
    PlaybackFinished,
    ProtocolError,
    SatelliteEvent,
    SatelliteStatus,
    SessionAccepted,
    SessionEndReason,
    SessionStart,
    StandDown,
    StandDownReason,
    UnknownMessageType,
    WakeCandidate,
    decode_satellite_event,
    decode_satellite_status,
    new_session_id,
    topics,
)
from hearth.wire.audio import SAMPLE_RATE as WIRE_RATE
from hearth.wire.topics import QOS_AUDIO, QOS_CONTROL, SatelliteChannel

from ..config import MqttConfig, SatelliteSettings, SemanticVadConfig, ServerVadConfig
from ..context import ServerContext
from ..session.interfaces import MediaSink
from ..session.session import RealtimeSession
from .arbitration import Arbiter, Candidate, Joined, Late, Opened
from .conversation import ConversationSettings, Phase, SatelliteConversation, SessionFactory

_LOGGER = logging.getLogger(__name__)

#: Mic frames kept per pending wake while arbitration runs (10 s of 20 ms frames).
MAX_PENDING_FRAMES = 500
#: Session ids remembered after they ended, so frames still in flight are dropped quietly.
RECENT_SESSIONS = 512
#: At most one error event per satellite in this many seconds.
ERROR_INTERVAL_S = 1.0

Publish = Callable[[str, bytes, int, bool], bool]

SUBSCRIPTIONS = (
    (topics.all_satellites(SatelliteChannel.EVENT), QOS_CONTROL),
    (topics.all_satellites(SatelliteChannel.AUDIO), QOS_AUDIO),
    (topics.all_satellites(SatelliteChannel.STATUS), QOS_CONTROL),
)


class SatelliteUnavailable(Exception):
    """A server-started session cannot begin: the satellite is unknown, offline or in a conversation."""


@dataclass
class _PendingWake:
    """A wake under arbitration, with the mic frames that arrived meanwhile."""

    satellite_id: str
    session_id: str
    frames: list[AudioFrame] = field(default_factory=list)
    stop: AudioStop | None = None


def satellite_session_defaults(base: dict[str, Any], settings: SatelliteSettings | None) -> dict[str, Any]:
    """The session defaults (Realtime wire form) for one satellite.

    Satellites always speak (`output_modalities: [audio]`), always have server VAD
    that answers when the turn ends (there is no client to commit or ask), never get
    an idle-timeout response (it could start while the last reply is still playing;
    the satellite's own no-speech timeout ends a silent turn), and get their
    transcripts in the log (input transcription on). Per-satellite settings override
    the voice, the instructions and the speech language. A session turn detection
    left at its default (server_vad, 500 ms) becomes `semantic_vad` for satellites:
    the staged end of turn answers a complete command ~150 ms into the silence.
    """
    session = copy.deepcopy(base)
    session["output_modalities"] = ["audio"]
    audio = session.setdefault("audio", {})
    audio_in = audio.setdefault("input", {})
    audio_out = audio.setdefault("output", {})
    turn = audio_in.get("turn_detection") or {"type": "server_vad"}
    if turn == _DEFAULT_SERVER_VAD:
        turn = asdict(SemanticVadConfig())
    turn = {**turn, "create_response": True}
    if turn.get("type", "server_vad") == "server_vad":
        turn["idle_timeout_ms"] = None
    audio_in["turn_detection"] = turn
    transcription = dict(audio_in.get("transcription") or {"model": "whisper-1"})
    if settings is not None:
        if settings.voice is not None:
            audio_out["voice"] = settings.voice
        if settings.instructions is not None:
            session["instructions"] = settings.instructions
        if settings.language is not None:
            transcription["language"] = settings.language
    audio_in["transcription"] = transcription
    return session


#: The session's turn detection when nobody configured one.
_DEFAULT_SERVER_VAD = asdict(ServerVadConfig())


class MqttBridge:
    KEY: ClassVar[web.AppKey[MqttBridge]]

    def __init__(self, ctx: ServerContext, config: MqttConfig, publish: Publish) -> None:
        self.ctx = ctx
        self.config = config
        self._publish = publish
        self._loop = asyncio.get_running_loop()
        self.arbiter = Arbiter(window_s=config.arbitration_window_ms / 1000)
        self.conversation_settings = ConversationSettings(
            stream_timeout_s=config.stream_timeout_s, ack_timeout_s=config.ack_timeout_s)
        #: Live conversations by session id.
        self.conversations: dict[str, SatelliteConversation] = {}
        self._by_satellite: dict[str, SatelliteConversation] = {}
        self._pending: dict[str, _PendingWake] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._resolve_timer: asyncio.TimerHandle | None = None
        self._last_error: dict[str, float] = {}
        #: Latest status of every satellite seen.
        self.satellites: dict[str, SatelliteStatus] = {}
        #: Every conversation that ended: (satellite id, session id, reason); tests read it.
        self.closed_log: list[tuple[str, str, str]] = []
        self.stopping = False
        #: Server-started sessions waiting for their first playback-finished (see `start_session`).
        self._played: dict[str, asyncio.Future[str | None]] = {}
        #: Event-loop time a person last turned to each satellite (see `attended_since`).
        self._attended: dict[str, float] = {}

    # ================================================================ MQTT client callbacks

    def on_connected(self) -> None:
        _LOGGER.info("MQTT bridge ready: serving satellites on %s", topics.ROOT)

    def on_disconnected(self, reason: str) -> None:
        """The broker went away: satellites lose their sessions too, so drop ours."""
        self._drop_everything(f"broker connection lost ({reason})")

    def handle_message(self, topic: str, payload: bytes) -> None:
        """One message from the broker. Never raises."""
        try:
            parsed = topics.parse_topic(topic)
        except ProtocolError as err:
            _LOGGER.debug("ignoring a message on %s: %s", topic, err)
            return
        if not isinstance(parsed, topics.SatelliteTopic):
            return
        satellite_id = parsed.satellite_id
        try:
            match parsed.channel:
                case SatelliteChannel.AUDIO:
                    self._on_audio(satellite_id, AudioFrame.from_bytes(payload, topic=topic))
                case SatelliteChannel.EVENT:
                    self._on_event(satellite_id, decode_satellite_event(payload, topic=topic))
                case SatelliteChannel.STATUS:
                    if payload:  # an empty retained payload clears the topic
                        self._on_status(satellite_id, decode_satellite_status(payload, topic=topic))
                case SatelliteChannel.COMMAND | SatelliteChannel.REPLY:
                    pass  # our own output (not subscribed; a broker may still echo it)
                case _:
                    assert_never(parsed.channel)
        except UnknownMessageType as err:
            _LOGGER.debug("%s: ignoring a message type this server does not know: %s", satellite_id, err)
        except ProtocolError as err:
            _LOGGER.warning("%s: bad message on %s: %s", satellite_id, topic, err)
            self._report(satellite_id, ErrorEvent(
                ErrorCode.PROTOCOL, str(err.args[0])[:200] if err.args else "malformed message",
                context={k: str(v)[:200] for k, v in err.context.items()}))
        except Exception as err:  # a bug must not take the bridge down
            _LOGGER.exception("%s: internal error handling a message on %s", satellite_id, topic)
            self._report(satellite_id, ErrorEvent(ErrorCode.INTERNAL, f"server error: {type(err).__name__}"))

    # ================================================================ routing

    def _on_audio(self, satellite_id: str, frame: AudioFrame) -> None:
        sid = frame.session_id
        self._check_owner(satellite_id, sid)
        conversation = self.conversations.get(sid)
        if conversation is not None:
            conversation.feed(frame)
            return
        pending = self._pending.get(sid)
        if pending is not None:
            if len(pending.frames) < MAX_PENDING_FRAMES:
                pending.frames.append(frame)
            return
        if sid in self._recent:
            return  # in flight when the session ended
        _LOGGER.info("%s: audio for unknown session %s", satellite_id, sid)
        self._remember(sid)
        self._report(satellite_id, ErrorEvent(ErrorCode.UNKNOWN_SESSION, "no such session", session_id=sid),
                     limit=False)

    def _on_event(self, satellite_id: str, event: SatelliteEvent) -> None:
        # Who sent it comes from the topic (with broker ACLs, the account); a session id
        # alone proves nothing. Check before anything acts on a session.
        if event.session_id is not None:
            self._check_owner(satellite_id, event.session_id)
        if isinstance(event, (WakeCandidate, BargeIn)) or (isinstance(event, PlaybackFinished) and event.interrupted):
            self._attended[satellite_id] = self._loop.time()
        match event:
            case WakeCandidate():
                self._on_wake(satellite_id, event)
            case AudioStop():
                if (pending := self._pending.get(event.session_id)) is not None:
                    pending.stop = event
                elif (conversation := self._conversation(satellite_id, event.session_id)) is not None:
                    conversation.audio_stop(event)
            case PlaybackFinished():
                if (conversation := self._conversation(satellite_id, event.session_id)) is not None:
                    if conversation.phase in (Phase.SPEAKING, Phase.AWAITING_ACK):
                        self._resolve_played(event.session_id, None)  # first: the ack may close it
                    conversation.playback_finished(event)
            case BargeIn():
                conversation = self._conversation(satellite_id, event.session_id)
                if conversation is not None:
                    conversation.barge_in(event)
                elif event.session_id not in self._recent:
                    self._report(satellite_id, ErrorEvent(ErrorCode.UNKNOWN_SESSION, "no such session",
                                                          session_id=event.session_id), limit=False)
            case ErrorEvent():
                _LOGGER.warning("%s reports an error: %s: %s", satellite_id, event.code, event.message)
                if event.session_id is not None:
                    self._withdraw(event.session_id)
                    if (conversation := self._conversation(satellite_id, event.session_id)) is not None:
                        conversation.end(f"satellite error {event.code}")
            case _:
                assert_never(event)

    def _check_owner(self, satellite_id: str, session_id: str) -> None:
        """Refuse an event or frame that names a session (live or under arbitration) of another satellite."""
        conversation = self.conversations.get(session_id)
        owner = conversation.satellite_id if conversation is not None else None
        if owner is None and (pending := self._pending.get(session_id)) is not None:
            owner = pending.satellite_id
        if owner is not None and owner != satellite_id:
            raise ProtocolError("message for another satellite's session", session_id=session_id)

    def _conversation(self, satellite_id: str, session_id: str) -> SatelliteConversation | None:
        conversation = self.conversations.get(session_id)
        if conversation is None:
            _LOGGER.debug("%s: event for session %s, which is not live", satellite_id, session_id)
            return None
        self._check_owner(satellite_id, session_id)
        return conversation

    def _on_status(self, satellite_id: str, status: SatelliteStatus) -> None:
        if status.satellite_id != satellite_id:
            raise ProtocolError("status names another satellite", satellite_id=status.satellite_id)
        previous = self.satellites.get(satellite_id)
        self.satellites[satellite_id] = status
        if previous is None or previous.online != status.online:
            _LOGGER.info("satellite %s is %s", satellite_id, status.availability)
        if not status.online:
            for pending in [p for p in self._pending.values() if p.satellite_id == satellite_id]:
                self._withdraw(pending.session_id)
            conversation = self._by_satellite.get(satellite_id)
            if conversation is not None:
                conversation.end("satellite went offline")

    # ================================================================ wake and arbitration

    def _on_wake(self, satellite_id: str, wake: WakeCandidate) -> None:
        sid = wake.session_id
        if sid in self.conversations or sid in self._pending or sid in self._recent:
            return  # a redelivered wake
        current = self._by_satellite.get(satellite_id)
        if current is not None:  # the satellite moved on (a new wake word while we thought it busy)
            current.end("the satellite started a new session")
        if self.stopping:
            self._command(satellite_id, StandDown(sid, reason=StandDownReason.BUSY))
            return
        _LOGGER.info("%s: wake word %s (score %.2f, %s dBFS), session %s", satellite_id, wake.wake_word,
                     wake.score, wake.energy, sid)
        candidate = Candidate(satellite_id, sid, wake.score, wake.energy, self._loop.time())
        offer = self.arbiter.offer(candidate)
        match offer:
            case Opened():
                self._pending[sid] = _PendingWake(satellite_id, sid)
                self._schedule_resolve(offer.deadline)
            case Joined():
                self._pending[sid] = _PendingWake(satellite_id, sid)
                if offer.replaced is not None:
                    self._pending.pop(offer.replaced.session_id, None)
                    self._remember(offer.replaced.session_id)
            case Late():
                _LOGGER.info("%s: stands down (late; %s answers)", satellite_id, offer.winner.satellite_id)
                self._remember(sid)
                self._command(satellite_id, StandDown(sid, winner=offer.winner.satellite_id))
            case _:
                assert_never(offer)

    def _schedule_resolve(self, deadline: float) -> None:
        if self._resolve_timer is not None:
            self._resolve_timer.cancel()
        self._resolve_timer = self._loop.call_at(deadline, self._resolve)

    def _resolve(self) -> None:
        self._resolve_timer = None
        decision = self.arbiter.resolve(self._loop.time())
        if decision is None:
            if self.arbiter.deadline is not None:
                self._schedule_resolve(self.arbiter.deadline)
            return
        winner = decision.winner
        for loser in decision.losers:
            _LOGGER.info("%s: stands down (%s answers)", loser.satellite_id, winner.satellite_id)
            self._pending.pop(loser.session_id, None)
            self._remember(loser.session_id)
            self._command(loser.satellite_id, StandDown(loser.session_id, winner=winner.satellite_id))
        pending = self._pending.pop(winner.session_id, None)
        if pending is None:
            return
        try:
            self._start_conversation(pending)
        except Exception:
            _LOGGER.exception("%s: could not start a session", winner.satellite_id)
            self._remember(winner.session_id)
            self._command(winner.satellite_id, ErrorEvent(ErrorCode.INTERNAL, "could not start a session",
                                                          session_id=winner.session_id))

    def _withdraw(self, session_id: str) -> None:
        if self._pending.pop(session_id, None) is not None:
            self.arbiter.withdraw(session_id)
            self._remember(session_id)

    def _start_conversation(self, pending: _PendingWake) -> None:
        satellite_id, sid = pending.satellite_id, pending.session_id
        conversation = SatelliteConversation(
            satellite_id, sid, self, self._session_factory(satellite_id), self.conversation_settings,
            self._conversation_closed)
        self.conversations[sid] = conversation
        self._by_satellite[satellite_id] = conversation
        self._command(satellite_id, SessionAccepted(sid, conversation_id=conversation.session.conversation_id))
        for frame in pending.frames:
            conversation.feed(frame)
        if pending.stop is not None:
            conversation.audio_stop(pending.stop)

    def _session_factory(self, satellite_id: str) -> SessionFactory:
        sessions = self.ctx.sessions
        defaults = satellite_session_defaults(sessions.policy.defaults, self.config.satellites.get(satellite_id))

        def build(sink: MediaSink) -> RealtimeSession:
            return sessions.open(sink, defaults=defaults, media=sink, media_rate=WIRE_RATE, satellite_id=satellite_id)

        return build

    def _conversation_closed(self, conversation: SatelliteConversation, reason: str) -> None:
        self.conversations.pop(conversation.session_id, None)
        if self._by_satellite.get(conversation.satellite_id) is conversation:
            del self._by_satellite[conversation.satellite_id]
        self.ctx.sessions.closed(conversation.session)
        self.arbiter.ended(conversation.session_id)
        self._remember(conversation.session_id)
        self.closed_log.append((conversation.satellite_id, conversation.session_id, reason))
        self._resolve_played(conversation.session_id, reason)
        del self.closed_log[:-100]

    # ================================================================ server-started sessions

    def attended_since(self, satellite_id: str, since: float) -> bool:
        """Whether someone turned to the satellite after event-loop time `since`: its wake word
        (a barge-in too) or a reply stopped early (``stop-playback``, from Home Assistant or the
        server). A ringing timer stops when this turns true."""
        return self._attended.get(satellite_id, since) > since

    def start_session(
        self,
        satellite_id: str,
        *,
        text: str | None = None,
        listen: bool = False,
        prelude: np.ndarray | None = None,
        instructions: str | None = None,
    ) -> asyncio.Future[str | None]:
        """Open a session on a satellite from the server's side (no wake word, no arbitration).

        With `text` the satellite speaks it first (an announcement, a timer's line; `prelude`
        is 16 kHz PCM played before it) and, when `listen`, reopens its mic afterwards for the
        answer, as in continued conversation. Without `text` it opens its mic at once
        (``session-start``). `instructions` are added to the session's for this conversation.
        The future resolves when the satellite has played the text (None), or with the reason
        it could not. Raises `SatelliteUnavailable` when the satellite cannot take a session now.
        """
        if self.stopping:
            raise SatelliteUnavailable("the server is shutting down")
        status = self.satellites.get(satellite_id)
        if status is None or not status.online:
            raise SatelliteUnavailable(f"satellite {satellite_id} is not online")
        if satellite_id in self._by_satellite or any(p.satellite_id == satellite_id for p in self._pending.values()):
            raise SatelliteUnavailable(f"satellite {satellite_id} is in a conversation")
        sid = new_session_id()
        conversation = SatelliteConversation(
            satellite_id, sid, self, self._session_factory(satellite_id), self.conversation_settings,
            self._conversation_closed)
        self.conversations[sid] = conversation
        self._by_satellite[satellite_id] = conversation
        played: asyncio.Future[str | None] = self._loop.create_future()
        self._played[sid] = played
        if instructions:
            base = conversation.session.config.instructions or ""
            conversation.session.handle_text(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "instructions": f"{base}\n\n{instructions}" if base else instructions}}))
        if text is None:
            self._command(satellite_id, SessionStart(sid, conversation_id=conversation.session.conversation_id))
            self._resolve_played(sid, None)
        else:
            _LOGGER.info("%s: speaking %r (session %s%s)", satellite_id, text, sid, ", then listening" if listen else "")
            conversation.announce(text, listen=listen, prelude=prelude)
        return played

    def _resolve_played(self, session_id: str, error: str | None) -> None:
        played = self._played.pop(session_id, None)
        if played is not None and not played.done():
            played.set_result(error)

    def _remember(self, session_id: str) -> None:
        self._recent[session_id] = None
        self._recent.move_to_end(session_id)
        while len(self._recent) > RECENT_SESSIONS:
            self._recent.popitem(last=False)

    # ================================================================ output (the conversations' Outbox)

    def command(self, satellite_id: str, message: Message) -> None:
        self._command(satellite_id, message)

    def reply_frame(self, satellite_id: str, frame: AudioFrame) -> None:
        self._publish(topics.satellite_reply(satellite_id), frame.to_bytes(), QOS_AUDIO, False)

    def _command(self, satellite_id: str, message: Message) -> None:
        self._publish(topics.satellite_command(satellite_id), message.to_json(), QOS_CONTROL, False)

    def _report(self, satellite_id: str, error: ErrorEvent, *, limit: bool = True) -> None:
        now = self._loop.time()
        if limit and now - self._last_error.get(satellite_id, -1e9) < ERROR_INTERVAL_S:
            return
        self._last_error[satellite_id] = now
        self._command(satellite_id, error)

    # ================================================================ shutdown

    def _drop_everything(self, reason: str, notify: str | None = None) -> None:
        if self._resolve_timer is not None:
            self._resolve_timer.cancel()
            self._resolve_timer = None
        for sid in list(self._pending):
            self._remember(sid)
        self._pending.clear()
        self.arbiter = Arbiter(window_s=self.arbiter.window_s)
        for conversation in list(self.conversations.values()):
            conversation.end(reason, notify=notify)

    def close(self) -> None:
        """Server shutdown: tell satellites in a session, then free every session."""
        self.stopping = True
        self._drop_everything("server shutdown", notify=SessionEndReason.CANCELLED)


MqttBridge.KEY = web.AppKey("hearth_mqtt_bridge", MqttBridge)
