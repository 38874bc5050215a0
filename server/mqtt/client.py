"""The server's broker connection: paho-mqtt in its own network thread, handing off to asyncio.

Why paho's threaded loop rather than its external-loop API driven by asyncio: with
``loop_start()`` paho keeps everything that can block inside its own thread: DNS,
the TCP connect, the TLS handshake, keep-alive pings and reconnecting with
exponential backoff (``reconnect_delay_set``), including retrying the first connect
when the broker is not up yet. The external-loop API would leave all of that to us:
``connect()`` itself blocks (DNS, TCP, TLS), and reconnection, backoff and the
``loop_misc`` timer would have to be rewritten around ``add_reader``/``add_writer``.
The price of the thread is one hand-off per message, which is cheap:

* **in**: paho's callbacks run in its thread and only call
  ``loop.call_soon_threadsafe(handler, topic, payload)``; the handler (the bridge)
  runs on the event loop, in the order the broker delivered the messages.
* **out**: ``Client.publish`` is thread-safe and never blocks: it appends to paho's
  queue and wakes the network thread through its socket pair.

Other properties:

* MQTT 5 when the broker speaks it (``protocol: auto``), else 3.1.1: a broker that
  refuses MQTT 5 (the embedded amqtt broker does) gets a 3.1.1 client on the next
  attempt. The embedded broker is asked for 3.1.1 straight away.
* TCP_NODELAY on the socket (``on_socket_open``): without it every QoS 1 round trip
  waited for Nagle's algorithm (44 ms measured against amqtt; 0.5 ms with it).
* The retained server status (``hearth/v1/server/<id>/status``) is published on
  every (re)connect and registered as the last will with ``availability: offline``;
  a clean stop publishes ``offline`` itself (a broker sends no will on a clean
  disconnect). Subscriptions are renewed on every connect (clean session), so a
  broker restarted without persistence heals itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import paho.mqtt.client as paho
from aiohttp import web

from hearth.paho_client import PahoSettings, guarded, make_client
from hearth.wire import MqttUrl, ServerStatus, topics
from hearth.wire.topics import QOS_CONTROL

_LOGGER = logging.getLogger(__name__)

#: CONNACK codes meaning "this broker does not speak MQTT 5": 0x84 in v5, 1 in 3.1.1.
_UNSUPPORTED_PROTOCOL = {0x84, 1}

MessageHandler = Callable[[str, bytes], None]


@dataclass(frozen=True)
class ClientSettings:
    """Everything needed to connect; built from the config by the composition root."""

    url: MqttUrl
    server_id: str
    client_id: str
    protocol: str = "auto"  # "auto", "5" or "3.1.1"
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    #: The server's retained status (republished on every connect).
    status: ServerStatus | None = None


class MqttClient:
    """One broker connection. Create and use it on the event loop; it is not restartable."""

    KEY: ClassVar[web.AppKey[MqttClient]]

    def __init__(
        self,
        settings: ClientSettings,
        subscriptions: Sequence[tuple[str, int]],
        on_message: MessageHandler,
        *,
        on_connected: Callable[[], None] | None = None,
        on_disconnected: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.subscriptions = list(subscriptions)
        self._on_message_cb = on_message
        self._on_connected_cb = on_connected
        self._on_disconnected_cb = on_disconnected
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: paho.Client | None = None
        self._protocol = paho.MQTTv311 if settings.protocol == "3.1.1" else paho.MQTTv5
        self._connected = threading.Event()
        self._stopping = False
        self._fallback: asyncio.Task[None] | None = None
        self._connected_waiters: list[asyncio.Future[None]] = []
        self.status_topic = topics.server_status(settings.server_id)
        #: Times the connection came up (tests and /healthz read it).
        self.connects = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def protocol_name(self) -> str:
        return "5" if self._protocol == paho.MQTTv5 else "3.1.1"

    def start(self) -> None:
        """Begin connecting (in paho's thread); returns at once."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._client = client = self._make_client()
        url = self.settings.url
        kwargs = {"clean_start": True} if self._protocol == paho.MQTTv5 else {}
        client.connect_async(url.host, url.port, keepalive=self.settings.keepalive_s, **kwargs)
        client.loop_start()
        _LOGGER.info("connecting to the broker %s (MQTT %s)", url.redacted(), self.protocol_name)

    async def wait_connected(self, timeout: float) -> bool:
        if self.connected:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._connected_waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        finally:
            if waiter in self._connected_waiters:
                self._connected_waiters.remove(waiter)
        return True

    async def stop(self) -> None:
        """Publish ``offline`` (when connected), disconnect and join paho's thread."""
        self._stopping = True
        if self._fallback is not None:
            self._fallback.cancel()
            await asyncio.gather(self._fallback, return_exceptions=True)
        client = self._client
        if client is None:
            return
        if self.connected:
            info = client.publish(self.status_topic, ServerStatus.offline(self.settings.server_id).to_json(),
                                  qos=QOS_CONTROL, retain=True)
            await asyncio.to_thread(_wait_published, info, 2.0)
        await asyncio.to_thread(self._shutdown_client, client)

    def _shutdown_client(self, client: paho.Client) -> None:
        """Blocking (joins paho's thread): run it off the event loop."""
        if self._client is client:
            self._client = None
        try:
            client.disconnect()
        finally:
            client.loop_stop()
            self._connected.clear()

    def _make_client(self) -> paho.Client:
        settings = self.settings
        url = settings.url
        client = make_client(PahoSettings(
            client_id=settings.client_id,
            protocol=self._protocol,
            will_topic=self.status_topic,
            will_payload=ServerStatus.offline(settings.server_id).to_json(),
            will_qos=QOS_CONTROL,
            username=url.username,
            password=url.password,
            tls=url.tls,
            ca_file=str(settings.ca_file) if settings.ca_file else None,
            cert_file=str(settings.cert_file) if settings.cert_file else None,
            key_file=str(settings.key_file) if settings.key_file else None,
            tls_insecure=settings.tls_insecure,
            reconnect_min_s=settings.reconnect_min_s,
            reconnect_max_s=settings.reconnect_max_s,
        ))
        # Generous queues: audio frames are QoS 0 and never wait for acks, and a burst
        # of control events must not be refused while a slow broker acks.
        client.max_inflight_messages_set(100)
        # Nothing a callback raises may reach paho's thread: it would end it for good.
        client.on_connect = guarded(self._on_connect)
        client.on_disconnect = guarded(self._on_disconnect)
        client.on_message = guarded(self._on_message)
        return client

    # ------------------------------------------------------------------ publishing

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> bool:
        """Queue one message (thread-safe, non-blocking); False when it was dropped."""
        client = self._client
        if client is None or not self.connected:
            _LOGGER.debug("not connected; dropped a message for %s", topic)
            return False
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            _LOGGER.debug("publish to %s failed: %s", topic, paho.error_string(info.rc))
            return False
        return True

    # ------------------------------------------------------------------ paho's thread

    def _to_loop(self, callback: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            pass

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason_code: paho.ReasonCode,
                    properties: object) -> None:
        if reason_code.is_failure:
            if (self._protocol == paho.MQTTv5 and self.settings.protocol == "auto"
                    and reason_code.value in _UNSUPPORTED_PROTOCOL):
                self._to_loop(self._start_fallback, client)
                return
            _LOGGER.error("the broker %s refused the connection: %s", self.settings.url.redacted(), reason_code)
            return
        if self.subscriptions:
            client.subscribe(self.subscriptions)
        if self.settings.status is not None:
            client.publish(self.status_topic, self.settings.status.to_json(), qos=QOS_CONTROL, retain=True)
        self._connected.set()
        _LOGGER.info("connected to the broker %s (MQTT %s)", self.settings.url.redacted(), self.protocol_name)
        self._to_loop(self._connected_on_loop)

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, reason_code: paho.ReasonCode,
                       properties: object) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected:
            if not self._stopping:
                _LOGGER.warning("lost the broker (%s); reconnecting", reason_code)
            self._to_loop(self._disconnected_on_loop, str(reason_code))

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        self._to_loop(self._on_message_cb, message.topic, message.payload)

    # ------------------------------------------------------------------ back on the loop

    def _connected_on_loop(self) -> None:
        self.connects += 1
        for waiter in self._connected_waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._on_connected_cb is not None:
            self._on_connected_cb()

    def _disconnected_on_loop(self, reason: str) -> None:
        if self._on_disconnected_cb is not None:
            self._on_disconnected_cb(reason)

    def _start_fallback(self, client: paho.Client) -> None:
        if self._stopping or client is not self._client or self._fallback is not None:
            return
        self._fallback = asyncio.get_running_loop().create_task(self._fall_back(client), name="mqtt-fallback")

    async def _fall_back(self, client: paho.Client) -> None:
        _LOGGER.warning("the broker %s does not support MQTT 5; using MQTT 3.1.1", self.settings.url.redacted())
        await asyncio.to_thread(self._shutdown_client, client)
        self._protocol = paho.MQTTv311
        self._fallback = None
        if not self._stopping:
            self.start()


MqttClient.KEY = web.AppKey("hearth_mqtt_client", MqttClient)


def _wait_published(info: paho.MQTTMessageInfo, timeout: float) -> None:
    try:
        info.wait_for_publish(timeout=timeout)
    except (RuntimeError, ValueError):
        pass
