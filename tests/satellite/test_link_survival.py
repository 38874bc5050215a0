"""The satellite's MQTT link survives anything: hostile messages, a failing callback, a dead network thread.

Against a real Mosquitto (anonymous, as a broker without ACLs would let anyone publish).
The end-to-end version, a real satellite answering a full turn after a poisoned retained
server status, is in tests/mqtt/test_satellite_e2e.py.
"""

from __future__ import annotations

import queue
import time

import paho.mqtt.client as paho
import pytest

import hearth.satellite.mqtt as link_module
from hearth.satellite.config import MqttSection
from hearth.satellite.mqtt import (
    BadMessage,
    CommandReceived,
    LinkDown,
    LinkUp,
    MqttLink,
    ServerStatusReceived,
    SettingsReceived,
)
from hearth.wire import Mute, MqttUrl, SatelliteSettings, ServerStatus, WakeSensitivity, ha_topics, topics


def publisher(broker) -> paho.Client:  # noqa: ANN001
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"poisoner-{time.monotonic_ns()}",
                         protocol=paho.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def drain_until(inbox: "queue.Queue[object]", kind: type, timeout: float = 10.0, link: MqttLink | None = None) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if link is not None:
            link.poll()  # the satellite's main loop calls this every 20 ms
        try:
            item = inbox.get(timeout=0.02)
        except queue.Empty:
            continue
        if isinstance(item, kind):
            return item
    raise AssertionError(f"no {kind.__name__} within {timeout} s")


def poison() -> list[bytes]:
    return [
        b"[" * 60000 + b"]" * 60000,
        b'{"type":"server-status","server_id":"evil","name":' + b"[" * 30000 + b"]" * 30000 + b"}",
        b'{"type":"server-status","server_id":' + b"9" * 5000 + b"}",
        b'{"type":"server-status","server_id":"evil","arbitration_window_ms":1e999}',
        b'{"type":"server-status","server_id":{"a":[1,2]},"availability":7}',
        b'{"type":"server-status","server_id":"evil","name":"' + b"x" * (1024 * 1024) + b'"}',
        b"\xff\xfe\x00garbage",
    ]


@pytest.fixture
def link(mosquitto):  # noqa: ANN001, ANN201
    inbox: queue.Queue[object] = queue.Queue()
    link = MqttLink(MqttUrl.parse(mosquitto.url), MqttSection(reconnect_min=0.1, reconnect_max=0.5), "kitchen", inbox)
    link.start()
    assert link.wait_connected(10)
    yield link
    link.stop()


def test_poisoned_server_statuses_are_bad_messages_and_the_link_lives_on(mosquitto, link: MqttLink) -> None:
    evil = publisher(mosquitto)
    try:
        for index, payload in enumerate(poison()):
            evil.publish(topics.server_status(f"evil{index}"), payload, qos=1, retain=True).wait_for_publish(5)
        bad = [drain_until(link.inbox, BadMessage, link=link) for _ in poison()]
        assert all(isinstance(b, BadMessage) for b in bad)
        assert link.network_thread_alive() and link.connected
        evil.publish(topics.server_status("hearth"), ServerStatus("hearth").to_json(), qos=1, retain=True)
        status = drain_until(link.inbox, ServerStatusReceived, link=link)
        assert status.status.server_id == "hearth"  # type: ignore[attr-defined]
        assert link.restarts == 0
    finally:
        evil.loop_stop()


def test_a_failing_callback_does_not_end_the_network_thread(mosquitto, link: MqttLink,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(payload: bytes, *, topic: str | None = None) -> ServerStatus:
        raise RuntimeError("a bug in a decoder")

    monkeypatch.setattr(link_module, "decode_server_status", broken)
    evil = publisher(mosquitto)
    try:
        evil.publish(topics.server_status("hearth"), b"{}", qos=1).wait_for_publish(5)
        time.sleep(0.3)
        assert link.network_thread_alive(), "the exception escaped into paho's thread"
        evil.publish(topics.satellite_command("kitchen"), Mute(True).to_json(), qos=1).wait_for_publish(5)
        command = drain_until(link.inbox, CommandReceived, link=link)
        assert command.command == Mute(True)  # type: ignore[attr-defined]
    finally:
        evil.loop_stop()


def test_the_watchdog_reconnects_when_the_network_thread_dies(mosquitto, link: MqttLink) -> None:
    drain_until(link.inbox, LinkUp)
    link._client.loop_stop()  # noqa: SLF001 - the thread ends as if something had killed it
    assert not link.network_thread_alive()
    drain_until(link.inbox, LinkDown, link=link)
    drain_until(link.inbox, LinkUp, link=link)
    assert link.restarts == 1 and link.network_thread_alive() and link.connected
    evil = publisher(mosquitto)
    try:
        evil.publish(topics.satellite_command("kitchen"), Mute(False).to_json(), qos=1).wait_for_publish(5)
        assert drain_until(link.inbox, CommandReceived, link=link).command == Mute(False)  # type: ignore[attr-defined]
    finally:
        evil.loop_stop()


def test_only_its_own_settings_arrive_decoded_and_bad_ones_are_bad_messages(mosquitto, link: MqttLink) -> None:
    """No ACL here (anonymous Mosquitto): the link itself subscribes to its own settings topic only."""
    drain_until(link.inbox, LinkUp)
    evil = publisher(mosquitto)
    try:
        hall = SatelliteSettings("hall", muted=True, wake_sensitivity=WakeSensitivity.HIGH)
        evil.publish(ha_topics.ha_settings("hall"), hall.to_json(), qos=1, retain=True).wait_for_publish(5)
        mine = ha_topics.ha_settings("kitchen")
        for payload in (b"\xff", b"[1]", hall.to_json(), b'{"type":"satellite-settings","satellite_id":"kitchen",'
                        b'"wake_sensitivity":"max"}'):
            evil.publish(mine, payload, qos=1).wait_for_publish(5)
        errors = [drain_until(link.inbox, BadMessage, link=link).error for _ in range(4)]  # type: ignore[attr-defined]
        assert all(e.context["topic"] == mine for e in errors), errors
        assert "another satellite" in str(errors[2]) and "wake_sensitivity" in str(errors[3])
        kitchen = SatelliteSettings("kitchen", wake_sensitivity=WakeSensitivity.LOW)
        evil.publish(mine, kitchen.to_json(), qos=1, retain=True).wait_for_publish(5)
        assert drain_until(link.inbox, SettingsReceived, link=link).settings == kitchen  # type: ignore[attr-defined]
        evil.publish(mine, b"", qos=1, retain=True).wait_for_publish(5)  # deleted
        assert drain_until(link.inbox, SettingsReceived, link=link).settings is None  # type: ignore[attr-defined]
        time.sleep(0.2)
        left = []
        while not link.inbox.empty():
            left.append(link.inbox.get_nowait())
        assert not [item for item in left if isinstance(item, (SettingsReceived, BadMessage))], left
        assert link.network_thread_alive() and link.restarts == 0
    finally:
        evil.publish(ha_topics.ha_settings("hall"), b"", qos=1, retain=True).wait_for_publish(5)
        evil.loop_stop()
