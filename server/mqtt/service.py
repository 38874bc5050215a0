"""The `cleanup_ctx` generators for the broker and the MQTT client + bridge (part of the composition root).

`create_app` installs them after the engine's, so they start once the engine is warm
and stop (in reverse order) before it: the bridge first ends every satellite session
and publishes the server's ``offline`` status, then the embedded broker stops.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from hearth.wire import MqttUrl, ServerStatus

from ..config import MqttConfig, ServerConfig
from ..context import ServerContext
from ..tools.home_assistant import SUBSCRIPTIONS as HA_SUBSCRIPTIONS
from ..tools.home_assistant import HomeAssistantTools
from .assist import HomeAssistantAssist
from .bridge import SUBSCRIPTIONS, MqttBridge
from .broker import EmbeddedBroker
from .client import ClientSettings, MqttClient

_LOGGER = logging.getLogger(__name__)

#: How long startup waits for the first connection before going on (it keeps retrying).
CONNECT_WAIT_S = 5.0

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def broker_url(config: MqttConfig) -> MqttUrl:
    """Where satellites find the broker: the configured one, or the embedded one.

    For the embedded broker this carries no credentials: every client has its own account
    (:mod:`.broker`), and the server's comes from :attr:`EmbeddedBroker.client_url`.
    """
    if config.url is not None:
        url = MqttUrl.parse(config.url)
        username = config.username if config.username is not None else url.username
        password = config.password if config.password is not None else url.password
        return MqttUrl(url.host, url.port, username, password, url.tls)
    broker = config.broker
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(broker.host, broker.host)
    return MqttUrl(host, broker.port)


def embedded_broker(config: MqttConfig) -> EmbeddedBroker:
    """The embedded broker with an account for each satellite that has a password."""
    passwords = {sat_id: sat.password for sat_id, sat in config.satellites.items() if sat.password is not None}
    return EmbeddedBroker(config.broker, passwords, adopt_credentials=(config.username, config.password))


def broker_context() -> CleanupCtx:
    async def embedded_broker_ctx(app: web.Application) -> AsyncIterator[None]:
        config: ServerConfig = app[ServerContext.KEY].config
        broker = embedded_broker(config.mqtt)
        await broker.start()
        app[EmbeddedBroker.KEY] = broker
        try:
            yield
        finally:
            await broker.stop()

    return embedded_broker_ctx


def bridge_context(version: str | None) -> CleanupCtx:
    async def mqtt_bridge(app: web.Application) -> AsyncIterator[None]:
        ctx = app[ServerContext.KEY]
        mqtt = ctx.config.mqtt
        broker = app.get(EmbeddedBroker.KEY)
        url = broker.client_url if broker is not None else broker_url(mqtt)
        ours = broker is not None and broker.adopted is None
        settings = ClientSettings(
            url=url,
            server_id=mqtt.server_id,
            client_id=mqtt.client_id or f"hearth-server-{mqtt.server_id}",
            protocol="3.1.1" if ours else mqtt.protocol,  # amqtt speaks 3.1.1 only
            keepalive_s=mqtt.keepalive_s,
            reconnect_min_s=mqtt.reconnect_min_s,
            reconnect_max_s=mqtt.reconnect_max_s,
            ca_file=mqtt.tls.ca_file,
            cert_file=mqtt.tls.cert_file,
            key_file=mqtt.tls.key_file,
            tls_insecure=mqtt.tls.insecure,
            status=ServerStatus(mqtt.server_id, version=version, arbitration_window_ms=mqtt.arbitration_window_ms),
        )
        bridge: MqttBridge | None = None
        home_assistant: HomeAssistantTools | None = None

        def on_message(topic: str, payload: bytes) -> None:
            if home_assistant is not None and home_assistant.handle_message(topic, payload):
                return
            if bridge is not None:
                bridge.handle_message(topic, payload)

        def on_connected() -> None:
            if bridge is not None:
                bridge.on_connected()

        def on_disconnected(reason: str) -> None:
            if bridge is not None:
                bridge.on_disconnected(reason)

        client = MqttClient(settings, SUBSCRIPTIONS + HA_SUBSCRIPTIONS, on_message, on_connected=on_connected,
                            on_disconnected=on_disconnected)
        # Home Assistant's tools (custom_components/hearth publishes them): its own answer
        # comes a little before the session's tool timeout, so its words are the ones spoken.
        home_assistant = HomeAssistantTools(client.publish, timeout_s=0.9 * ctx.config.server.tool_timeout_s,
                                            realtime_sessions=ctx.config.server.tools_for_clients)
        ctx.tools.add(home_assistant)
        bridge = MqttBridge(ctx, mqtt, client.publish)
        # Announcements, start_conversation, the conversation agent and timers arrive with the tools.
        assist = HomeAssistantAssist(bridge, ctx.sessions, client.publish)
        home_assistant.on_event = assist.handle
        app[MqttBridge.KEY] = bridge
        app[HomeAssistantAssist.KEY] = assist
        app[MqttClient.KEY] = client
        client.start()
        if not await client.wait_connected(CONNECT_WAIT_S):
            _LOGGER.warning("no connection to the broker %s yet; still trying in the background", url.redacted())
        try:
            yield
        finally:
            ctx.tools.remove(home_assistant)
            home_assistant.on_event = None
            assist.close()
            home_assistant.close()
            bridge.close()
            await client.stop()

    return mqtt_bridge
