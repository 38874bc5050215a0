"""End to end against a real Mosquitto: a satellite process in file mode and a minimal server in the test.

The "server" here is only what the wire protocol asks of one (paho + hearth.wire):
accept the wake, collect the audio, answer with reply frames, wait for the ack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest

from hearth.wire import (
    AudioFrame,
    AudioStop,
    MqttUrl,
    PlaybackFinished,
    ReplyEnd,
    ReplyStart,
    SatelliteStatus,
    SessionAccepted,
    WakeCandidate,
    decode_satellite_event,
    decode_satellite_status,
    topics,
)
from hearth.wire.topics import SatelliteChannel

from .conftest import write_wav

pytestmark = pytest.mark.slow

SAT_ID = "kitchen"
REPLY_FRAME_BYTES = 1280  # 40 ms


@dataclass
class Received:
    at: float
    kind: str  # "status" | "event" | "audio"
    message: object


@dataclass
class MiniServer:
    """Accepts every wake and answers each finished utterance with ``reply_pcm``."""

    broker: MqttUrl
    reply_pcm: bytes
    expects_reply: bool = False
    log: list[Received] = field(default_factory=list)
    replies_sent: int = 0

    def __post_init__(self) -> None:
        self.cond = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-server", protocol=paho.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self._pending: set[int] = set()

    def start(self) -> "MiniServer":
        """Connect; return once the broker has acknowledged every subscription (SUBACK)."""
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "test server could not connect and subscribe"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        # paho runs on_subscribe on this same thread, after this returns: no SUBACK is missed.
        self._pending = {
            client.subscribe(topics.all_satellites(channel), qos=channel.qos)[1]
            for channel in (SatelliteChannel.STATUS, SatelliteChannel.EVENT, SatelliteChannel.AUDIO)
        }

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        assert all(not code.is_failure for code in reason_codes), reason_codes
        self._pending.discard(mid)
        if not self._pending:
            self.subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        parsed = topics.parse_topic(msg.topic)
        if parsed.channel is SatelliteChannel.STATUS:
            item = Received(time.monotonic(), "status", decode_satellite_status(msg.payload))
        elif parsed.channel is SatelliteChannel.AUDIO:
            item = Received(time.monotonic(), "audio", AudioFrame.from_bytes(msg.payload))
        else:
            item = Received(time.monotonic(), "event", decode_satellite_event(msg.payload))
        with self.cond:
            self.log.append(item)
            self.cond.notify_all()
        message = item.message
        command_topic = topics.satellite_command(parsed.satellite_id)
        if isinstance(message, WakeCandidate):
            client.publish(command_topic, SessionAccepted(message.session_id).to_json(), qos=1)
        elif isinstance(message, AudioStop) and message.reason == "end-of-speech":
            threading.Thread(target=self._reply, args=(parsed.satellite_id, message.session_id), daemon=True).start()

    def _reply(self, satellite_id: str, session_id: str) -> None:
        command_topic = topics.satellite_command(satellite_id)
        reply_topic = topics.satellite_reply(satellite_id)
        self.client.publish(command_topic, ReplyStart(session_id, text="The kitchen light is on.").to_json(), qos=1)
        seq = 0
        for i in range(0, len(self.reply_pcm), REPLY_FRAME_BYTES):
            frame = AudioFrame(session_id, seq, self.reply_pcm[i : i + REPLY_FRAME_BYTES])
            self.client.publish(reply_topic, frame.to_bytes(), qos=0)
            seq += 1
        self.client.publish(reply_topic, AudioFrame(session_id, seq, b"", end=True).to_bytes(), qos=0)
        end = ReplyEnd(session_id, last_seq=seq, expects_reply=self.expects_reply)
        self.client.publish(command_topic, end.to_json(), qos=1)
        with self.cond:
            self.replies_sent += 1

    # -- helpers for assertions --------------------------------------------------------
    def wait_for(self, predicate, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [item for item in self.log if predicate(item.message)]
                if found:
                    return found[0].message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; received: {[type(i.message).__name__ for i in self.log]}")
                self.cond.wait(left)

    def of(self, kind: type) -> list:
        with self.cond:
            return [item.message for item in self.log if isinstance(item.message, kind)]

    def index_of(self, predicate) -> int:
        with self.cond:
            return next(i for i, item in enumerate(self.log) if predicate(item.message))


def satellite_command(broker: MqttUrl, tmp_path: Path, *extra: str, config: str = "") -> list[str]:
    cfg = tmp_path / "satellite.yaml"
    cfg.write_text(
        "satellite: {name: Kitchen, area: kitchen}\n"
        "mqtt: {reconnect_min: 0.2, reconnect_max: 1.0, keepalive: 5}\n"
        "session: {error_hold: 0.2, accept_timeout: 5}\n"
        "vad: {no_speech_timeout: 1.5}\n" + config
    )
    return [
        sys.executable,
        "-m",
        "hearth.satellite",
        "--config",
        str(cfg),
        "--id",
        SAT_ID,
        "--mqtt-url",
        f"mqtt://{broker.host}:{broker.port}",
        "--log-level",
        "debug",
        *extra,
    ]


def run_satellite(cmd: list[str], timeout: float = 40.0) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        print(result.stderr[-5000:])
    return result


@pytest.fixture
def request_wav(speech, tmp_path) -> Path:
    return write_wav(tmp_path / "request.wav", speech.clip(1.0, "Hey Jarvis.", 0.6, "Turn on the kitchen light.", 1.5))


@pytest.fixture
def reply_pcm(speech) -> bytes:
    return speech.clip(0.1, "The kitchen light is on.").tobytes()


def test_a_turn_over_a_real_broker(mosquitto, tmp_path, request_wav, reply_pcm, speech):
    broker = MqttUrl.parse(mosquitto.url)
    server = MiniServer(broker, reply_pcm).start()
    out = tmp_path / "reply.wav"
    try:
        result = run_satellite(
            satellite_command(broker, tmp_path, "--input-wav", str(request_wav), "--fast", "--output-wav", str(out))
        )
        assert result.returncode == 0, result.stderr[-3000:]
        server.wait_for(lambda m: isinstance(m, SatelliteStatus) and not m.online, timeout=5)
    finally:
        server.stop()

    # status: retained, online with capabilities, through every state, offline at the end
    statuses = server.of(SatelliteStatus)
    first = statuses[0]
    assert first.online and first.satellite_id == SAT_ID and first.name == "Kitchen"
    assert first.capabilities is not None and first.capabilities.wake_words == ("hey_jarvis",)
    assert first.capabilities.has_vad and first.capabilities.sample_rate == 16000
    states = [s.state for s in statuses if s.online]
    assert states[:1] == ["idle"] and states[-1] == "idle"
    assert [s for s in states if s != "idle"] == ["listening", "thinking", "speaking"]
    assert not statuses[-1].online

    # wake candidate
    (wake,) = server.of(WakeCandidate)
    assert wake.wake_word == "hey_jarvis" and wake.score >= 0.5
    assert wake.energy is not None and -60 < wake.energy < 0
    assert wake.timestamp is not None and abs(wake.timestamp - time.time()) < 60

    # audio frames: one session, contiguous sequence numbers, an end-of-stream frame
    frames = server.of(AudioFrame)
    assert {f.session_id for f in frames} == {wake.session_id}
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert frames[-1].end and not frames[-1].pcm and not any(f.end for f in frames[:-1])
    assert all(len(f.pcm) == 640 for f in frames[:-1]), "20 ms frames"
    streamed = b"".join(f.pcm for f in frames)
    command_s = len(speech.say("Turn on the kitchen light.")) / 16000
    assert command_s + 0.5 < len(streamed) / 32000 < command_s + 3.0

    # the streamed audio is the command, not the wake word: loud in the middle
    samples = np.frombuffer(streamed, dtype=np.int16).astype(np.float32)
    assert np.sqrt(np.mean(samples**2)) > 300

    (stop,) = server.of(AudioStop)
    assert stop.session_id == wake.session_id and stop.reason == "end-of-speech" and stop.last_seq == frames[-1].seq

    # the reply was written, and acknowledged after it was played
    with wave.open(str(out), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert wav.readframes(wav.getnframes()) == reply_pcm
    (ack,) = server.of(PlaybackFinished)
    assert ack.session_id == wake.session_id and not ack.interrupted and not ack.continue_conversation
    assert ack.played_ms == len(reply_pcm) // 32
    assert server.index_of(lambda m: isinstance(m, AudioStop)) < server.index_of(lambda m: isinstance(m, PlaybackFinished))


def test_continued_conversation_reopens_only_after_the_ack(mosquitto, tmp_path, request_wav, reply_pcm):
    broker = MqttUrl.parse(mosquitto.url)
    server = MiniServer(broker, reply_pcm, expects_reply=True).start()
    try:
        result = run_satellite(
            satellite_command(broker, tmp_path, "--input-wav", str(request_wav), "--fast", "--output-dir", str(tmp_path / "out"))
        )
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        server.stop()
    (ack,) = server.of(PlaybackFinished)
    assert ack.continue_conversation
    stops = server.of(AudioStop)
    assert [s.reason for s in stops] == ["end-of-speech", "no-speech"]  # nobody answered the question
    ack_at = server.index_of(lambda m: isinstance(m, PlaybackFinished))
    second_turn = [
        (i, item.message)
        for i, item in enumerate(server.log)
        if isinstance(item.message, AudioFrame) and item.message.seq > stops[0].last_seq
    ]
    assert second_turn, "the mic reopened without a wake word"
    assert all(i > ack_at for i, _ in second_turn), "no mic audio before the playback-finished ack"
    assert {f.session_id for _, f in second_turn} == {ack.session_id}, "same session, no new wake"
    assert len(server.of(WakeCandidate)) == 1
    assert len(list((tmp_path / "out").glob("reply-*.wav"))) == 1


def _retained_status(broker: MqttUrl, timeout: float = 5.0) -> SatelliteStatus | None:
    """Subscribe with a fresh client and return the retained satellite status, if any."""
    got: list[SatelliteStatus] = []
    done = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)

    def on_connect(c, u, f, rc, p):
        c.subscribe(topics.satellite_status(SAT_ID), qos=1)

    def on_message(c, u, msg):
        if msg.retain:
            got.append(decode_satellite_status(msg.payload))
            done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.loop_start()
    done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    return got[-1] if got else None


def _wait_retained(broker: MqttUrl, predicate, timeout: float = 15.0) -> SatelliteStatus:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = _retained_status(broker, timeout=1.0)
        if status is not None and predicate(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"retained status never matched; last: {status}")


def test_broker_restart_between_turns_then_the_next_turn_works(mosquitto, tmp_path, speech, reply_pcm):
    broker = MqttUrl.parse(mosquitto.url)
    # The file plays in real time and the restart takes as long as it takes, so the turn cannot
    # wait for a moment in the file: the request repeats, the satellite starts muted, and the test
    # unmutes it (SIGUSR1) only once its server is subscribed and has the satellite's retained status.
    # The first wake word the satellite can hear comes after that.
    request = speech.clip(1.0, "Hey Jarvis.", 0.6, "Turn on the kitchen light.", 6.0)
    wav = write_wav(tmp_path / "later.wav", np.concatenate([request] * 8))
    process = subprocess.Popen(
        satellite_command(broker, tmp_path, "--muted", "--input-wav", str(wav), "--output-wav", str(tmp_path / "reply.wav")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = None
    try:
        status = _wait_retained(broker, lambda s: s.online and s.state == "muted")
        assert status.capabilities is not None

        mosquitto.stop()  # no persistence: the retained status is gone with it
        time.sleep(0.5)
        mosquitto.start()
        assert process.poll() is None, "the satellite survives the broker going away"
        status = _wait_retained(broker, lambda s: s.online)
        assert status.state == "muted" and status.capabilities is not None, "status retained again"

        server = MiniServer(broker, reply_pcm).start()  # subscribed (SUBACK)
        server.wait_for(lambda m: isinstance(m, SatelliteStatus) and m.online, timeout=10)  # the retained status
        process.send_signal(signal.SIGUSR1)  # unmute: the satellite listens for the wake word from here on
        server.wait_for(lambda m: isinstance(m, SatelliteStatus) and m.state == "idle", timeout=10)
        ack = server.wait_for(lambda m: isinstance(m, PlaybackFinished), timeout=40)
        wake = server.of(WakeCandidate)[0]
        assert ack.session_id == wake.session_id and not ack.interrupted

        # a clean stop (SIGTERM) publishes offline itself: a will is not sent on a clean disconnect
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert not _wait_retained(broker, lambda s: True).online
    finally:
        if server is not None:
            server.stop()
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr = process.stderr.read() if process.stderr else ""
        if process.stderr:
            process.stderr.close()
    assert "Lost the broker" in stderr and stderr.count("Connected to") >= 2


def test_last_will_marks_a_killed_satellite_offline(mosquitto, tmp_path, speech):
    broker = MqttUrl.parse(mosquitto.url)
    quiet = write_wav(tmp_path / "quiet.wav", speech.silence(60.0))
    process = subprocess.Popen(
        satellite_command(broker, tmp_path, "--input-wav", str(quiet), "--wake-engine", "micro"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        status = _wait_retained(broker, lambda s: s.online)
        assert status.capabilities is not None and status.capabilities.wake_engine == "micro"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        offline = _wait_retained(broker, lambda s: not s.online)
        assert offline == SatelliteStatus.offline(SAT_ID)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
