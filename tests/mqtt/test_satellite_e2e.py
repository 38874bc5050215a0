"""End to end: the real satellite (hearth.satellite) against the real server (real models), over real brokers.

* the satellite process in file mode (``--input-wav`` with piper's "Hey Jarvis." + pause +
  "Turn on the kitchen light.") wakes, streams, gets the server's spoken answer and writes it;
* two satellites woken together: exactly one answers, the other stands down;
* Mosquitto killed and restarted on the same port while idle: both sides reconnect and the
  next turn works;
* a satellite killed mid-stream: the server closes that session and serves the next one.

The multi-satellite and restart tests run the real `Satellite` class in threads with a
microphone stand-in (:class:`CuedSource`) so that the test decides when words are spoken.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest

from hearth.server.context import ServerContext
from hearth.server.mqtt.bridge import MqttBridge
from hearth.server.mqtt.client import MqttClient
from hearth.wire import (
    ErrorEvent,
    Message,
    PlaybackFinished,
    ReplyEnd,
    SatelliteStatus,
    SessionAccepted,
    SessionEnd,
    StandDown,
    decode_satellite_command,
    decode_satellite_event,
    decode_satellite_status,
    topics,
)
from tests.satellite.conftest import Speech, write_wav
from tests.server_harness import RunningServer, free_port, make_config, run_server

from .conftest import SATELLITE_PASSWORDS, MosquittoBroker, find_mosquitto, satellite_accounts, server_credentials

pytestmark = pytest.mark.slow

BRAIN = {"names": [{"name": "Kitchen Light", "domain": "light", "areas": ["Kitchen"]}], "areas": ["Kitchen"]}


# ----------------------------------------------------------------------------- helpers


@dataclass
class Seen:
    at: float
    satellite_id: str
    message: Message


class Observer:
    """Watches every satellite's commands and events on the broker (what a sniffer would see)."""

    def __init__(self, host: str, port: int, protocol: int = paho.MQTTv311,
                 credentials: tuple[str, str] | None = None) -> None:
        self.log: list[Seen] = []
        self.cond = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"observer-{port}", protocol=protocol)
        if credentials is not None:
            self.client.username_pw_set(*credentials)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([
            (topics.all_satellites(topics.SatelliteChannel.COMMAND), 1),
            (topics.all_satellites(topics.SatelliteChannel.EVENT), 1),
            (topics.all_satellites(topics.SatelliteChannel.STATUS), 1)])
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        parsed = topics.parse_topic(msg.topic)
        if not msg.payload:
            return
        channel = parsed.channel  # type: ignore[union-attr]
        if channel is topics.SatelliteChannel.COMMAND:
            message: Message = decode_satellite_command(msg.payload)
        elif channel is topics.SatelliteChannel.EVENT:
            message = decode_satellite_event(msg.payload)
        else:
            message = decode_satellite_status(msg.payload)
        with self.cond:
            self.log.append(Seen(time.monotonic(), parsed.satellite_id, message))  # type: ignore[union-attr]
            self.cond.notify_all()

    def wait_for(self, satellite_id: str, kind: type, timeout: float = 30.0, where: Any = lambda m: True,
                 after: float = 0.0) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for seen in self.log:
                    if (seen.satellite_id == satellite_id and isinstance(seen.message, kind) and seen.at >= after
                            and where(seen.message)):
                        return seen.message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {getattr(kind, '__name__', kind)} from/to {satellite_id}; saw "
                                         f"{[(s.satellite_id, s.message.type) for s in self.log]}")
                self.cond.wait(left)

    def of(self, satellite_id: str, kind: type) -> list[Any]:
        with self.cond:
            return [s.message for s in self.log if s.satellite_id == satellite_id and isinstance(s.message, kind)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def satellite_args(tmp: Path, satellite_id: str, url: str, *extra: str) -> list[str]:
    config = tmp / f"{satellite_id}.yaml"
    # Only a password: the username defaults to the satellite id, as on a real satellite.
    config.write_text(
        f"mqtt: {{reconnect_min: 0.2, reconnect_max: 1.0, keepalive: 5, password: {SATELLITE_PASSWORDS[satellite_id]}}}\n"
        "session: {error_hold: 0.2, accept_timeout: 5, reply_timeout: 30}\n"
        "vad: {no_speech_timeout: 3}\n")
    return ["--config", str(config), "--id", satellite_id, "--mqtt-url", url, "--log-level", "info", *extra]


def reply_audio(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def assert_spoken(pcm: np.ndarray) -> None:
    assert len(pcm) > 16000 * 0.5, f"reply only {len(pcm) / 16:.0f} ms long"
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    assert rms > 300, f"reply is (nearly) silent: RMS {rms:.0f}"


def bridge_state(server: RunningServer) -> tuple[int, int, list[tuple[str, str, str]]]:
    """(live satellite conversations, live sessions of any transport, closed log)."""
    def read() -> tuple[int, int, list[tuple[str, str, str]]]:
        bridge = server.app[MqttBridge.KEY]
        return len(bridge.conversations), len(server.app[ServerContext.KEY].sessions), list(bridge.closed_log)
    return server.call(read)


def wait_idle(server: RunningServer, closed: int, timeout: float = 10.0) -> list[tuple[str, str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        live, sessions, log = bridge_state(server)
        if live == 0 and sessions == 0 and len(log) >= closed:
            return log
        if time.monotonic() > deadline:
            raise AssertionError(f"bridge not idle: {live} conversations, {sessions} sessions, closed {log}")
        time.sleep(0.05)


class CuedSource:
    """A microphone stand-in for the real Satellite: silence in real time, a clip when the test says so."""

    def __init__(self, frame_ms: int = 20) -> None:
        self.frame_bytes = frame_ms * 32
        self._frame_s = frame_ms / 1000
        self._clips: queue.Queue[bytes] = queue.Queue()
        self._current = b""
        self._next: float | None = None
        self.exhausted = False

    def say(self, pcm: np.ndarray) -> None:
        self._clips.put(pcm.astype("<i2").tobytes())

    def read(self) -> bytes:
        now = time.monotonic()
        if self._next is None or self._next < now - 0.2:
            self._next = now
        if self._next > now:
            time.sleep(self._next - now)
        self._next += self._frame_s
        if not self._current:
            try:
                self._current = self._clips.get_nowait()
            except queue.Empty:
                return bytes(self.frame_bytes)
        chunk, self._current = self._current[: self.frame_bytes], self._current[self.frame_bytes :]
        return chunk + bytes(self.frame_bytes - len(chunk))

    def close(self) -> None:
        pass


class ThreadedSatellite:
    """The real hearth.satellite Satellite (config, wake word, VAD, MQTT link) in a thread."""

    def __init__(self, tmp: Path, satellite_id: str, url: str) -> None:
        from hearth.satellite.cli import build_satellite, config_from_args, configure_parser

        import argparse

        dummy = write_wav(tmp / f"{satellite_id}-unused.wav", np.zeros(320, dtype=np.int16))
        self.out = tmp / f"{satellite_id}-replies"
        parser = argparse.ArgumentParser()
        configure_parser(parser)
        # --fast: replies are written at once instead of in real time (the mic stays real time).
        args = parser.parse_args(satellite_args(tmp, satellite_id, url, "--input-wav", str(dummy), "--fast",
                                                "--output-dir", str(self.out)))
        self.satellite = build_satellite(config_from_args(args), args)
        self.source = CuedSource(self.satellite.config.audio.frame_ms)
        self.satellite.source = self.source  # the microphone
        self.thread = threading.Thread(target=self.satellite.run, name=f"satellite-{satellite_id}", daemon=True)
        self.thread.start()

    def replies(self) -> list[Path]:
        return sorted(self.out.glob("*.wav")) if self.out.exists() else []

    def stop(self) -> None:
        self.satellite.stop()
        self.thread.join(10)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def speech() -> Speech:
    return Speech()


@pytest.fixture(scope="module")
def request_pcm(speech: Speech) -> np.ndarray:
    return speech.clip(0.8, "Hey Jarvis.", 0.6, "Turn on the kitchen light.", 1.2)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    """A real server (real models) with its embedded broker on a free port."""
    port = free_port()
    config = make_config(tmp_path_factory.mktemp("embedded"), {
        "engine": {"brain": BRAIN},
        "mqtt": {"broker": {"port": port}, "stream_timeout_s": 3.0, "reconnect_min_s": 0.2,
                 "satellites": satellite_accounts()}})
    with run_server(config) as server:
        yield server, f"mqtt://127.0.0.1:{port}"


# ----------------------------------------------------------------------------- tests


def test_a_satellite_process_wakes_streams_and_plays_the_answer(
        embedded: tuple[RunningServer, str], request_pcm: np.ndarray, tmp_path: Path) -> None:
    server, url = embedded
    wav = write_wav(tmp_path / "request.wav", request_pcm)
    out = tmp_path / "reply.wav"
    observer = Observer("127.0.0.1", int(url.rsplit(":", 1)[1]), credentials=server_credentials(server))
    closed_before = len(bridge_state(server)[2])
    try:
        result = subprocess.run(
            [sys.executable, "-m", "hearth.satellite",
             *satellite_args(tmp_path, "kitchen", url, "--input-wav", str(wav), "--fast", "--output-wav", str(out))],
            capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, result.stderr[-4000:]
        accepted = observer.wait_for("kitchen", SessionAccepted, timeout=5)
        end = observer.wait_for("kitchen", ReplyEnd, timeout=5)
        ack = observer.wait_for("kitchen", PlaybackFinished, timeout=5)
        done = observer.wait_for("kitchen", SessionEnd, timeout=5)
    finally:
        observer.close()
    assert end.session_id == ack.session_id == done.session_id == accepted.session_id
    # Understood (HassTurnOn) and answered; no tool executes it yet, as satellite sessions carry
    # no tools until Home Assistant publishes them.
    assert end.text and "turn" in end.text.lower(), end.text
    assert not ack.interrupted and ack.played_ms > 500
    assert_spoken(reply_audio(out))
    log = wait_idle(server, closed_before + 1)
    assert log[-1] == ("kitchen", accepted.session_id, "done")


def test_two_satellites_woken_together_one_answers(
        embedded: tuple[RunningServer, str], request_pcm: np.ndarray, tmp_path: Path) -> None:
    server, url = embedded
    observer = Observer("127.0.0.1", int(url.rsplit(":", 1)[1]), credentials=server_credentials(server))
    near = ThreadedSatellite(tmp_path, "kitchen", url)
    far = ThreadedSatellite(tmp_path, "hall", url)
    try:
        for sat in (near, far):
            observer.wait_for(sat.satellite.id, SatelliteStatus, where=lambda s: s.online and s.state == "idle")
        near.source.say(request_pcm)
        far.source.say((request_pcm * 0.4).astype(np.int16))  # the same words, further away
        answered = {}
        for sat_id in ("kitchen", "hall"):
            outcome = observer.wait_for(sat_id, (SessionAccepted, StandDown), timeout=10)
            answered[sat_id] = outcome
        winners = [s for s, m in answered.items() if isinstance(m, SessionAccepted)]
        losers = [s for s, m in answered.items() if isinstance(m, StandDown)]
        assert len(winners) == 1 and len(losers) == 1, answered
        assert answered[losers[0]].winner == winners[0]
        observer.wait_for(winners[0], SessionEnd, timeout=30)
        by_id = {"kitchen": near, "hall": far}
        (reply,) = by_id[winners[0]].replies()
        assert_spoken(reply_audio(reply))
        assert by_id[losers[0]].replies() == []
        assert not observer.of(losers[0], ReplyEnd)
    finally:
        near.stop()
        far.stop()
        observer.close()
    wait_idle(server, 0)


def test_a_satellite_killed_mid_stream_is_cleaned_up_and_the_next_one_served(
        embedded: tuple[RunningServer, str], request_pcm: np.ndarray, speech: Speech, tmp_path: Path) -> None:
    server, url = embedded
    observer = Observer("127.0.0.1", int(url.rsplit(":", 1)[1]), credentials=server_credentials(server))
    long_request = np.concatenate([request_pcm[: -16000], speech.clip("and the porch light and the hall light, "
                                                                      "and then tell me the time please."), speech.silence(2)])
    wav = write_wav(tmp_path / "long.wav", long_request)
    closed_before = len(bridge_state(server)[2])
    process = subprocess.Popen(
        [sys.executable, "-m", "hearth.satellite",
         *satellite_args(tmp_path, "attic", url, "--input-wav", str(wav), "--output-wav", str(tmp_path / "x.wav"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        accepted = observer.wait_for("attic", SessionAccepted, timeout=30)
        time.sleep(0.8)  # it is streaming the request in real time now
        assert bridge_state(server)[0] == 1
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        log = wait_idle(server, closed_before + 1, timeout=10)
        assert log[-1][:2] == ("attic", accepted.session_id)
        assert "offline" in log[-1][2]  # its last will, published by the broker at once
        assert not observer.of("attic", ReplyEnd)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
        observer.close()
    # The server serves the next satellite as if nothing happened.
    request = write_wav(tmp_path / "request.wav", request_pcm)
    out = tmp_path / "reply.wav"
    result = subprocess.run(
        [sys.executable, "-m", "hearth.satellite",
         *satellite_args(tmp_path, "kitchen", url, "--input-wav", str(request), "--fast", "--output-wav", str(out))],
        capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-4000:]
    assert_spoken(reply_audio(out))
    wait_idle(server, closed_before + 2)


def test_mosquitto_restarted_while_idle_both_sides_recover(
        request_pcm: np.ndarray, tmp_path: Path) -> None:
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto binary not found: apt-get install mosquitto")
    broker = MosquittoBroker(binary, tmp_path / "mosquitto")
    broker.start()
    config = make_config(tmp_path, {"engine": {"brain": BRAIN},
                                    "mqtt": {"url": broker.url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}})
    try:
        with run_server(config) as server:
            client = server.app[MqttClient.KEY]
            assert client.protocol_name == "5"
            sat = ThreadedSatellite(tmp_path, "kitchen", broker.url)
            observer = Observer(broker.host, broker.port, protocol=paho.MQTTv5)
            try:
                observer.wait_for("kitchen", SatelliteStatus, where=lambda s: s.online and s.state == "idle")
                sat.source.say(request_pcm)
                observer.wait_for("kitchen", SessionEnd, timeout=30)
                connects = server.call(lambda: client.connects)

                broker.stop()  # killed while idle; no persistence, so retained statuses are gone too
                time.sleep(0.5)
                broker.start()  # same port

                deadline = time.monotonic() + 15
                while server.call(lambda: client.connects) == connects or not sat.satellite.link.connected:
                    assert time.monotonic() < deadline, "no reconnect after the broker came back"
                    time.sleep(0.05)
                restarted_at = time.monotonic()
                observer.wait_for("kitchen", SatelliteStatus, where=lambda s: s.online, after=restarted_at - 1)
                sat.source.say(request_pcm)  # the next turn works
                observer.wait_for("kitchen", SessionEnd, timeout=30, after=restarted_at)
                assert len(sat.replies()) == 2
                for path in sat.replies():
                    assert_spoken(reply_audio(path))
            finally:
                sat.stop()
                observer.close()
            wait_idle(server, 2)
    finally:
        broker.stop()
        if os.environ.get("HEARTH_TEST_KEEP_LOGS"):
            print(broker.log())


def test_a_satellite_survives_poisoned_retained_server_statuses_and_still_answers(
        request_pcm: np.ndarray, tmp_path: Path) -> None:
    """One 60 kB nested message used to kill the satellite's network thread for good.

    On a broker without ACLs (anonymous Mosquitto) anyone can leave a retained "server status"
    that every satellite receives on connect. The real satellite must shrug off each one
    (deeply nested, huge, wrong types, out-of-range numbers, not UTF-8), report it, and still
    answer a full turn through the real server.
    """
    from tests.satellite.test_link_survival import poison

    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto binary not found: apt-get install mosquitto")
    broker = MosquittoBroker(binary, tmp_path / "mosquitto")
    broker.start()
    evil = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="anyone", protocol=paho.MQTTv5)
    evil.connect(broker.host, broker.port)
    evil.loop_start()
    for index, payload in enumerate(poison()):  # waiting for every satellite that connects
        evil.publish(topics.server_status(f"evil{index}"), payload, qos=1, retain=True).wait_for_publish(5)
    config = make_config(tmp_path, {"engine": {"brain": BRAIN},
                                    "mqtt": {"url": broker.url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}})
    try:
        with run_server(config) as server:
            observer = Observer(broker.host, broker.port, protocol=paho.MQTTv5)
            sat = ThreadedSatellite(tmp_path, "kitchen", broker.url)
            try:
                observer.wait_for("kitchen", SatelliteStatus, where=lambda s: s.online and s.state == "idle")
                for index, payload in enumerate(poison()):  # and live, while it runs
                    evil.publish(topics.server_status(f"live{index}"), payload, qos=1).wait_for_publish(5)
                reports = observer.wait_for("kitchen", ErrorEvent, where=lambda e: e.code == "protocol")
                assert reports.context and "server" in reports.context.get("topic", "")
                sat.source.say(request_pcm)
                observer.wait_for("kitchen", SessionEnd, timeout=30)
                (reply,) = sat.replies()
                assert_spoken(reply_audio(reply))
                link = sat.satellite.link
                assert link.network_thread_alive() and link.restarts == 0 and sat.thread.is_alive()
            finally:
                sat.stop()
                observer.close()
            wait_idle(server, 1)
    finally:
        evil.disconnect()
        evil.loop_stop()
        broker.stop()
