"""The paho-mqtt client both ends build: one set of connection settings, one factory.

The satellite and the house server drive paho differently (a polling loop on the
satellite, hand-off to asyncio on the server), but connect the same way: MQTT 5 or
3.1.1, credentials, TLS, a retained last will, reconnect backoff, and TCP_NODELAY on
the socket (Nagle cost 44 ms per QoS 1 round trip with the embedded broker).

paho 2 re-raises whatever a callback raises inside its network thread, which ends that
thread for good: no more messages, no reconnects. Both ends wrap every callback in
:func:`guarded`, and the clients made here also set ``suppress_exceptions``.
Unlike `hearth.wire`, this module needs paho-mqtt, which both extras install.
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as paho

_LOGGER = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def guarded(callback: F) -> F:
    """Wrap a paho callback so that nothing it raises reaches paho's network thread."""

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the network thread must survive any message
            _LOGGER.exception("MQTT callback %s failed; carrying on", getattr(callback, "__name__", callback))
            return None

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class PahoSettings:
    client_id: str
    #: paho.MQTTv5 or paho.MQTTv311
    protocol: int
    will_topic: str
    will_payload: bytes
    will_qos: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0


def make_client(settings: PahoSettings) -> paho.Client:
    """A configured, unconnected client; the caller sets its callbacks."""
    kwargs = {} if settings.protocol == paho.MQTTv5 else {"clean_session": True}
    client = paho.Client(
        callback_api_version=paho.CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=settings.protocol,
        **kwargs,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(
            ca_certs=settings.ca_file,
            certfile=settings.cert_file,
            keyfile=settings.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(settings.tls_insecure)
    client.will_set(settings.will_topic, settings.will_payload, qos=settings.will_qos, retain=True)
    client.reconnect_delay_set(
        min_delay=settings.reconnect_min_s,  # type: ignore[arg-type]  # floats work
        max_delay=settings.reconnect_max_s,  # type: ignore[arg-type]
    )
    client.on_socket_open = guarded(lambda _client, _userdata, sock: set_nodelay(sock))
    client.suppress_exceptions = True  # a second guard: paho logs instead of re-raising
    return client


def set_nodelay(sock: object) -> None:
    """Send small MQTT packets at once instead of waiting for the previous ack."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
    except (OSError, AttributeError):  # a websocket or unix socket
        _LOGGER.debug("could not set TCP_NODELAY", exc_info=True)
