"""The zeroconf advertisement, found by the satellite's own browser (hearth.satellite.discovery)."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest
from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from hearth.satellite.discovery import discover_server
from hearth.server.discovery import Advertiser
from hearth.server.session.testing import ScriptedEngine
from hearth.wire import PROTOCOL_VERSION, MqttUrl
from hearth.wire.discovery import SERVICE_TYPE, ServerAdvert

from tests.server_harness import free_port, make_config, run_server

from .conftest import start_scripted_server


def _loopback_multicast_works() -> str | None:
    """None if mDNS on 127.0.0.1 works on this machine, else why not."""
    try:
        zc = Zeroconf(interfaces=["127.0.0.1"])
    except OSError as err:
        return f"cannot open mDNS sockets on loopback: {err}"
    found = threading.Event()
    kind = "_hearthprobe._tcp.local."
    info = ServiceInfo(kind, f"probe.{kind}", port=9, addresses=[socket.inet_aton("127.0.0.1")], server="probe.local.")
    try:
        zc.register_service(info, allow_name_change=True)
        browser = ServiceBrowser(zc, kind, handlers=[
            lambda zeroconf, service_type, name, state_change: found.set()
            if state_change is ServiceStateChange.Added else None])
        found.wait(3)
        browser.cancel()
        zc.unregister_service(info)
    finally:
        zc.close()
    return None if found.is_set() else "multicast on loopback does not reach a browser on this machine"


@pytest.fixture(scope="module")
def mdns() -> None:
    reason = _loopback_multicast_works()
    if reason is not None:
        print(f"skipping zeroconf tests: {reason}")
        pytest.skip(reason)


def test_a_satellite_finds_the_server_and_its_broker(mdns: None, tmp_path: Path) -> None:
    broker_port = free_port()
    config = make_config(tmp_path, {"mqtt": {"broker": {"port": broker_port}},
                                    "discovery": {"enabled": True, "name": "Hearth test"}})
    with run_server(config, engine_factory=lambda _c, _e: ScriptedEngine()) as server:
        advertiser = server.app[Advertiser.KEY]
        asyncio.run_coroutine_threadsafe(advertiser.registered(), server.loop).result(10)
        assert advertiser.info is not None and advertiser.info.name.startswith("Hearth test")
        # Our instance, resolved by name over multicast (another Hearth on this machine may advertise too).
        zc = Zeroconf(interfaces=["127.0.0.1"])
        try:
            info = zc.get_service_info(SERVICE_TYPE, advertiser.info.name, timeout=3000)
        finally:
            zc.close()
        assert info is not None, "our _hearth._tcp.local. instance did not resolve"
        assert info.port == server.config.server.port  # the service port is the HTTP API's
        advert = ServerAdvert.from_txt(info.properties, address=info.parsed_addresses()[0])
        assert advert.protocol == PROTOCOL_VERSION and advert.compatible
        assert advert.mqtt == MqttUrl("127.0.0.1", broker_port)  # the embedded broker, at the advertiser's address
        assert (advert.server_id, advert.version) == ("hearth", advertiser.version)
        assert all(b"@" not in (value or b"") for value in info.properties.values())  # never credentials
        # And the satellite's own browser (hearth.satellite.discovery) finds a compatible server.
        found = discover_server(5.0, interfaces=["127.0.0.1"])
        assert found is not None and found.compatible


def test_no_advertisement_when_discovery_is_off(tmp_path: Path) -> None:
    context, _ = start_scripted_server(tmp_path, ScriptedEngine())
    with context as server:
        assert Advertiser.KEY not in server.app
