"""Fixtures for the server's MQTT side: real brokers, a real server, and a wire-level fake satellite.

* ``mosquitto`` — the shared Mosquitto fixture (tests/conftest_mqtt.py; skips when the
  binary is missing).
* ``scripted_server`` — a real server (real aiohttp app, real embedded amqtt broker,
  real bridge) on the scripted engine of `hearth.server.session.testing`, so the
  bridge's protocol handling is tested in milliseconds.
* :class:`WireSatellite` — a paho client that speaks the wire protocol by hand
  (wake, frames, acks) and records what the server sends, for exact assertions.
  The end-to-end tests use the real satellite (hearth.satellite) instead.
"""

from __future__ import annotations

import pathlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest

from hearth.server.mqtt.bridge import MqttBridge
from hearth.server.session.interfaces import OutputAudio, OutputText
from hearth.server.session.testing import ScriptedEngine
from hearth.wire import (
    AudioFrame,
    Message,
    SatelliteStatus,
    WakeCandidate,
    decode_satellite_command,
    new_session_id,
    topics,
)
from tests.server_harness import RunningServer, free_port, make_config, run_server

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for conftest_mqtt
from conftest_mqtt import MosquittoBroker, find_mosquitto, mosquitto  # noqa: E402,F401  (re-export)

FRAME_MS = 20
FRAME_SAMPLES = 16 * FRAME_MS

#: Satellites the test servers give an account on their embedded broker (id -> password).
SATELLITE_PASSWORDS = {sat: f"{sat}-secret" for sat in ("kitchen", "hall", "bedroom", "attic", "porch", "office")}


def satellite_accounts() -> dict[str, dict[str, str]]:
    """`mqtt.satellites` entries with the test passwords."""
    return {sat: {"password": password} for sat, password in SATELLITE_PASSWORDS.items()}


def server_credentials(server: RunningServer) -> tuple[str, str]:
    """The server's own account on its embedded broker (a test's privilege, to watch everything)."""
    from hearth.server.mqtt.broker import EmbeddedBroker

    return server.app[EmbeddedBroker.KEY].server_account


def tone(ms: int, amplitude: float = 0.3, freq: float = 440.0) -> np.ndarray:
    """16 kHz int16: loud enough for the scripted engine's energy VAD."""
    t = np.arange(16 * ms) / 16000
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(ms: int) -> np.ndarray:
    return np.zeros(16 * ms, dtype=np.int16)


# ----------------------------------------------------------------------------- the fake satellite


@dataclass
class Received:
    commands: list[Message] = field(default_factory=list)
    frames: list[AudioFrame] = field(default_factory=list)


class WireSatellite:
    """A satellite reduced to its wire protocol, driven step by step by a test."""

    def __init__(self, satellite_id: str, host: str, port: int, *, protocol: int = paho.MQTTv311,
                 username: str | None = None, password: str | None = None) -> None:
        self.id = satellite_id
        self.received = Received()
        self.raw_commands: list[bytes] = []
        #: Topics received that this satellite never subscribed to (a broker bug if any).
        self.foreign: list[str] = []
        self._changed = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-{satellite_id}",
                                  protocol=protocol)
        if username is None and satellite_id in SATELLITE_PASSWORDS:
            username, password = satellite_id, SATELLITE_PASSWORDS[satellite_id]
        if username:
            self.client.username_pw_set(username, password)
        self.client.will_set(topics.satellite_status(satellite_id), SatelliteStatus.offline(satellite_id).to_json(),
                             qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._connected = threading.Event()
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        assert self._connected.wait(5), "the wire satellite could not connect"
        self.seq = 0

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe([(topics.satellite_command(self.id), 1), (topics.satellite_reply(self.id), 0)])
        client.publish(topics.satellite_status(self.id), SatelliteStatus(self.id, state="idle").to_json(),
                       qos=1, retain=True)
        self._connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._changed:
            if message.topic == topics.satellite_reply(self.id):
                self.received.frames.append(AudioFrame.from_bytes(message.payload))
            elif message.topic == topics.satellite_command(self.id):
                self.raw_commands.append(message.payload)
                self.received.commands.append(decode_satellite_command(message.payload))
            else:
                self.foreign.append(message.topic)
            self._changed.notify_all()

    # -- sending -----------------------------------------------------------------------
    def event(self, message: Message) -> None:
        self.client.publish(topics.satellite_event(self.id), message.to_json(), qos=1).wait_for_publish(2)

    def raw_event(self, payload: bytes) -> None:
        self.client.publish(topics.satellite_event(self.id), payload, qos=1).wait_for_publish(2)

    def raw_audio(self, payload: bytes) -> None:
        self.client.publish(topics.satellite_audio(self.id), payload, qos=0)

    def wake(self, score: float = 0.9, energy: float | None = -20.0) -> str:
        session_id = new_session_id()
        self.seq = 0
        self.event(WakeCandidate(session_id, "hey_jarvis", score, energy=energy))
        return session_id

    def stream(self, session_id: str, pcm: np.ndarray, *, end: bool = False, realtime: float = 0.0) -> None:
        """Publish `pcm` as 20 ms frames (optionally paced: `realtime` = speed factor, 0 = burst)."""
        for offset in range(0, len(pcm), FRAME_SAMPLES):
            chunk = pcm[offset : offset + FRAME_SAMPLES].astype("<i2").tobytes()
            self.client.publish(topics.satellite_audio(self.id), AudioFrame(session_id, self.seq, chunk).to_bytes())
            self.seq += 1
            if realtime:
                time.sleep(FRAME_MS / 1000 / realtime)
        if end:
            self.client.publish(topics.satellite_audio(self.id), AudioFrame(session_id, self.seq, b"", end=True).to_bytes())
            self.seq += 1

    # -- waiting -----------------------------------------------------------------------
    def wait_for(self, kind: type[Message], *, count: int = 1, timeout: float = 10.0,
                 where: Callable[[Any], bool] = lambda m: True) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for m in self.received.commands if isinstance(m, kind) and where(m)]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.id}: no {kind.type} within {timeout} s; got "
                                         f"{[m.type for m in self.received.commands]}")
                self._changed.wait(left)

    def commands(self, kind: type[Message]) -> list[Any]:
        with self._changed:
            return [m for m in self.received.commands if isinstance(m, kind)]

    def reply_pcm(self, session_id: str) -> np.ndarray:
        with self._changed:
            frames = sorted((f for f in self.received.frames if f.session_id == session_id), key=lambda f: f.seq)
        return np.frombuffer(b"".join(f.pcm for f in frames), dtype="<i2")

    def close(self, *, clean: bool = True) -> None:
        if clean:
            self.client.publish(topics.satellite_status(self.id), SatelliteStatus.offline(self.id).to_json(),
                                qos=1, retain=True).wait_for_publish(2)
            self.client.disconnect()
        else:  # like a crash: drop the connection without DISCONNECT, so the broker sends the last will
            self.client.socket().shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()


# ----------------------------------------------------------------------------- servers


def scripted_reply(text: str, audio_ms: int = 300) -> list[Any]:
    return [OutputText(text), OutputAudio(tone(audio_ms, 0.2, 220.0).astype(np.int16), 16000)]


@dataclass
class ScriptedServer:
    server: RunningServer
    engine: ScriptedEngine
    broker_port: int

    def bridge(self) -> MqttBridge:
        return self.server.app[MqttBridge.KEY]

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.server.call(fn)

    def live_sessions(self) -> int:
        return self.call(lambda: len(self.bridge().conversations))

    def wait_closed(self, count: int, timeout: float = 5.0) -> list[tuple[str, str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.call(lambda: list(self.bridge().closed_log))
            if len(log) >= count:
                return log
            time.sleep(0.02)
        raise AssertionError(f"expected {count} closed sessions, got {self.call(lambda: self.bridge().closed_log)}")

    def satellite(self, satellite_id: str) -> WireSatellite:
        return WireSatellite(satellite_id, "127.0.0.1", self.broker_port)


def start_scripted_server(tmp: Path, engine: ScriptedEngine, mqtt: dict[str, Any] | None = None):  # noqa: ANN201
    port = free_port()
    mqtt = dict(mqtt or {})
    satellites = satellite_accounts()
    for sat, extra in mqtt.pop("satellites", {}).items():
        satellites[sat] = {**satellites.get(sat, {}), **extra}
    broker = {"port": port, **mqtt.pop("broker", {})}
    settings = {"mqtt": {"broker": broker, "arbitration_window_ms": 100, "stream_timeout_s": 1.0,
                         "ack_timeout_s": 2.0, "satellites": satellites, **mqtt},
                "session": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 200,
                                               "prefix_padding_ms": 100}}}
    config = make_config(tmp, settings)
    return run_server(config, engine_factory=lambda _config, _executor: engine), port


@pytest.fixture
def scripted_server(tmp_path: Path) -> Iterator[ScriptedServer]:
    engine = ScriptedEngine(reply=scripted_reply("The kitchen light is on."), transcript="turn on the light")
    context, port = start_scripted_server(tmp_path, engine)
    with context as server:
        yield ScriptedServer(server, engine, port)
