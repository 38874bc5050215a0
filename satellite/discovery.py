"""Finding the house server (and its broker) with zeroconf when no broker is configured."""

from __future__ import annotations

import logging
import threading

from hearth.wire import ProtocolError
from hearth.wire.discovery import SERVICE_TYPE, ServerAdvert

_LOGGER = logging.getLogger(__name__)


def discover_server(timeout: float = 5.0, *, interfaces: object = None) -> ServerAdvert | None:
    """Browse ``_hearth._tcp.local.`` and return the first compatible server's advert.

    Returns ``None`` when nothing compatible answered within ``timeout``.
    """
    from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf

    kwargs = {"interfaces": interfaces} if interfaces is not None else {}
    zc = Zeroconf(**kwargs)
    found: list[ServerAdvert] = []
    done = threading.Event()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Added or done.is_set():
            return
        info = zeroconf.get_service_info(service_type, name, timeout=int(timeout * 1000))
        if info is None:
            return
        addresses = info.parsed_scoped_addresses()
        try:
            advert = ServerAdvert.from_txt(info.properties, address=addresses[0] if addresses else None)
        except ProtocolError as err:
            _LOGGER.warning("Ignoring %s: %s", name, err)
            return
        if not advert.compatible:
            _LOGGER.warning("Ignoring %s: it speaks wire protocol %d", name, advert.protocol)
            return
        _LOGGER.info("Found house server %s, broker %s", advert.server_id or name, advert.mqtt.redacted())
        found.append(advert)
        done.set()

    browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
    try:
        done.wait(timeout)
    finally:
        browser.cancel()
        zc.close()
    return found[0] if found else None
