"""The embedded broker (amqtt in the server's loop): accounts, the ACL, retained messages, and stopping."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from hearth.server.config import EmbeddedBrokerConfig
from hearth.server.mqtt.acl import HEARTH_ACL, Acl, filters_overlap, parse_acl, topic_matches
import hearth.server.mqtt.broker as broker_module
from hearth.server.mqtt.broker import EmbeddedBroker
from hearth.server.mqtt.client import ClientSettings, MqttClient
from hearth.wire import AudioFrame, Mute, MqttUrl, SatelliteStatus, ServerStatus, WakeCandidate, new_session_id, topics
from tests.server_harness import free_port

FIRMWARE_ACL = Path(__file__).resolve().parents[2] / "firmware-config" / "mosquitto.acl"
SATELLITES = {"kitchen": "k-pass", "porch": "p-pass"}


class Peer:
    """A 3.1.1 client that records its CONNACK, its SUBACKs and every message it receives."""

    def __init__(self, port: int, *, client_id: str, credentials: tuple[str, str] | None = None,
                 will: tuple[str, bytes] | None = None) -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        if credentials:
            self.client.username_pw_set(*credentials)
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.reason: str | None = None
        self.granted: list[list[int]] = []
        self.received: list[paho.MQTTMessage] = []
        self._event = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda c, u, m: self.received.append(m)
        self.client.reconnect_delay_set(5, 5)  # no reconnect storm while a test inspects a refusal
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._event.wait(5)

    def _on_connect(self, client: paho.Client, u: object, f: object, rc: paho.ReasonCode, p: object) -> None:
        self.reason = str(rc)
        self._event.set()

    def _on_subscribe(self, client: paho.Client, u: object, mid: int, codes: list, p: object) -> None:
        self.granted.append([c.value for c in codes])
        self._event.set()

    @property
    def ok(self) -> bool:
        return self.reason == "Success"

    def subscribe(self, *filters: str) -> list[int]:
        self._event.clear()
        self.client.subscribe([(f, 1) for f in filters])
        assert self._event.wait(5), "no SUBACK"
        return self.granted[-1]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def topics(self) -> set[str]:
        return {m.topic for m in self.received}

    def close(self, *, clean: bool = True) -> None:
        if clean:
            self.client.disconnect()
        else:
            sock = self.client.socket()
            if sock is not None:
                import socket

                sock.shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()


async def started(satellites: dict[str, str] | None = None, **config: object) -> EmbeddedBroker:
    cfg = EmbeddedBrokerConfig(str(config.get("host", "127.0.0.1")), free_port(), config.get("username"),  # type: ignore[arg-type]
                               config.get("password"))  # type: ignore[arg-type]
    broker = EmbeddedBroker(cfg, SATELLITES if satellites is None else satellites)
    await broker.start()
    return broker


async def peer(broker: EmbeddedBroker, client_id: str, credentials: tuple[str, str] | None, **kw: object) -> Peer:
    return await asyncio.to_thread(Peer, broker.port, client_id=client_id, credentials=credentials, **kw)


async def settle(seconds: float = 0.3) -> None:
    await asyncio.sleep(seconds)


# ----------------------------------------------------------------------------- accounts


async def test_no_anonymous_client_even_on_loopback() -> None:
    broker = await started()
    try:
        anonymous = await peer(broker, "anyone", None)
        assert anonymous.reason == "Not authorized"
        anonymous.close()
        for credentials in (("kitchen", "wrong"), ("nobody", "k-pass"), ("kitchen", ""), ("hearth-server", "k-pass")):
            client = await peer(broker, "c", credentials)
            assert client.reason == "Not authorized", credentials
            client.close()
        kitchen = await peer(broker, "hearth-satellite-kitchen", ("kitchen", "k-pass"))
        assert kitchen.ok
        kitchen.close()
        server = await peer(broker, "srv", broker.server_account)
        assert server.ok and broker.server_account[0] == "hearth-server"
        server.close()
    finally:
        await broker.stop()


async def test_the_server_password_is_new_at_every_start() -> None:
    first, second = (EmbeddedBroker(EmbeddedBrokerConfig("127.0.0.1", 1883, None, None)) for _ in range(2))
    assert first.server_account[1] != second.server_account[1]
    assert len(first.server_account[1]) >= 24
    assert first.client_url == MqttUrl("127.0.0.1", 1883, *first.server_account)


async def test_an_extra_account_gets_the_acl_rights_of_its_name() -> None:
    broker = await started(username="homeassistant", password="h-pass")
    try:
        ha = await peer(broker, "ha", ("homeassistant", "h-pass"))
        kitchen = await peer(broker, "k", ("kitchen", "k-pass"))
        assert ha.ok and kitchen.ok
        await asyncio.to_thread(kitchen.subscribe, topics.satellite_command("kitchen"))
        assert await asyncio.to_thread(ha.subscribe, "hearth/#") == [1]  # it may read statuses, so the filter is granted
        await asyncio.to_thread(ha.publish, topics.satellite_command("kitchen"), Mute(True).to_json())
        await asyncio.to_thread(ha.publish, topics.satellite_audio("kitchen"), b"x")  # not allowed
        await asyncio.to_thread(kitchen.publish, topics.satellite_status("kitchen"),
                                SatelliteStatus("kitchen").to_json(), retain=True)
        await asyncio.to_thread(kitchen.publish, topics.satellite_audio("kitchen"),
                                AudioFrame(new_session_id(), 0, bytes(64)).to_bytes())
        await settle()
        assert kitchen.topics() == {topics.satellite_command("kitchen")}
        assert ha.topics() == {topics.satellite_status("kitchen")}, "HA reads statuses, never audio"
        ha.close()
        kitchen.close()
    finally:
        await broker.stop()


# ----------------------------------------------------------------------------- isolation


async def test_one_satellite_cannot_read_or_publish_another_satellites_topics() -> None:
    broker = await started()
    try:
        server = await peer(broker, "hearth-server-hearth", broker.server_account)
        kitchen = await peer(broker, "hearth-satellite-kitchen", ("kitchen", "k-pass"))
        porch = await peer(broker, "hearth-satellite-porch", ("porch", "p-pass"))
        assert server.ok and kitchen.ok and porch.ok
        await asyncio.to_thread(server.subscribe, "hearth/#")
        await asyncio.to_thread(porch.subscribe, topics.satellite_command("porch"), topics.satellite_reply("porch"))
        # Asking for everything is granted only where it can match the account's own topics ...
        assert await asyncio.to_thread(kitchen.subscribe, "hearth/#", topics.satellite_audio("porch"), topics.satellite_command("porch"),
                                 topics.all_satellites(topics.SatelliteChannel.AUDIO)) == [1, 128, 128, 128]
        sid = new_session_id()
        frame = AudioFrame(sid, 0, bytes(640)).to_bytes()
        # ... and then it receives only what it may read.
        await asyncio.to_thread(porch.publish, topics.satellite_audio("porch"), frame)
        await asyncio.to_thread(porch.publish, topics.satellite_event("porch"), WakeCandidate(sid, "x", 0.9).to_json())
        await asyncio.to_thread(porch.publish, topics.satellite_status("porch"), SatelliteStatus("porch").to_json(),
                                retain=True)
        await asyncio.to_thread(server.publish, topics.satellite_command("porch"), Mute(True).to_json())
        await asyncio.to_thread(server.publish, topics.satellite_reply("porch"), frame)
        # kitchen impersonating porch, muting it, faking a server status: all dropped
        await asyncio.to_thread(kitchen.publish, topics.satellite_event("porch"), WakeCandidate(sid, "x", 1).to_json())
        await asyncio.to_thread(kitchen.publish, topics.satellite_audio("porch"), frame)
        await asyncio.to_thread(kitchen.publish, topics.satellite_status("porch"),
                                SatelliteStatus.offline("porch").to_json(), retain=True)
        await asyncio.to_thread(kitchen.publish, topics.satellite_command("porch"), Mute(True).to_json())
        await asyncio.to_thread(kitchen.publish, topics.server_status("fake"), ServerStatus("fake").to_json(),
                                retain=True)
        await asyncio.to_thread(kitchen.publish, topics.satellite_event("kitchen"),
                                WakeCandidate(sid, "x", 0.9).to_json())  # its own: allowed
        await settle()
        assert kitchen.topics() == set(), [m.topic for m in kitchen.received]
        assert porch.topics() == {topics.satellite_command("porch"), topics.satellite_reply("porch")}
        assert len(porch.received) == 2, "nothing from kitchen reached porch"
        assert server.topics() == {topics.satellite_audio("porch"), topics.satellite_event("porch"),
                                   topics.satellite_status("porch"), topics.satellite_command("porch"),
                                   topics.satellite_reply("porch"), topics.satellite_event("kitchen")}
        assert [m.payload for m in server.received if m.topic == topics.satellite_status("porch")] == [
            SatelliteStatus("porch").to_json()], "kitchen's fake offline never arrived"
        assert topics.server_status("fake") not in broker._broker._retained_messages  # type: ignore[union-attr]
        # A late subscriber gets retained messages only where it may read them.
        late = await peer(broker, "hearth-satellite-kitchen-2", ("kitchen", "k-pass"))
        await asyncio.to_thread(late.subscribe, "hearth/#")
        await settle(0.2)
        assert late.topics() == set()
        for client in (server, kitchen, porch, late):
            client.close()
    finally:
        await broker.stop()


async def test_an_unauthenticated_client_cannot_read_audio_publish_statuses_or_unseat_the_server() -> None:
    broker = await started()
    try:
        server = await peer(broker, "hearth-server-hearth", broker.server_account)
        await asyncio.to_thread(server.subscribe, topics.all_satellites(topics.SatelliteChannel.AUDIO),
                         topics.all_satellites(topics.SatelliteChannel.STATUS))
        # No password, the server's client id: refused before amqtt touches the server's session.
        intruder = await peer(broker, "hearth-server-hearth", None,
                              will=(topics.satellite_status("kitchen"), SatelliteStatus.offline("kitchen").to_json()))
        assert intruder.reason == "Not authorized"
        intruder.close(clean=False)
        # Another account with the server's client id: refused too (it belongs to another account).
        squatter = await peer(broker, "hearth-server-hearth", ("porch", "p-pass"))
        assert squatter.reason == "Client identifier not valid"
        squatter.close()
        kitchen = await peer(broker, "hearth-satellite-kitchen", ("kitchen", "k-pass"))
        await asyncio.to_thread(kitchen.publish, topics.satellite_audio("kitchen"),
                                AudioFrame(new_session_id(), 0, bytes(64)).to_bytes())
        await settle()
        assert server.client.is_connected()
        assert server.topics() == {topics.satellite_audio("kitchen")}, "the server still hears satellites"
        assert topics.satellite_status("kitchen") not in broker._broker._retained_messages  # type: ignore[union-attr]
        kitchen.close()
        server.close()
    finally:
        await broker.stop()


async def test_a_last_will_on_someone_elses_topic_is_refused() -> None:
    broker = await started()
    try:
        watcher = await peer(broker, "srv", broker.server_account)
        await asyncio.to_thread(watcher.subscribe, topics.all_satellites(topics.SatelliteChannel.STATUS), topics.all_server_statuses())
        for will_topic in (topics.satellite_status("porch"), topics.server_status("hearth")):
            sneaky = await peer(broker, f"sneaky-{will_topic[-12:]}", ("kitchen", "k-pass"),
                                will=(will_topic, b'{"type":"satellite-status","satellite_id":"porch",'
                                                  b'"availability":"offline"}'))
            assert sneaky.reason == "Not authorized", will_topic
            sneaky.close(clean=False)
        honest = await peer(broker, "hearth-satellite-kitchen", ("kitchen", "k-pass"),
                            will=(topics.satellite_status("kitchen"), SatelliteStatus.offline("kitchen").to_json()))
        assert honest.ok
        honest.close(clean=False)  # like a crash: the broker publishes the will
        await settle(0.5)
        assert watcher.topics() == {topics.satellite_status("kitchen")}
        watcher.close()
    finally:
        await broker.stop()


# ----------------------------------------------------------------------------- the rules


def test_the_embedded_acl_is_the_shipped_mosquitto_acl() -> None:
    assert set(parse_acl(FIRMWARE_ACL.read_text())) == set(parse_acl(HEARTH_ACL))


def test_acl_matching() -> None:
    acl = Acl.parse()
    assert acl.allows("kitchen", "c", "hearth/v1/satellite/kitchen/audio", "write")
    assert not acl.allows("kitchen", "c", "hearth/v1/satellite/kitchen/audio", "read")
    assert not acl.allows("kitchen", "c", "hearth/v1/satellite/porch/audio", "write")
    assert acl.allows("kitchen", "c", "hearth/v1/server/hearth/status", "read")
    assert not acl.allows("kitchen", "c", "hearth/v1/server/hearth/status", "write")
    assert acl.allows("hearth-server", "c", "hearth/v1/satellite/porch/audio", "read")
    assert not acl.allows(None, "c", "hearth/v1/server/hearth/status", "read")
    assert not acl.allows("kitchen", "c", "other/topic", "write")
    assert topic_matches("a/+/c", "a/b/c") and not topic_matches("a/+", "a/b/c") and topic_matches("a/#", "a")
    assert filters_overlap("a/+/c", "a/b/#") and not filters_overlap("a/b", "a/c") and filters_overlap("#", "x/y")
    deny = Acl(parse_acl("user x\ntopic readwrite a/#\ntopic deny a/secret\n"))
    assert deny.allows("x", "c", "a/b", "read") and not deny.allows("x", "c", "a/secret", "read")
    with pytest.raises(ValueError, match="anonymous"):
        parse_acl("topic read a/#\n")


# ----------------------------------------------------------------------------- stopping


async def test_stopping_with_clients_and_messages_in_flight_never_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.11's wait_for could lose amqtt's reader cancellation (1 stop in ~7 hung).

    The shape of a server shutdown: the bridge sends a satellite its session-end (QoS 1),
    the server's client publishes offline and disconnects, then the broker stops while the
    satellite's PUBACK may still be on its way.
    """
    monkeypatch.setattr(broker_module, "STOP_S", 60.0)
    clients: list[paho.Client] = []
    for _attempt in range(20):
        broker = await started()
        satellite = await peer(broker, "sat", ("kitchen", "k-pass"))
        await asyncio.to_thread(satellite.subscribe, topics.satellite_command("kitchen"))
        server = MqttClient(ClientSettings(broker.client_url, "hearth", "srv", protocol="3.1.1",
                                           status=ServerStatus("hearth")), [], lambda topic, payload: None)
        server.start()
        assert await server.wait_connected(5)
        server.publish(topics.satellite_command("kitchen"), b"session-end", 1)
        await server.stop()
        # No stop here falls back on its STOP_S timeouts (raised out of reach): the hung shape
        # would now outlast the 10 s bound, so wait_for fails where the old stop hung.
        await asyncio.wait_for(broker.stop(), 10)
        clients.append(satellite.client)
    # paho sleeps up to a second between reconnect attempts: join them all at once.
    await asyncio.gather(*(asyncio.to_thread(c.loop_stop) for c in clients))
