"""Finding the server with zeroconf (faked: no multicast in tests) and the MQTT 5 → 3.1.1 fallback."""

from __future__ import annotations

import asyncio
import queue
import threading

import pytest

from hearth.satellite import discovery
from hearth.satellite.config import MqttSection
from hearth.satellite.mqtt import LinkUp, MqttLink
from hearth.wire import MqttUrl, SatelliteStatus
from hearth.wire.discovery import SERVICE_TYPE, ServerAdvert
from tests.conftest_mqtt import free_port


class FakeInfo:
    def __init__(self, properties, addresses):
        self.properties = properties
        self._addresses = addresses

    def parsed_scoped_addresses(self):
        return self._addresses


def _fake_zeroconf(monkeypatch, services: dict[str, FakeInfo]):
    import zeroconf

    class FakeZeroconf:
        def __init__(self, **kwargs):
            self.closed = False

        def get_service_info(self, service_type, name, timeout=3000):
            return services[name]

        def close(self):
            self.closed = True

    class FakeBrowser:
        def __init__(self, zc, service_type, handlers):
            assert service_type == SERVICE_TYPE
            for name in services:
                for handler in handlers:
                    handler(zeroconf=zc, service_type=service_type, name=name, state_change=zeroconf.ServiceStateChange.Added)

        def cancel(self):
            pass

    monkeypatch.setattr(zeroconf, "Zeroconf", FakeZeroconf)
    monkeypatch.setattr(zeroconf, "ServiceBrowser", FakeBrowser)


def test_discovery_uses_the_advertised_broker(monkeypatch):
    txt = {k.encode(): v.encode() for k, v in ServerAdvert(1, MqttUrl("", 1883), server_id="house").to_txt().items()}
    _fake_zeroconf(monkeypatch, {f"house.{SERVICE_TYPE}": FakeInfo(txt, ["192.0.2.5"])})
    advert = discovery.discover_server(0.5)
    assert advert is not None and advert.mqtt == MqttUrl("192.0.2.5", 1883) and advert.server_id == "house"


def test_discovery_skips_incompatible_and_broken_adverts(monkeypatch):
    services = {
        f"old.{SERVICE_TYPE}": FakeInfo({b"proto": b"2", b"mqtt": b"mqtt://192.0.2.1:1883"}, ["192.0.2.1"]),
        f"broken.{SERVICE_TYPE}": FakeInfo({b"mqtt": b"mqtt://192.0.2.2:1883"}, ["192.0.2.2"]),
        f"good.{SERVICE_TYPE}": FakeInfo({b"proto": b"1", b"mqtt": b"mqtts://house.lan:8883"}, ["192.0.2.3"]),
    }
    _fake_zeroconf(monkeypatch, services)
    advert = discovery.discover_server(0.5)
    assert advert is not None and advert.mqtt == MqttUrl("house.lan", 8883, tls=True)


def test_discovery_gives_up_after_the_timeout(monkeypatch):
    _fake_zeroconf(monkeypatch, {})
    assert discovery.discover_server(0.2) is None


@pytest.fixture
def amqtt_broker():
    """The embedded broker the house server uses when none is configured (MQTT 3.1.1 only)."""
    broker_module = pytest.importorskip("amqtt.broker", reason="amqtt (the server's embedded broker) not installed")
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder = {}

    async def start():
        broker = broker_module.Broker(
            {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}, "auth": {"allow-anonymous": True}},
            loop=loop,
        )
        await broker.start()
        holder["broker"] = broker
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    assert ready.wait(10)
    yield MqttUrl("127.0.0.1", port)
    asyncio.run_coroutine_threadsafe(holder["broker"].shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_falls_back_to_mqtt_311_when_the_broker_refuses_5(amqtt_broker):
    inbox: queue.Queue[object] = queue.Queue()
    link = MqttLink(amqtt_broker, MqttSection(reconnect_min=0.1, reconnect_max=0.5), "kitchen", inbox)
    link.start()
    try:
        assert link.wait_connected(10), "never connected"
        assert link.protocol_name == "3.1.1"
        assert isinstance(inbox.get(timeout=1), LinkUp)
    finally:
        link.stop(SatelliteStatus.offline("kitchen"))


def test_mqtt_5_is_used_when_available(mosquitto):
    inbox: queue.Queue[object] = queue.Queue()
    link = MqttLink(MqttUrl.parse(mosquitto.url), MqttSection(), "kitchen", inbox)
    link.start()
    try:
        assert link.wait_connected(10)
        assert link.protocol_name == "5"
        sock = link._client.socket()  # noqa: SLF001 - checking the socket option itself
        import socket

        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        link.stop()
