"""Zeroconf advertisement of the house server: ``_hearth._tcp.local.`` (zeroconf's async API).

The service's SRV port is the HTTP API port (``server.port``); the TXT record carries
the keys of :mod:`hearth.wire.discovery`: the wire protocol version, the broker
satellites should use (never with credentials), the server id and the software
version. Satellites with no broker configured browse for it.

Which broker is advertised: an external broker's host as configured, unless that host
is a loopback or wildcard address (a Mosquitto on this machine), and the embedded
broker always, as an empty host. An empty host means "the address this service was
advertised from" (hearth.wire.discovery).

Where it is advertised: on ``discovery.address`` when set; on loopback only when both
the API and the broker are loopback-only (a satellite on another machine could reach
neither); otherwise on every interface, with this host's IPv4 addresses.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import ClassVar

from aiohttp import web
from zeroconf import IPVersion, get_all_addresses
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from hearth.wire import PROTOCOL_VERSION, MqttUrl
from hearth.wire.discovery import SERVICE_TYPE, ServerAdvert

from .config import ServerConfig
from .options import is_loopback
from .context import ServerContext

_LOGGER = logging.getLogger(__name__)

_WILDCARDS = ("0.0.0.0", "::", "")


def advertised_broker(config: ServerConfig) -> MqttUrl:
    """The broker URL for the TXT record (no credentials; empty host = the advertiser)."""
    mqtt = config.mqtt
    if mqtt.url is not None:
        url = MqttUrl.parse(mqtt.url)
        host = "" if url.host in _WILDCARDS or is_loopback(url.host) else url.host
        return MqttUrl(host, url.port, tls=url.tls)
    return MqttUrl("", mqtt.broker.port)


def loopback_only(config: ServerConfig) -> bool:
    api_local = is_loopback(config.server.host)
    mqtt = config.mqtt
    if not mqtt.enabled:
        return api_local
    if mqtt.url is None:
        return api_local and is_loopback(mqtt.broker.host)
    host = MqttUrl.parse(mqtt.url).host
    return api_local and (is_loopback(host) or host in _WILDCARDS)


class Advertiser:
    """Registers the service on start, unregisters it on stop."""

    KEY: ClassVar[web.AppKey[Advertiser]]

    def __init__(self, config: ServerConfig, version: str | None) -> None:
        self.config = config
        self.version = version
        self._zeroconf: AsyncZeroconf | None = None
        self._registration: asyncio.Task[None] | None = None
        self.info: AsyncServiceInfo | None = None
        self.announced = False

    def addresses(self) -> tuple[list[str], list[str] | None]:
        """(addresses to put in A records, interfaces to bind; None = all)."""
        cfg = self.config.discovery
        if cfg.address:
            return [cfg.address], None
        if loopback_only(self.config):
            return ["127.0.0.1"], ["127.0.0.1"]
        found = [a for a in get_all_addresses() if not a.startswith("127.")]
        return (found or ["127.0.0.1"]), None

    def service_info(self, addresses: list[str]) -> AsyncServiceInfo:
        mqtt = self.config.mqtt
        advert = ServerAdvert(protocol=PROTOCOL_VERSION, mqtt=advertised_broker(self.config),
                              server_id=mqtt.server_id, version=self.version)
        name = self.config.discovery.name or f"Hearth {mqtt.server_id}"
        host = socket.gethostname().split(".")[0] or "hearth"
        return AsyncServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            port=self.config.server.port,
            properties=advert.to_txt(),
            server=f"{host}.local.",
            addresses=[socket.inet_aton(a) for a in addresses],
        )

    async def start(self) -> None:
        """Open the mDNS sockets and begin registering (in a task this object owns and cancels).

        Registering probes the name first (about 1.2 s measured), so the server does not
        wait for it before it starts serving.
        """
        addresses, interfaces = self.addresses()
        kwargs = {"interfaces": interfaces} if interfaces is not None else {}
        self._zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only, **kwargs)
        self.info = self.service_info(addresses)
        self._registration = asyncio.get_running_loop().create_task(
            self._register(self._zeroconf, self.info, addresses), name="zeroconf-register")

    async def _register(self, zc: AsyncZeroconf, info: AsyncServiceInfo, addresses: list[str]) -> None:
        try:
            announced = await zc.async_register_service(info, allow_name_change=True)
            await announced
        except OSError as err:  # no multicast-capable interface: the server works without it
            _LOGGER.warning("zeroconf advertisement unavailable: %s", err)
            return
        _LOGGER.info("advertising %s on %s (broker %s)", info.name, ", ".join(addresses),
                     info.properties.get(b"mqtt", b"").decode())
        self.announced = True

    async def registered(self) -> None:
        """Wait until the announcement went out (tests)."""
        if self._registration is not None:
            await asyncio.shield(self._registration)

    async def stop(self) -> None:
        zc, self._zeroconf = self._zeroconf, None
        if zc is None:
            return
        registration, self._registration = self._registration, None
        if registration is not None and not registration.done():
            registration.cancel()
            await asyncio.gather(registration, return_exceptions=True)
        try:
            if self.announced and self.info is not None:
                await asyncio.wait_for(zc.async_unregister_service(self.info), 3.0)
        except Exception:  # noqa: BLE001 - leaving must never block shutdown
            _LOGGER.debug("zeroconf unregister failed", exc_info=True)
        await zc.async_close()


Advertiser.KEY = web.AppKey("hearth_discovery", Advertiser)


def discovery_context(version: str | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def zeroconf_advert(app: web.Application) -> AsyncIterator[None]:
        advertiser = Advertiser(app[ServerContext.KEY].config, version)
        try:
            await advertiser.start()
        except OSError as err:  # no multicast-capable interface: the server still works
            _LOGGER.warning("zeroconf advertisement unavailable: %s", err)
            await advertiser.stop()
            yield
            return
        app[Advertiser.KEY] = advertiser
        try:
            yield
        finally:
            await advertiser.stop()

    return zeroconf_advert
