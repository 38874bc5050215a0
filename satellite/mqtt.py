"""The satellite's MQTT connection (paho-mqtt).

* MQTT 5 when the broker supports it, else 3.1.1 (``mqtt.protocol: auto``):
  a broker that answers an MQTT 5 CONNECT with "unsupported protocol version",
  or sends no CONNACK at all within ``CONNACK_TIMEOUT`` (the embedded amqtt
  broker ignores an MQTT 5 CONNECT that carries a will), gets a 3.1.1 client next.
* The retained status topic has a last will ``offline``; a clean shutdown
  publishes ``offline`` itself (a will is not sent on a clean disconnect).
* paho reconnects with exponential backoff (``reconnect_min`` doubling to
  ``reconnect_max``); every (re)connect resubscribes and the satellite
  republishes its retained status, so a broker restart without persistence
  heals itself.
* TCP_NODELAY on the socket: without it every QoS 1 round trip can wait for
  Nagle's algorithm (44 ms per round trip measured with the embedded broker).

* No exception ever escapes into paho's network thread: paho 2 re-raises what a
  callback raises, and that ends the thread for good (no more messages, no
  reconnects). Every callback is wrapped (:func:`hearth.paho_client.guarded`), and a watchdog in
  :meth:`MqttLink.poll` starts a fresh client if the thread died anyway.

Incoming messages are decoded here (with :mod:`hearth.wire`) and handed to the
satellite's main loop through a queue as :class:`LinkEvent` objects; nothing
here touches satellite state (the wake word detector included: Home Assistant's
settings are applied by the main loop, between two audio frames).

Subscriptions: the satellite's own command and reply topics, every server's
status, and its own retained Home Assistant settings
(``hearth/v1/ha/satellite/<id>/settings``), which the broker replays on every
(re)connect, so a restarted satellite gets Home Assistant's choice back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import paho.mqtt.client as paho

from hearth.paho_client import PahoSettings, guarded, make_client, set_nodelay

from hearth.wire import (
    AudioFrame,
    Message,
    MqttUrl,
    ProtocolError,
    SatelliteCommand,
    SatelliteStatus,
    ServerStatus,
    SatelliteSettings,
    UnknownMessageType,
    decode_satellite_command,
    decode_server_status,
    ha_topics,
    topics,
)
from hearth.wire.topics import QOS_AUDIO, QOS_CONTROL

from .config import MqttSection

_LOGGER = logging.getLogger(__name__)

# CONNACK codes meaning "this broker does not speak MQTT 5": 0x84 in v5, 1 in 3.1.1.
_UNSUPPORTED_PROTOCOL = {0x84, 1}
#: Seconds to wait for a CONNACK to an MQTT 5 CONNECT before trying MQTT 3.1.1.
CONNACK_TIMEOUT = 3.0
#: How often the watchdog checks that paho's network thread is alive.
WATCHDOG_INTERVAL = 1.0

@dataclass(frozen=True)
class LinkUp:
    protocol: str


@dataclass(frozen=True)
class LinkDown:
    reason: str


@dataclass(frozen=True)
class CommandReceived:
    command: SatelliteCommand


@dataclass(frozen=True)
class ReplyFrameReceived:
    frame: AudioFrame


@dataclass(frozen=True)
class ServerStatusReceived:
    status: ServerStatus


@dataclass(frozen=True)
class SettingsReceived:
    """Home Assistant's settings for this satellite; None when the retained settings were cleared."""

    settings: SatelliteSettings | None


@dataclass(frozen=True)
class BadMessage:
    error: ProtocolError


LinkEvent = Union[
    LinkUp, LinkDown, CommandReceived, ReplyFrameReceived, ServerStatusReceived, SettingsReceived, BadMessage
]


class MqttLink:
    """One satellite's broker connection. Thread-safe publishing; events go to ``inbox``."""

    def __init__(
        self,
        url: MqttUrl,
        config: MqttSection,
        satellite_id: str,
        inbox: "queue.Queue[object]",
    ) -> None:
        self.url = url
        self.config = config
        self.satellite_id = satellite_id
        self.inbox = inbox
        self._protocol = paho.MQTTv311 if config.protocol == "3.1.1" else paho.MQTTv5
        self._client: paho.Client | None = None
        self._connected = threading.Event()
        self._fallback = threading.Event()
        self._socket_opened_at: float | None = None
        self._connack_seen = False
        self._stopping = False
        self._next_watchdog = 0.0
        #: Times the watchdog found paho's network thread dead and started a new client.
        self.restarts = 0
        self._status_topic = topics.satellite_status(satellite_id)
        self._event_topic = topics.satellite_event(satellite_id)
        self._audio_topic = topics.satellite_audio(satellite_id)
        self._command_topic = topics.satellite_command(satellite_id)
        self._reply_topic = topics.satellite_reply(satellite_id)
        self._settings_topic = ha_topics.ha_settings(satellite_id)

    # -- lifecycle ---------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def protocol_name(self) -> str:
        return "5" if self._protocol == paho.MQTTv5 else "3.1.1"

    def start(self) -> None:
        self._stopping = False
        self._client = self._make_client()
        kwargs = {"clean_start": True} if self._protocol == paho.MQTTv5 else {}
        self._client.connect_async(self.url.host, self.url.port, keepalive=self.config.keepalive, **kwargs)
        self._client.loop_start()
        _LOGGER.info("Connecting to %s (MQTT %s)", self.url.redacted(), self.protocol_name)

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (handling a protocol fallback meanwhile)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if self._connected.wait(0.05):
                return True
        return False

    def poll(self) -> None:
        """Called often from the main loop: the watchdog and a pending MQTT 5 → 3.1.1 fallback."""
        now = time.monotonic()
        if now >= self._next_watchdog:
            self._next_watchdog = now + WATCHDOG_INTERVAL
            self._watchdog()
        opened = self._socket_opened_at
        if opened is not None and not self._connack_seen and time.monotonic() - opened > CONNACK_TIMEOUT:
            # The broker took the TCP connection but never answered the MQTT 5 CONNECT.
            self._socket_opened_at = None
            self._maybe_fall_back()
        if self._fallback.is_set():
            self._fallback.clear()
            _LOGGER.warning("Broker %s does not support MQTT 5; using MQTT 3.1.1", self.url.redacted())
            self._shutdown_client()
            self._protocol = paho.MQTTv311
            self.start()

    def network_thread_alive(self) -> bool:
        """Whether paho's network thread runs (paho has no public accessor for it)."""
        client = self._client
        thread = getattr(client, "_thread", None) if client is not None else None
        return thread is not None and thread.is_alive()

    def _watchdog(self) -> None:
        if self._stopping or self._client is None or self.network_thread_alive():
            return
        _LOGGER.error("The MQTT network thread has died; starting a new connection")
        self.restarts += 1
        was_connected = self._connected.is_set()
        client, self._client = self._client, None
        self._connected.clear()
        try:
            client.disconnect()
            client.loop_stop()
        except Exception:  # noqa: BLE001 - it is broken already
            _LOGGER.debug("closing the dead client failed", exc_info=True)
        if was_connected:
            self.inbox.put(LinkDown("network thread died"))
        self.start()

    def stop(self, final_status: SatelliteStatus | None = None) -> None:
        """Publish ``final_status`` (normally offline), then disconnect cleanly."""
        self._stopping = True
        client = self._client
        if client is None:
            return
        if final_status is not None and self.connected:
            info = client.publish(self._status_topic, final_status.to_json(), qos=QOS_CONTROL, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self._shutdown_client()

    def _shutdown_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.disconnect()
        finally:
            client.loop_stop()
            self._connected.clear()

    def _make_client(self) -> paho.Client:
        password = self.config.password or self.url.password
        if self.config.password_file:
            password = Path(self.config.password_file).read_text(encoding="utf-8").splitlines()[0].strip()
        tls = self.config.tls
        username = self.config.username or self.url.username
        if username is None and password:
            username = self.satellite_id  # the convention of every Hearth broker (ACLs key on it)
        client = make_client(PahoSettings(
            client_id=self.config.client_id or f"hearth-satellite-{self.satellite_id}",
            protocol=self._protocol,
            will_topic=self._status_topic,
            will_payload=SatelliteStatus.offline(self.satellite_id).to_json(),
            will_qos=QOS_CONTROL,
            username=username,
            password=password,
            tls=self.url.tls,
            ca_file=tls.ca_file,
            cert_file=tls.cert_file,
            key_file=tls.key_file,
            tls_insecure=tls.insecure,
            reconnect_min_s=self.config.reconnect_min,
            reconnect_max_s=self.config.reconnect_max,
        ))
        client.on_socket_open = guarded(self._on_socket_open)
        client.on_connect = guarded(self._on_connect)
        client.on_disconnect = guarded(self._on_disconnect)
        client.on_message = guarded(self._on_message)
        client.on_publish = guarded(self._on_publish)
        return client

    # -- publishing --------------------------------------------------------------
    def publish_status(self, status: SatelliteStatus) -> None:
        self._publish(self._status_topic, status.to_json(), QOS_CONTROL, retain=True)

    def publish_event(self, message: Message) -> None:
        self._publish(self._event_topic, message.to_json(), QOS_CONTROL)

    def publish_audio(self, frame: AudioFrame) -> None:
        self._publish(self._audio_topic, frame.to_bytes(), QOS_AUDIO)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        client = self._client
        if client is None or not self.connected:
            _LOGGER.debug("not connected; dropped a message for %s", topic)
            return
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            _LOGGER.debug("publish to %s failed: %s", topic, paho.error_string(info.rc))

    # -- paho callbacks (paho's network thread) -------------------------------------
    def _on_socket_open(self, client: paho.Client, userdata: object, sock: object) -> None:
        self._socket_opened_at = time.monotonic()
        self._connack_seen = False
        set_nodelay(sock)

    def _maybe_fall_back(self) -> bool:
        if self._protocol == paho.MQTTv5 and self.config.protocol == "auto" and not self._stopping:
            self._fallback.set()
            return True
        return False

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason_code, properties) -> None:
        self._connack_seen = True
        self._socket_opened_at = None
        if reason_code.is_failure:
            if reason_code.value in _UNSUPPORTED_PROTOCOL and self._maybe_fall_back():
                return
            _LOGGER.error("Broker %s refused the connection: %s", self.url.redacted(), reason_code)
            return
        client.subscribe(
            [
                (self._command_topic, QOS_CONTROL),
                (self._reply_topic, QOS_AUDIO),
                (topics.all_server_statuses(), QOS_CONTROL),
                (self._settings_topic, QOS_CONTROL),
            ]
        )
        self._connected.set()
        _LOGGER.info("Connected to %s (MQTT %s)", self.url.redacted(), self.protocol_name)
        self.inbox.put(LinkUp(self.protocol_name))

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, reason_code, properties) -> None:
        if getattr(reason_code, "is_failure", False):
            _LOGGER.error(
                "Broker refused a publish (%s): check the broker ACL; the username must be the satellite id %r",
                reason_code,
                self.satellite_id,
            )

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, reason_code, properties) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected:
            if not self._stopping:
                _LOGGER.warning("Lost the broker (%s); reconnecting", reason_code)
            self.inbox.put(LinkDown(str(reason_code)))

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        topic = message.topic
        try:
            if topic == self._reply_topic:
                self.inbox.put(ReplyFrameReceived(AudioFrame.from_bytes(message.payload, topic=topic)))
            elif topic == self._command_topic:
                self.inbox.put(CommandReceived(decode_satellite_command(message.payload, topic=topic)))
            elif topic == self._settings_topic:
                self.inbox.put(SettingsReceived(self._decode_settings(message.payload)))
            else:
                parsed = topics.parse_topic(topic)
                if isinstance(parsed, topics.ServerTopic):
                    self.inbox.put(ServerStatusReceived(decode_server_status(message.payload, topic=topic)))
        except UnknownMessageType as err:
            _LOGGER.debug("ignoring a message type this satellite does not know: %s", err)
        except ProtocolError as err:
            self.inbox.put(BadMessage(err))

    def _decode_settings(self, payload: bytes) -> SatelliteSettings | None:
        if not payload:  # the retained settings were deleted
            return None
        settings = ha_topics.decode_satellite_settings(payload, topic=self._settings_topic)
        if settings.satellite_id != self.satellite_id:
            raise ProtocolError(
                "satellite-settings for another satellite", topic=self._settings_topic, satellite_id=settings.satellite_id
            )
        return settings
