"""The embedded broker (amqtt in the server's loop): accounts, retained messages, and stopping."""

from __future__ import annotations

import asyncio
import threading
import time

import paho.mqtt.client as paho
import pytest

from hearth.server.config import EmbeddedBrokerConfig
from hearth.server.mqtt.broker import EmbeddedBroker
from hearth.server.mqtt.client import ClientSettings, MqttClient
from hearth.wire import MqttUrl, ServerStatus
from tests.server_harness import free_port


def connect(port: int, *, client_id: str, credentials: tuple[str, str] | None = None,
            subscribe: str | None = None) -> tuple[paho.Client, str, list[bytes]]:
    """A 3.1.1 client; returns it with its CONNACK reason and the payloads it receives."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
    if credentials:
        client.username_pw_set(*credentials)
    result: list[str] = []
    got: list[bytes] = []
    ready = threading.Event()

    def on_connect(c: paho.Client, u: object, f: object, rc: paho.ReasonCode, p: object) -> None:
        result.append(str(rc))
        if subscribe and not rc.is_failure:
            c.subscribe(subscribe, qos=1)
        ready.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *args: ready.set()
    client.on_message = lambda c, u, m: got.append(m.payload)
    client.reconnect_delay_set(5, 5)  # no reconnect storm while a test inspects a refusal
    client.connect("127.0.0.1", port)
    client.loop_start()
    ready.wait(5)
    if subscribe and result and result[0] == "Success":
        time.sleep(0.05)  # the SUBACK
    return client, (result[0] if result else "no answer"), got


def stop(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


async def test_anonymous_on_loopback() -> None:
    port = free_port()
    broker = EmbeddedBroker(EmbeddedBrokerConfig("127.0.0.1", port, None, None))
    await broker.start()
    try:
        client, reason, _ = await asyncio.to_thread(connect, port, client_id="anyone")
        assert reason == "Success"
        stop(client)
    finally:
        await broker.stop()


async def test_an_account_is_enforced() -> None:
    port = free_port()
    broker = EmbeddedBroker(EmbeddedBrokerConfig("127.0.0.1", port, "hearth", "s3cret"))
    await broker.start()
    try:
        for credentials, expected in ((None, "Not authorized"), (("hearth", "wrong"), "Not authorized"),
                                      (("other", "s3cret"), "Not authorized"), (("hearth", "s3cret"), "Success")):
            client, reason, _ = await asyncio.to_thread(connect, port, client_id="c", credentials=credentials)
            stop(client)
            assert reason == expected, credentials
    finally:
        await broker.stop()


def test_no_open_broker_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="needs an account"):
        EmbeddedBroker(EmbeddedBrokerConfig("0.0.0.0", 1883, None, None)).amqtt_config()


async def test_stopping_with_clients_and_messages_in_flight_never_hangs() -> None:
    """Python 3.11's wait_for could lose amqtt's reader cancellation (1 stop in ~7 hung).

    The shape of a server shutdown: the bridge sends a satellite its session-end (QoS 1),
    the server's client publishes offline and disconnects, then the broker stops while the
    satellite's PUBACK may still be on its way.
    """
    clients: list[paho.Client] = []
    for attempt in range(20):
        port = free_port()
        broker = EmbeddedBroker(EmbeddedBrokerConfig("127.0.0.1", port, None, None))
        await broker.start()
        satellite, _, got = await asyncio.to_thread(connect, port, client_id="sat", subscribe="hearth/v1/x/command")
        server = MqttClient(ClientSettings(MqttUrl("127.0.0.1", port), "hearth", "srv", protocol="3.1.1",
                                           status=ServerStatus("hearth")), [], lambda topic, payload: None)
        server.start()
        assert await server.wait_connected(5)
        server.publish("hearth/v1/x/command", b"session-end", 1)
        await server.stop()
        began = time.monotonic()
        await asyncio.wait_for(broker.stop(), 10)
        assert time.monotonic() - began < 2.0, f"stop took {time.monotonic() - began:.1f} s (attempt {attempt})"
        clients.append(satellite)
    # paho sleeps up to a second between reconnect attempts: join them all at once.
    await asyncio.gather(*(asyncio.to_thread(c.loop_stop) for c in clients))
