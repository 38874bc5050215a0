"""The satellite's state machine, driven frame by frame with fakes (no broker, no models)."""

from __future__ import annotations

import queue
import time

import pytest

from hearth.satellite.audio import AudioSink, AudioSource
from hearth.satellite.config import config_from_dict
from hearth.satellite.feedback import StateChange
from hearth.satellite.mqtt import BadMessage, CommandReceived, LinkDown, LinkUp, ReplyFrameReceived
from hearth.satellite.satellite import Satellite
from hearth.satellite.vad import VoiceActivityDetector
from hearth.satellite.wake import Detection, WakeWordDetector
from hearth.wire import (
    AudioFrame,
    AudioStop,
    BargeIn,
    ErrorEvent,
    Mute,
    PlaybackFinished,
    ProtocolError,
    ReplyEnd,
    ReplyStart,
    SatelliteStatus,
    SessionAccepted,
    SessionEnd,
    SessionStart,
    StandDown,
    StopPlayback,
    WakeCandidate,
    new_session_id,
)

FRAME = bytes(640)
LOUD = (b"\x00\x10" * 320)


class FakeLink:
    def __init__(self) -> None:
        self.inbox: queue.Queue[object] = queue.Queue()
        self.connected = True
        self.sent: list[object] = []

    def start(self) -> None: ...
    def poll(self) -> None: ...

    def stop(self, final_status=None) -> None:
        if final_status is not None:
            self.sent.append(final_status)

    def publish_status(self, status) -> None:
        self.sent.append(status)

    def publish_event(self, message) -> None:
        self.sent.append(message)

    def publish_audio(self, frame) -> None:
        self.sent.append(frame)

    def of(self, kind):
        return [m for m in self.sent if isinstance(m, kind)]

    def clear(self) -> None:
        self.sent.clear()


class ScriptedDetector(WakeWordDetector):
    engine = "scripted"

    def __init__(self) -> None:
        super().__init__({"hey_jarvis": 0.5})
        self.fire_next = False

    def process(self, pcm: bytes):
        if self.fire_next:
            self.fire_next = False
            return Detection("hey_jarvis", 0.98)
        return None

    def _scores(self, pcm):  # pragma: no cover - process is overridden
        return iter(())

    def _reset_engine(self) -> None:
        pass


class LoudIsSpeech(VoiceActivityDetector):
    engine = "scripted"

    def is_speech(self, pcm: bytes) -> bool:
        return any(pcm)


class RecordingSink(AudioSink):
    def __init__(self) -> None:
        self.written = bytearray()
        self.flushes = 0

    def write(self, pcm: bytes) -> None:
        self.written += pcm

    def flush(self) -> None:
        self.flushes += 1


class NoSource(AudioSource):
    frame_bytes = 640

    def read(self) -> bytes:
        return FRAME


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig():
    return Rig()


class Rig:
    def __init__(self, **config) -> None:
        base = {
            "satellite": {"id": "kitchen"},
            "vad": {"min_speech": 40, "silence": 200, "no_speech_timeout": 1.0, "max_utterance": 3.0},
            "session": {"accept_timeout": 2.0, "reply_timeout": 5.0, "reply_grace": 0.3, "error_hold": 1.0},
        }
        for key, value in config.items():
            base.setdefault(key, {}).update(value)
        self.config = config_from_dict(base)
        self.link = FakeLink()
        self.detector = ScriptedDetector()
        self.sink = RecordingSink()
        self.clock = Clock()
        self.changes: list[StateChange] = []
        self.sat = Satellite(
            self.config,
            link=self.link,
            source=NoSource(),
            sink=self.sink,
            detector=self.detector,
            vad=LoudIsSpeech(),
            listeners=[self.changes.append],
            clock=self.clock,
        )

    # driving
    def frames(self, n: int = 1, pcm: bytes = FRAME, dt: float = 0.02) -> None:
        for _ in range(n):
            self.clock.now += dt
            self.sat.step(pcm)

    def command(self, message) -> None:
        self.link.inbox.put(CommandReceived(message))
        self.frames()

    def reply_frame(self, frame: AudioFrame) -> None:
        self.link.inbox.put(ReplyFrameReceived(frame))

    def wake(self) -> str:
        self.detector.fire_next = True
        self.frames()
        (wake,) = self.link.of(WakeCandidate)[-1:]
        return wake.session_id

    def utterance(self) -> None:
        """Speech then enough silence for end of speech."""
        self.frames(10, LOUD)
        self.frames(12)

    def settle(self, seconds: float = 1.0) -> None:
        """Let the player thread finish and the main loop see it."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.frames(1, dt=0.0)
            if self.sat.player.playing is None and self.link.inbox.empty():
                self.frames(1, dt=0.0)
                return
            time.sleep(0.005)

    def play_reply(self, sid: str, pcm: bytes = LOUD * 10, *, expects_reply: bool = False, end_frame: bool = True) -> None:
        self.command(ReplyStart(sid))
        self.reply_frame(AudioFrame(sid, 0, pcm))
        last = 0
        if end_frame:
            self.reply_frame(AudioFrame(sid, 1, b"", end=True))
            last = 1
        self.command(ReplyEnd(sid, last_seq=last, expects_reply=expects_reply))
        self.settle()

    @property
    def states(self) -> list[str]:
        return [c.state for c in self.changes]


def test_a_normal_turn(rig: Rig):
    assert rig.sat.state == "idle"
    sid = rig.wake()
    assert rig.sat.state == "listening"
    rig.command(SessionAccepted(sid))
    rig.utterance()
    assert rig.sat.state == "thinking"
    frames = rig.link.of(AudioFrame)
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert frames[-1].end
    (stop,) = rig.link.of(AudioStop)
    assert stop.reason == "end-of-speech" and stop.last_seq == frames[-1].seq
    rig.play_reply(sid)
    assert bytes(rig.sink.written) == LOUD * 10
    (ack,) = rig.link.of(PlaybackFinished)
    assert ack == PlaybackFinished(sid, played_ms=200, interrupted=False, continue_conversation=False)
    assert rig.sat.state == "idle" and rig.sat.session is None
    assert rig.states == ["listening", "thinking", "speaking", "idle"]
    # every state change was published in the retained status
    published = [s.state for s in rig.link.of(SatelliteStatus)]
    assert published == ["listening", "thinking", "speaking", "idle"]


def test_no_streaming_while_idle(rig: Rig):
    rig.frames(50, LOUD)
    assert rig.link.of(AudioFrame) == []


def test_stand_down_drops_the_session_silently(rig: Rig):
    sid = rig.wake()
    rig.frames(5, LOUD)
    rig.command(StandDown(sid, winner="living-room"))
    assert rig.sat.state == "idle" and rig.sat.session is None
    sent = len(rig.link.of(AudioFrame))
    rig.frames(20, LOUD)
    assert len(rig.link.of(AudioFrame)) == sent, "no audio after standing down"
    assert rig.link.of(AudioStop) == []


def test_stale_commands_for_other_sessions_are_ignored(rig: Rig):
    sid = rig.wake()
    rig.command(StandDown(new_session_id()))
    rig.command(SessionEnd(new_session_id()))
    assert rig.sat.state == "listening" and rig.sat.session.id == sid


def test_no_accept_is_an_error_then_idle(rig: Rig):
    rig.wake()
    rig.frames(10, LOUD)
    rig.frames(1, dt=2.0)  # past accept_timeout
    assert rig.sat.state == "error"
    (stop,) = rig.link.of(AudioStop)
    assert stop.reason == "cancelled"
    assert any(isinstance(m, ErrorEvent) and m.code == "timeout" for m in rig.link.sent)
    rig.frames(1, dt=1.1)  # error_hold
    assert rig.sat.state == "idle"


def test_reply_timeout(rig: Rig):
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.utterance()
    rig.frames(1, dt=5.1)
    assert rig.sat.state == "error"


def test_no_speech_after_wake_goes_idle(rig: Rig):
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.frames(60)
    (stop,) = rig.link.of(AudioStop)
    assert stop.reason == "no-speech" and rig.sat.state == "idle"


def test_utterance_cap(rig: Rig):
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.frames(200, LOUD)
    (stop,) = rig.link.of(AudioStop)
    assert stop.reason == "max-length"
    assert len(rig.link.of(AudioFrame)) == 3000 // 20 + 1


def test_server_side_end_of_turn(rig: Rig):
    """The server decides the turn: audio-stop from the server, or simply reply-start."""
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.frames(5, LOUD)
    rig.command(AudioStop(sid))
    assert rig.sat.state == "thinking"
    n = len(rig.link.of(AudioFrame))
    rig.frames(5, LOUD)
    assert len(rig.link.of(AudioFrame)) == n

    rig2 = Rig()
    sid2 = rig2.wake()
    rig2.frames(5, LOUD)
    rig2.command(ReplyStart(sid2))
    assert rig2.sat.state == "speaking" and not rig2.sat.session.streaming


def test_continued_conversation_waits_for_playback_and_sends_the_ack_first(rig: Rig):
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.utterance()
    before = len(rig.link.sent)
    rig.command(ReplyStart(sid))
    rig.reply_frame(AudioFrame(sid, 0, LOUD * 10))
    rig.reply_frame(AudioFrame(sid, 1, b"", end=True))
    rig.command(ReplyEnd(sid, last_seq=1, expects_reply=True))
    rig.settle()
    assert rig.sat.state == "listening"
    after = rig.link.sent[before:]
    ack_index = next(i for i, m in enumerate(after) if isinstance(m, PlaybackFinished))
    assert after[ack_index].continue_conversation
    assert not any(isinstance(m, AudioFrame) for m in after[:ack_index]), "mic stays closed until the ack"
    rig.utterance()
    frames = [m for m in rig.link.sent[before:] if isinstance(m, AudioFrame)]
    assert frames and {f.session_id for f in frames} == {sid}
    assert len(rig.link.of(WakeCandidate)) == 1, "no new wake"


def test_continued_conversation_can_be_disabled(rig: Rig):
    rig = Rig(session={"continue_conversation": False})
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.utterance()
    rig.play_reply(sid, expects_reply=True)
    assert rig.sat.state == "idle"
    assert not rig.link.of(PlaybackFinished)[0].continue_conversation


def test_reply_end_waits_for_frames_in_flight(rig: Rig):
    """reply-end (QoS 1) may overtake the last QoS 0 frames: wait for last_seq, up to reply_grace."""
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.utterance()
    rig.command(ReplyStart(sid))
    rig.reply_frame(AudioFrame(sid, 0, LOUD))
    rig.command(ReplyEnd(sid, last_seq=2))
    rig.settle(0.1)
    assert rig.sat.state == "speaking" and rig.link.of(PlaybackFinished) == []
    rig.reply_frame(AudioFrame(sid, 1, LOUD))
    rig.reply_frame(AudioFrame(sid, 2, LOUD))
    rig.settle()
    assert rig.sat.state == "idle"
    assert bytes(rig.sink.written) == LOUD * 3


def test_lost_final_frames_finish_after_the_grace_period(rig: Rig):
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.utterance()
    rig.command(ReplyStart(sid))
    rig.reply_frame(AudioFrame(sid, 0, LOUD))
    rig.command(ReplyEnd(sid, last_seq=5))
    rig.frames(1, dt=0.31)
    rig.settle()
    assert rig.sat.state == "idle"
    assert rig.link.of(PlaybackFinished)[0].played_ms == 20


class SlowSink(RecordingSink):
    def write(self, pcm: bytes) -> None:
        super().write(pcm)
        time.sleep(len(pcm) / 32000)


def test_barge_in_stops_playback_and_starts_a_new_turn():
    rig = Rig()
    rig.sat.player.sink = rig.sink = SlowSink()
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.utterance()
    rig.command(ReplyStart(sid))
    for seq in range(50):  # 2 s of reply
        rig.reply_frame(AudioFrame(sid, seq, LOUD * 2))
    rig.command(ReplyEnd(sid))
    time.sleep(0.15)
    rig.detector.fire_next = True
    rig.frames()
    (barge,) = rig.link.of(BargeIn)
    assert barge.session_id == sid and 40 <= barge.played_ms < 1000
    assert rig.sat.state == "listening" and rig.sat.session.id == sid
    assert rig.sink.flushes >= 1
    time.sleep(0.1)
    written = len(rig.sink.written)
    time.sleep(0.1)
    assert len(rig.sink.written) == written, "playback stopped at once"
    rig.utterance()
    assert rig.link.of(PlaybackFinished) == [], "barge-in replaces the ack"
    stops = rig.link.of(AudioStop)
    assert len(stops) == 2 and stops[-1].session_id == sid
    frames = rig.link.of(AudioFrame)
    assert [f.seq for f in frames] == list(range(len(frames))), "sequence numbers continue in the session"


def test_barge_in_can_be_disabled():
    rig = Rig(session={"barge_in": False})
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.utterance()
    rig.command(ReplyStart(sid))
    rig.detector.fire_next = True
    rig.frames()
    assert rig.link.of(BargeIn) == [] and rig.sat.state == "speaking"


def test_stop_playback_acks_interrupted(rig: Rig):
    rig.sat.player.sink = rig.sink = SlowSink()
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.utterance()
    rig.command(ReplyStart(sid))
    for seq in range(50):
        rig.reply_frame(AudioFrame(sid, seq, LOUD * 2))
    time.sleep(0.1)
    rig.command(StopPlayback())
    (ack,) = rig.link.of(PlaybackFinished)
    assert ack.interrupted and ack.played_ms < 2000
    assert rig.sat.state == "idle"


def test_session_end_while_thinking_and_while_speaking(rig: Rig):
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.utterance()
    rig.command(SessionEnd(sid))
    assert rig.sat.state == "idle"

    rig2 = Rig()
    sid2 = rig2.wake()
    rig2.command(SessionAccepted(sid2))
    rig2.utterance()
    rig2.command(ReplyStart(sid2))
    rig2.command(SessionEnd(sid2))
    assert rig2.sat.state == "speaking", "the reply still plays"
    rig2.reply_frame(AudioFrame(sid2, 0, LOUD, end=True))
    rig2.command(ReplyEnd(sid2, last_seq=0, expects_reply=True))
    rig2.settle()
    assert rig2.sat.state == "idle"
    assert not rig2.link.of(PlaybackFinished)[0].continue_conversation


def test_session_start_opens_the_mic_without_a_wake_word(rig: Rig):
    sid = new_session_id()
    rig.command(SessionStart(sid))
    assert rig.sat.state == "listening" and rig.sat.session.accepted
    rig.utterance()
    assert rig.link.of(AudioStop)[0].session_id == sid
    assert rig.link.of(WakeCandidate) == []
    # busy: a second session-start is refused with an error
    other = new_session_id()
    rig.command(SessionStart(other))
    (error,) = rig.link.of(ErrorEvent)
    assert error.session_id == other and error.code == "busy"


def test_announcement_while_idle(rig: Rig):
    sid = new_session_id()
    rig.play_reply(sid)
    assert rig.link.of(PlaybackFinished)[0].session_id == sid
    assert rig.sat.state == "idle"


def test_mute_over_mqtt_and_locally(rig: Rig):
    rig.command(Mute(True))
    assert rig.sat.state == "muted"
    assert rig.link.of(SatelliteStatus)[-1].muted is True
    rig.detector.fire_next = True
    rig.frames()
    assert rig.link.of(WakeCandidate) == [], "no wake word while muted"
    assert rig.detector.fire_next, "the detector does not even run while muted"
    rig.detector.fire_next = False
    rig.sat.toggle_mute()  # what SIGUSR1 and the GPIO button do
    rig.frames()
    assert rig.sat.state == "idle" and rig.link.of(SatelliteStatus)[-1].muted is False


def test_mute_cancels_a_session(rig: Rig):
    sid = rig.wake()
    rig.frames(5, LOUD)
    rig.command(Mute(True))
    (stop,) = rig.link.of(AudioStop)
    assert stop.session_id == sid and stop.reason == "cancelled"
    assert rig.sat.state == "muted" and rig.sat.session is None


def test_start_muted():
    rig = Rig(mute={"start_muted": True})
    assert rig.sat.state == "muted"
    rig.command(SessionStart(new_session_id()))
    assert rig.link.of(ErrorEvent)[0].code == "busy"


def test_server_error_for_the_session(rig: Rig):
    sid = rig.wake()
    rig.command(SessionAccepted(sid))
    rig.utterance()
    rig.command(ErrorEvent("stt", "speech recognition failed", session_id=sid))
    assert rig.sat.state == "error"
    rig.frames(1, dt=1.1)
    assert rig.sat.state == "idle"


def test_broker_loss_during_a_session_and_reconnect(rig: Rig):
    rig.wake()
    rig.link.connected = False
    rig.link.inbox.put(LinkDown("gone"))
    rig.frames()
    assert rig.sat.state == "error" and rig.sat.session is None
    rig.link.connected = True
    rig.link.clear()
    rig.link.inbox.put(LinkUp("5"))
    rig.frames()
    assert rig.link.of(SatelliteStatus), "status republished on reconnect"


def test_wake_without_a_broker_is_an_error(rig: Rig):
    rig.link.connected = False
    rig.detector.fire_next = True
    rig.frames()
    assert rig.sat.state == "error" and rig.link.of(WakeCandidate) == []


def test_bad_messages_are_reported_not_swallowed(rig: Rig):
    rig.link.inbox.put(BadMessage(ProtocolError("bad audio frame magic", topic="hearth/v1/satellite/kitchen/reply")))
    rig.frames()
    (error,) = rig.link.of(ErrorEvent)
    assert error.code == "protocol" and error.context == {"topic": "hearth/v1/satellite/kitchen/reply"}


def test_a_flood_of_bad_messages_is_reported_once_a_second(rig: Rig):
    for _ in range(200):
        rig.link.inbox.put(BadMessage(ProtocolError("JSON nested too deeply", topic="hearth/v1/server/x/status")))
    rig.frames(60)  # over a second
    assert len(rig.link.of(ErrorEvent)) == 1
    rig.link.inbox.put(BadMessage(ProtocolError("JSON nested too deeply", topic="hearth/v1/server/x/status")))
    rig.frames()
    assert len(rig.link.of(ErrorEvent)) == 2


def test_a_handler_that_fails_does_not_stop_the_satellite(rig: Rig, monkeypatch: pytest.MonkeyPatch):
    def broken(command):  # noqa: ANN001
        raise RuntimeError("a bug in a command handler")

    monkeypatch.setattr(rig.sat, "_on_command", broken)
    rig.link.inbox.put(CommandReceived(Mute(True)))
    rig.link.inbox.put(LinkUp("5"))
    rig.frames()  # the bug is logged; the next item is still handled
    assert rig.link.of(SatelliteStatus)


def test_shutdown_publishes_offline(rig: Rig):
    rig.sat.shutdown()
    assert rig.link.sent[-1] == SatelliteStatus.offline("kitchen")


def test_a_failing_listener_does_not_stop_the_satellite(rig: Rig):
    def broken(change):
        raise RuntimeError("LED on fire")

    rig.sat.listeners.insert(0, broken)
    rig.wake()
    assert rig.sat.state == "listening" and rig.states == ["listening"]
