"""The embedded broker: amqtt's ``Broker`` in the server's own event loop.

Started when no ``mqtt.url`` is configured, so the quick start needs nothing else.
It binds 127.0.0.1 by default and admits anonymous clients only there; on any other
address the config requires one account (``mqtt.broker.username``/``password``),
which :class:`AccountAuth` checks. amqtt speaks MQTT 3.1.1 only; the bridge asks it
for 3.1.1 straight away and satellites fall back to it.

Measured (docs/reference, component trials): it starts in about 12 ms and relays
20 ms audio frames at far more than the 50 messages per second a stream needs.
Production houses with many satellites, ACLs or TLS should run Mosquitto and set
``mqtt.url``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web
from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin

from ..errors import StartupError
from ..options import is_loopback
from .options import EmbeddedBrokerConfig

_LOGGER = logging.getLogger(__name__)

#: Longest wait for messages still being relayed (the session-end of each satellite) at stop.
DRAIN_S = 0.5
#: Longest wait for client connections to end after they were closed, and for amqtt's shutdown.
STOP_S = 3.0


class AccountAuth(BaseAuthPlugin):
    """amqtt auth plugin: exactly one username/password (compared in constant time)."""

    @dataclass
    class Config:
        username: str = ""
        password: str = ""

    async def authenticate(self, *, session: Any) -> bool:
        config = self.context.config
        username = getattr(session, "username", None) or ""
        password = getattr(session, "password", None) or ""
        ok = hmac.compare_digest(username.encode(), config.username.encode()) and hmac.compare_digest(
            password.encode(), config.password.encode())
        if not ok:
            _LOGGER.warning("embedded broker: refused client %s (bad username or password)",
                            getattr(session, "client_id", "?"))
        return ok


class _Broker(Broker):
    """amqtt's Broker with one fix.

    amqtt 0.12.1, on every CONNECT, replays the retained messages matching *every*
    client's subscription filters to the new client (``_handle_client_session`` loops
    over the broker-wide ``_subscriptions``), so each satellite received every other
    satellite's retained status on topics it never subscribed to. Retained messages
    now go only to a session that holds the filter.
    """

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
        holders = self._subscriptions.get(subscription[0], ())
        if any(holder is session for holder, _qos in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)


class EmbeddedBroker:
    KEY: ClassVar[web.AppKey[EmbeddedBroker]]

    def __init__(self, config: EmbeddedBrokerConfig) -> None:
        self.config = config
        self._broker: Broker | None = None

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def port(self) -> int:
        return self.config.port

    def amqtt_config(self) -> dict[str, Any]:
        cfg = self.config
        if cfg.username is not None:
            auth: dict[str, Any] = {f"{AccountAuth.__module__}.AccountAuth": {
                "username": cfg.username, "password": cfg.password or ""}}
        else:
            if not is_loopback(cfg.host):  # the config check refuses this; never open a LAN broker by accident
                raise ValueError("the embedded broker needs an account to listen beyond loopback")
            auth = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{_bind_host(cfg.host)}:{cfg.port}"}},
            # No $SYS publisher and no packet logger: only authentication.
            "plugins": auth,
        }

    async def start(self) -> None:
        for name in ("amqtt", "transitions"):
            # amqtt logs every connection at INFO; keep the server's log about the server.
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET and not _LOGGER.isEnabledFor(logging.DEBUG):
                logger.setLevel(logging.WARNING)
        broker = _Broker(self.amqtt_config())
        try:
            await broker.start()
        except Exception as err:
            cause = err.__cause__ or err
            raise StartupError(
                f"the embedded MQTT broker cannot listen on {self.host}:{self.port}: {cause}. Is another broker "
                "running there? Then set mqtt.url (or --mqtt-url) to use it, or set mqtt.broker.port."
            ) from err
        self._broker = broker
        _LOGGER.info("embedded MQTT broker listening on %s:%d (%s)", self.host, self.port,
                     "account required" if self.config.username else "anonymous, loopback only")

    async def stop(self) -> None:
        """Relay what is queued, close every client connection, then shut amqtt down.

        Closing the connections first is not cosmetic. amqtt reads each client inside
        ``asyncio.wait_for``, and Python 3.11's ``wait_for`` loses a cancellation that
        arrives as the read completes: a satellite's PUBACK (for the session-end just
        sent) arriving while ``shutdown()`` cancelled its reader left the reader running
        and ``shutdown()`` waiting for it forever (1 stop in about 7 in a loop test).
        A connection closed beforehand ends its reader by end of stream instead.
        """
        broker, self._broker = self._broker, None
        if broker is None:
            return
        deadline = time.monotonic() + DRAIN_S
        queue = getattr(broker, "_broadcast_queue", None)
        while queue is not None and not queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        readers = []
        for _session, handler in list(getattr(broker, "_sessions", {}).values()):
            writer = getattr(getattr(handler, "writer", None), "_writer", None)
            transport = getattr(writer, "transport", None)
            if transport is not None:
                transport.close()  # flushes what is buffered, then closes
            reader = getattr(handler, "_reader_task", None)
            if reader is not None and not reader.done():
                readers.append(reader)
        if readers:
            await asyncio.wait(readers, timeout=STOP_S)
        try:
            await asyncio.wait_for(broker.shutdown(), STOP_S)
        except TimeoutError:
            _LOGGER.warning("embedded MQTT broker: shutdown did not finish within %.0f s; going on", STOP_S)


EmbeddedBroker.KEY = web.AppKey("hearth_mqtt_broker", EmbeddedBroker)


def _bind_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
