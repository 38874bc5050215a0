"""firmware-config/mosquitto.conf and mosquitto.acl, loaded by a real Mosquitto."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from hearth.wire import AudioFrame, Mute, WakeCandidate, new_session_id, topics
from tests.conftest_mqtt import MosquittoBroker, find_mosquitto, free_port

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware-config"
USERS = {"kitchen": "k-pass", "porch": "p-pass", "hearth-server": "s-pass", "homeassistant": "h-pass"}


@pytest.fixture
def secured_broker(tmp_path):
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto binary not found: apt-get install mosquitto")
    passwd_tool = shutil.which("mosquitto_passwd")
    if passwd_tool is None:
        pytest.skip("mosquitto_passwd not found (part of the mosquitto package)")
    passwd = tmp_path / "hearth.passwd"
    passwd.touch()
    for user, password in USERS.items():
        subprocess.run([passwd_tool, "-b", str(passwd), user, password], check=True, capture_output=True)
    port = free_port()
    # The production file, with only paths and the listener changed for the test.
    conf = (FIRMWARE / "mosquitto.conf").read_text()
    conf = re.sub(r"^listener 1883$", f"listener {port} 127.0.0.1", conf, flags=re.M)
    conf = conf.replace("/etc/mosquitto/hearth.passwd", str(passwd))
    conf = conf.replace("/etc/mosquitto/hearth.acl", str(FIRMWARE / "mosquitto.acl"))
    conf = conf.replace("/var/lib/mosquitto/", f"{tmp_path}/")
    broker = MosquittoBroker(binary, tmp_path / "broker", port=port, extra_config=conf)
    broker.write_config = lambda: _write(broker, conf)  # type: ignore[method-assign]
    broker.start()
    yield broker
    broker.stop()


def _write(broker: MosquittoBroker, conf: str) -> None:
    broker.workdir.mkdir(parents=True, exist_ok=True)
    import getpass

    broker.config_path.write_text(conf + f"\nlog_dest file {broker.log_path}\nuser {getpass.getuser()}\n")


class Client:
    def __init__(self, broker: MosquittoBroker, user: str, password: str | None = None, tag: str = "") -> None:
        self.received: list[paho.MQTTMessage] = []
        self.rc = None
        self.ready = threading.Event()
        # MQTT 3.1.1: refused publishes are dropped silently (with MQTT 5, paho 2.2 drops the
        # connection after mosquitto's "not authorized" acknowledgement)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-{user}{tag}", protocol=paho.MQTTv311)
        self.client.username_pw_set(user, USERS[user] if password is None else password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.received.append(m)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.ready.wait(5)

    def _on_connect(self, client, userdata, flags, rc, props):
        self.rc = rc
        self.ready.set()

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos=1)
        done.wait(5)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(5)

    def topics(self) -> set[str]:
        return {m.topic for m in self.received}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _attempt(broker: MosquittoBroker, user: str, topic: str, payload: bytes) -> bool:
    """Publish once from a fresh connection; return whether the connection survived.

    Mosquitto 2 disconnects an MQTT 3.1.1 client that publishes where its ACL forbids.
    """
    client = Client(broker, user, tag=f"-{time.monotonic_ns()}")
    try:
        client.client.publish(topic, payload, qos=0)
        time.sleep(0.3)
        return client.client.is_connected()
    finally:
        client.close()


def test_production_acl_confines_each_satellite(secured_broker):
    server = Client(secured_broker, "hearth-server")
    kitchen = Client(secured_broker, "kitchen")
    ha = Client(secured_broker, "homeassistant")
    assert server.rc == 0 and kitchen.rc == 0 and ha.rc == 0
    try:
        server.subscribe("hearth/#")
        kitchen.subscribe("hearth/v1/satellite/+/#")  # asks for everything; gets only its own
        ha.subscribe("hearth/#")
        sid = new_session_id()
        wake = WakeCandidate(sid, "hey_jarvis", 0.9).to_json()
        frame = AudioFrame(sid, 0, bytes(640)).to_bytes()

        # allowed
        kitchen.publish(topics.satellite_event("kitchen"), wake)
        kitchen.publish(topics.satellite_audio("kitchen"), frame, qos=0)
        server.publish(topics.satellite_reply("porch"), frame, qos=0)
        server.publish(topics.satellite_command("kitchen"), Mute(True).to_json())
        ha.publish(topics.satellite_command("kitchen"), Mute(False).to_json())
        # refused: the broker drops the message and the offending connection
        assert not _attempt(secured_broker, "kitchen", topics.satellite_event("porch"), wake)  # impersonation
        assert not _attempt(secured_broker, "kitchen", topics.satellite_command("porch"), Mute(True).to_json())
        assert not _attempt(secured_broker, "kitchen", topics.server_status("house"), b"{}")
        assert not _attempt(secured_broker, "homeassistant", topics.satellite_audio("kitchen"), frame)
        assert not _attempt(secured_broker, "homeassistant", topics.satellite_reply("kitchen"), frame)
        time.sleep(0.3)

        assert server.topics() == {
            topics.satellite_event("kitchen"),
            topics.satellite_audio("kitchen"),
            topics.satellite_reply("porch"),
            topics.satellite_command("kitchen"),
        }
        assert kitchen.topics() == {topics.satellite_command("kitchen")}, "no other satellite's traffic"
        assert len(kitchen.received) == 2
        assert ha.topics() == set(), "HA reads only statuses"
        assert all(c.client.is_connected() for c in (server, kitchen, ha))
    finally:
        for c in (server, kitchen, ha):
            c.close()


def test_anonymous_and_wrong_passwords_are_refused(secured_broker):
    anonymous = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    codes: list = []
    anonymous.on_connect = lambda c, u, f, rc, p: codes.append(rc)
    anonymous.connect(secured_broker.host, secured_broker.port)
    anonymous.loop_start()
    time.sleep(0.5)
    anonymous.loop_stop()
    assert codes and codes[0].is_failure
    wrong = Client(secured_broker, "kitchen", password="nope")
    assert wrong.rc is not None and wrong.rc.is_failure
    wrong.close()


def test_a_20000_frame_burst_is_not_dropped(secured_broker):
    """The queue limits in mosquitto.conf keep a burst of QoS 0 audio intact."""
    server = Client(secured_broker, "hearth-server")
    kitchen = Client(secured_broker, "kitchen")
    try:
        server.subscribe(topics.satellite_audio("kitchen"))
        sid = new_session_id()
        for seq in range(20000):
            kitchen.client.publish(topics.satellite_audio("kitchen"), AudioFrame(sid, seq, bytes(640)).to_bytes(), qos=0)
        deadline = time.monotonic() + 30
        while len(server.received) < 20000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.received) == 20000
    finally:
        server.close()
        kitchen.close()
