"""The one object per config entry that talks to the Hearth server over Home Assistant's MQTT.

It keeps the satellites it has seen (from their retained status), publishes
their tool catalogs, answers the server's tool calls, forwards announcements,
conversation turns and timer events, and raises a repair issue while the
server is unreachable. Every payload is built and parsed by ``hearth.wire``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
import logging
from typing import Any
import uuid

from hearth.wire import (
    PROTOCOL_VERSION,
    Announce,
    ConversationRequest,
    ConversationResponse,
    IntegrationStatus,
    Mute,
    ProtocolError,
    RequestDone,
    SatelliteActivity,
    SatelliteSettings,
    SatelliteStatus,
    ServerStatus,
    StartConversation,
    TimerCancelled,
    TimerFinished,
    TimerStarted,
    TimerUpdated,
    ToolCall,
    ToolCatalog,
    UnknownMessageType,
    decode_satellite_status,
    decode_server_status,
    ha_topics,
    topics,
)
from hearth.wire.message import Message
from homeassistant.components import mqtt
from homeassistant.components.homeassistant.exposed_entities import async_listen_entity_updates
from homeassistant.components.intent import TimerEventType, TimerInfo, async_register_timer_handler
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.debounce import Debouncer
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.event import async_call_later

from .const import (
    ANNOUNCE_TIMEOUT_SECONDS,
    ASSISTANT,
    CATALOG_REFRESH_COOLDOWN,
    CONF_DEVICELESS_TOOLS,
    CONF_LLM_HASS_API,
    CONF_RESPONSE_TIMEOUT,
    CONF_SERVER_ID,
    DEFAULT_LLM_API,
    DEFAULT_RESPONSE_TIMEOUT,
    DOMAIN,
    ISSUE_SERVER_UNREACHABLE,
    STATUS_WAIT_SECONDS,
)
from .tools import async_build_catalog, async_execute

_LOGGER = logging.getLogger(__name__)

INTEGRATION_VERSION = "0.1.0"

# The events registries fire when names, areas or devices change.
_REGISTRY_EVENTS = ("entity_registry_updated", "area_registry_updated", "device_registry_updated", "floor_registry_updated")


def signal_new_satellite(entry_id: str) -> str:
    return f"{DOMAIN}_{entry_id}_new_satellite"


def signal_satellite_updated(entry_id: str, satellite_id: str) -> str:
    return f"{DOMAIN}_{entry_id}_satellite_{satellite_id}"


@dataclass
class Satellite:
    """What the hub knows about one satellite."""

    satellite_id: str
    device_id: str
    status: SatelliteStatus
    activity: SatelliteActivity | None = None
    settings: SatelliteSettings | None = None
    catalog_revision: str | None = None
    unregister_timers: CALLBACK_TYPE | None = None

    @property
    def available(self) -> bool:
        return self.status.online


@dataclass
class HubStats:
    """Counters for diagnostics."""

    tool_calls: int = 0
    tool_errors: int = 0
    catalogs_published: int = 0
    bad_payloads: int = 0
    last_bad_payload: str | None = None
    recent_calls: list[dict[str, Any]] = field(default_factory=list)


class HearthHub:
    """The integration's MQTT side for one Hearth server."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry) -> None:
        self.hass = hass
        self.entry = entry
        self.server_id: str = entry.data[CONF_SERVER_ID]
        self.server_status: ServerStatus | None = None
        self.satellites: dict[str, Satellite] = {}
        self.stats = HubStats()
        self.deviceless_catalog_revision: str | None = None
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._unsubscribe: list[CALLBACK_TYPE] = []
        self._published_catalogs: set[str | None] = set()
        self._refresh = Debouncer(
            hass, _LOGGER, cooldown=CATALOG_REFRESH_COOLDOWN, immediate=True, function=self.async_publish_catalogs
        )
        # What a command from the server does, by message type.
        self._command_handlers: dict[type[Message], Callable[[Any], None]] = {
            ToolCall: self._on_tool_call,
            RequestDone: self._resolve_pending,
            ConversationResponse: self._resolve_pending,
        }

    # -- options ---------------------------------------------------------------
    @property
    def llm_api(self) -> str:
        return self.entry.options.get(CONF_LLM_HASS_API, DEFAULT_LLM_API)

    @property
    def deviceless_tools(self) -> bool:
        return self.entry.options.get(CONF_DEVICELESS_TOOLS, True)

    @property
    def response_timeout(self) -> float:
        return float(self.entry.options.get(CONF_RESPONSE_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT))

    @property
    def server_online(self) -> bool:
        return self.server_status is not None and self.server_status.online

    @property
    def server_identifier(self) -> tuple[str, str]:
        return (DOMAIN, f"server:{self.server_id}")

    # -- lifecycle ---------------------------------------------------------------
    async def async_start(self) -> None:
        """Subscribe, announce ourselves, and publish the first catalogs."""
        if not await mqtt.async_wait_for_mqtt_client(self.hass):
            raise HomeAssistantError("MQTT is not available")
        dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.entry.entry_id,
            identifiers={self.server_identifier},
            manufacturer="Hearth",
            model="Hearth server",
            name=self.entry.title,
            entry_type=dr.DeviceEntryType.SERVICE,
        )
        subscriptions: list[tuple[str, Callable[[mqtt.ReceiveMessage], None]]] = [
            (topics.server_status(self.server_id), self._on_server_status),
            (topics.all_satellites(topics.SatelliteChannel.STATUS), self._on_satellite_status),
            (ha_topics.ha_command(), self._on_command),
            (ha_topics.all_ha_activity(), self._on_activity),
            (ha_topics.all_ha_settings(), self._on_settings),
        ]
        for topic, handler in subscriptions:
            self._unsubscribe.append(await mqtt.async_subscribe(self.hass, topic, handler, qos=1, encoding=None))
        for event in _REGISTRY_EVENTS:
            self._unsubscribe.append(self.hass.bus.async_listen(event, self._schedule_refresh))
        self._unsubscribe.append(self.hass.bus.async_listen("state_changed", self._on_state_added_or_removed))
        self._unsubscribe.append(async_listen_entity_updates(self.hass, ASSISTANT, self._schedule_refresh))
        self._unsubscribe.append(async_call_later(self.hass, STATUS_WAIT_SECONDS, self._check_server_seen))
        await self._publish(ha_topics.ha_status(), IntegrationStatus("online", INTEGRATION_VERSION, HA_VERSION), retain=True)
        # The first catalogs go out when the server's retained status arrives (`_on_server_status`):
        # by then the broker has our subscriptions, so a call the server sends at once is not lost
        # (Home Assistant's MQTT client subscribes in batches, after `async_subscribe` returns).

    async def async_stop(self) -> None:
        """Unsubscribe and take back every retained message we published."""
        self._refresh.async_cancel()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for satellite in self.satellites.values():
            if satellite.unregister_timers:
                satellite.unregister_timers()
                satellite.unregister_timers = None
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()
        for satellite_id in list(self._published_catalogs):
            await mqtt.async_publish(self.hass, ha_topics.ha_tools(satellite_id), "", qos=1, retain=True)
        self._published_catalogs.clear()
        await self._publish(ha_topics.ha_status(), IntegrationStatus("offline", INTEGRATION_VERSION, HA_VERSION), retain=True)
        ir.async_delete_issue(self.hass, DOMAIN, self._issue_id)

    # -- publishing --------------------------------------------------------------
    async def _publish(self, topic: str, message: Message, *, retain: bool = False) -> None:
        await mqtt.async_publish(self.hass, topic, message.to_json().decode(), qos=1, retain=retain)

    async def async_publish_catalogs(self) -> None:
        """Build and publish (retained) every catalog whose content changed."""
        for satellite in list(self.satellites.values()):
            await self._publish_satellite_catalog(satellite)
        if self.deviceless_tools:
            try:
                catalog = await async_build_catalog(self.hass, self.llm_api, satellite_id=None, device_id=None)
            except HomeAssistantError as err:
                _LOGGER.warning("No device-less tools: %s", err)
                return
            if catalog.revision != self.deviceless_catalog_revision:
                self.deviceless_catalog_revision = catalog.revision
                await self._publish_catalog(catalog)

    async def _publish_satellite_catalog(self, satellite: Satellite) -> None:
        try:
            catalog = await async_build_catalog(
                self.hass, self.llm_api, satellite_id=satellite.satellite_id, device_id=satellite.device_id
            )
        except HomeAssistantError as err:  # e.g. the chosen LLM API was removed
            _LOGGER.warning("No tools for satellite %s: %s", satellite.satellite_id, err)
            return
        if catalog.revision != satellite.catalog_revision and satellite.satellite_id in self.satellites:
            satellite.catalog_revision = catalog.revision
            await self._publish_catalog(catalog)

    async def _publish_catalog(self, catalog: ToolCatalog) -> None:
        self._published_catalogs.add(catalog.satellite_id)
        self.stats.catalogs_published += 1
        await self._publish(ha_topics.ha_tools(catalog.satellite_id), catalog, retain=True)

    @callback
    def _schedule_refresh(self, *_: Any) -> None:
        self.hass.async_create_task(self._refresh.async_call())

    @callback
    def _on_state_added_or_removed(self, event: Event) -> None:
        # A new or removed entity changes what is exposed; attribute changes do not.
        if event.data.get("old_state") is None or event.data.get("new_state") is None:
            self._schedule_refresh()

    # -- incoming ----------------------------------------------------------------
    def _bad_payload(self, msg: mqtt.ReceiveMessage, err: ProtocolError) -> None:
        self.stats.bad_payloads += 1
        self.stats.last_bad_payload = f"{msg.topic}: {err}"
        if isinstance(err, UnknownMessageType):
            _LOGGER.debug("Ignoring an unknown message on %s: %s", msg.topic, err)
        else:
            _LOGGER.warning("Ignoring a malformed message on %s: %s", msg.topic, err)

    @callback
    def _on_server_status(self, msg: mqtt.ReceiveMessage) -> None:
        if not msg.payload:
            return
        try:
            self.server_status = decode_server_status(msg.payload, topic=msg.topic)
        except ProtocolError as err:
            self._bad_payload(msg, err)
            return
        if self.server_online:
            ir.async_delete_issue(self.hass, DOMAIN, self._issue_id)
            # A server that (re)starts gets fresh catalogs even if retained ones were lost.
            self._published_catalogs_stale()
        else:
            self._raise_unreachable()
        async_dispatcher_send(self.hass, signal_satellite_updated(self.entry.entry_id, "*"))

    def _published_catalogs_stale(self) -> None:
        for satellite in self.satellites.values():
            satellite.catalog_revision = None
        self.deviceless_catalog_revision = None
        self._schedule_refresh()

    @property
    def _issue_id(self) -> str:
        return f"{ISSUE_SERVER_UNREACHABLE}_{self.entry.entry_id}"

    def _raise_unreachable(self) -> None:
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            self._issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key=ISSUE_SERVER_UNREACHABLE,
            translation_placeholders={"server_id": self.server_id},
        )

    @callback
    def _check_server_seen(self, _now: Any) -> None:
        if not self.server_online:
            _LOGGER.warning("Hearth server %s is not online", self.server_id)
            self._raise_unreachable()

    @callback
    def _on_satellite_status(self, msg: mqtt.ReceiveMessage) -> None:
        if not msg.payload:
            return
        try:
            status = decode_satellite_status(msg.payload, topic=msg.topic)
        except ProtocolError as err:
            self._bad_payload(msg, err)
            return
        if status.protocol != PROTOCOL_VERSION:
            _LOGGER.debug("Ignoring satellite %s speaking protocol %s", status.satellite_id, status.protocol)
            return
        satellite = self.satellites.get(status.satellite_id)
        if satellite is None:
            self._add_satellite(status)
            return
        # The last will carries only availability: keep what we knew.
        if not status.online:
            status = SatelliteStatus(
                satellite.status.satellite_id,
                availability=status.availability,
                name=satellite.status.name,
                area=satellite.status.area,
                version=satellite.status.version,
                capabilities=satellite.status.capabilities,
            )
        satellite.status = status
        self._update_device(satellite)
        async_dispatcher_send(self.hass, signal_satellite_updated(self.entry.entry_id, status.satellite_id))

    def _add_satellite(self, status: SatelliteStatus) -> None:
        device = dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.entry.entry_id,
            identifiers={(DOMAIN, status.satellite_id)},
            manufacturer="Hearth",
            model="Hearth satellite",
            name=status.name or status.satellite_id,
            sw_version=status.version,
            suggested_area=status.area,
            via_device=self.server_identifier,
        )
        satellite = Satellite(status.satellite_id, device.id, status)
        satellite.unregister_timers = async_register_timer_handler(
            self.hass, device.id, lambda event_type, timer: self._on_timer(satellite, event_type, timer)
        )
        self.satellites[status.satellite_id] = satellite
        async_dispatcher_send(self.hass, signal_new_satellite(self.entry.entry_id), satellite)
        # A new satellite gets its tools at once; later changes are coalesced.
        self.entry.async_create_background_task(
            self.hass, self._publish_satellite_catalog(satellite), f"{DOMAIN} catalog {satellite.satellite_id}"
        )

    def _update_device(self, satellite: Satellite) -> None:
        if satellite.status.version:
            dr.async_get(self.hass).async_update_device(satellite.device_id, sw_version=satellite.status.version)

    @callback
    def async_forget_satellite(self, satellite_id: str) -> None:
        """The user removed the satellite's device."""
        satellite = self.satellites.pop(satellite_id, None)
        if satellite is None:
            return
        if satellite.unregister_timers:
            satellite.unregister_timers()
        if satellite_id in self._published_catalogs:
            self._published_catalogs.discard(satellite_id)
            self.hass.async_create_task(
                mqtt.async_publish(self.hass, ha_topics.ha_tools(satellite_id), "", qos=1, retain=True)
            )

    @callback
    def _on_activity(self, msg: mqtt.ReceiveMessage) -> None:
        if not msg.payload:
            return
        try:
            activity = ha_topics.decode_satellite_activity(msg.payload, topic=msg.topic)
        except ProtocolError as err:
            self._bad_payload(msg, err)
            return
        if (satellite := self.satellites.get(activity.satellite_id)) is not None:
            satellite.activity = activity
            async_dispatcher_send(self.hass, signal_satellite_updated(self.entry.entry_id, activity.satellite_id))

    @callback
    def _on_settings(self, msg: mqtt.ReceiveMessage) -> None:
        if not msg.payload:
            return
        try:
            settings = ha_topics.decode_satellite_settings(msg.payload, topic=msg.topic)
        except ProtocolError as err:
            self._bad_payload(msg, err)
            return
        if (satellite := self.satellites.get(settings.satellite_id)) is not None:
            satellite.settings = settings
            async_dispatcher_send(self.hass, signal_satellite_updated(self.entry.entry_id, settings.satellite_id))

    @callback
    def _on_command(self, msg: mqtt.ReceiveMessage) -> None:
        try:
            command = ha_topics.decode_ha_command(msg.payload, topic=msg.topic)
        except ProtocolError as err:
            self._bad_payload(msg, err)
            return
        self._command_handlers[type(command)](command)

    # -- tool calls --------------------------------------------------------------
    @callback
    def _on_tool_call(self, call: ToolCall) -> None:
        self.entry.async_create_background_task(self.hass, self._run_tool_call(call), f"{DOMAIN} tool {call.call_id}")

    async def _run_tool_call(self, call: ToolCall) -> None:
        satellite = self.satellites.get(call.satellite_id) if call.satellite_id else None
        result = await async_execute(self.hass, self.llm_api, call, satellite.device_id if satellite else None)
        self.stats.tool_calls += 1
        if not result.ok:
            self.stats.tool_errors += 1
        self.stats.recent_calls = [
            *self.stats.recent_calls[-9:],
            {"name": call.name, "satellite_id": call.satellite_id, "error": result.error},
        ]
        await self._publish(ha_topics.ha_event(), result)

    # -- requests that wait for an answer ------------------------------------------
    @callback
    def _resolve_pending(self, answer: RequestDone | ConversationResponse) -> None:
        future = self._pending.get(answer.request_id)
        if future is not None and not future.done():
            future.set_result(answer)

    async def _request(self, message: Message, request_id: str, timeout: float) -> Message:
        if not self.server_online:
            raise HomeAssistantError(f"The Hearth server {self.server_id} is offline")
        future: asyncio.Future[Message] = self.hass.loop.create_future()
        self._pending[request_id] = future
        try:
            await self._publish(ha_topics.ha_event(), message)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError as err:
            raise HomeAssistantError(f"The Hearth server did not answer within {timeout:.0f} s") from err
        finally:
            self._pending.pop(request_id, None)

    def satellite_for_device(self, device_id: str | None) -> Satellite | None:
        return next((s for s in self.satellites.values() if s.device_id == device_id), None) if device_id else None

    async def async_announce(self, satellite_id: str, text: str, *, preannounce: bool = True) -> None:
        request_id = uuid.uuid4().hex
        done = await self._request(Announce(request_id, satellite_id, text, preannounce), request_id, ANNOUNCE_TIMEOUT_SECONDS)
        _raise_if_failed(done)

    async def async_start_conversation(
        self, satellite_id: str, text: str | None, *, extra_system_prompt: str | None, preannounce: bool = True
    ) -> None:
        request_id = uuid.uuid4().hex
        message = StartConversation(request_id, satellite_id, text or None, extra_system_prompt, preannounce)
        done = await self._request(message, request_id, ANNOUNCE_TIMEOUT_SECONDS)
        _raise_if_failed(done)

    async def async_converse(
        self,
        text: str,
        *,
        conversation_id: str | None,
        language: str | None,
        satellite_id: str | None,
        extra_system_prompt: str | None,
    ) -> ConversationResponse:
        request_id = uuid.uuid4().hex
        message = ConversationRequest(request_id, text, conversation_id, language, satellite_id, extra_system_prompt)
        answer = await self._request(message, request_id, self.response_timeout)
        assert isinstance(answer, ConversationResponse)
        return answer

    # -- satellite settings --------------------------------------------------------
    async def async_set_muted(self, satellite_id: str, muted: bool) -> None:
        await self._publish(topics.satellite_command(satellite_id), Mute(muted))
        await self._publish_settings(satellite_id, muted=muted)

    async def async_set_wake_sensitivity(self, satellite_id: str, sensitivity: str) -> None:
        await self._publish_settings(satellite_id, wake_sensitivity=sensitivity)

    async def _publish_settings(self, satellite_id: str, **changes: Any) -> None:
        satellite = self.satellites[satellite_id]
        current = satellite.settings or SatelliteSettings(satellite_id)
        values = {"muted": current.muted, "wake_sensitivity": current.wake_sensitivity, **changes}
        satellite.settings = SatelliteSettings(satellite_id, **values)
        await self._publish(ha_topics.ha_settings(satellite_id), satellite.settings, retain=True)
        async_dispatcher_send(self.hass, signal_satellite_updated(self.entry.entry_id, satellite_id))

    # -- timers --------------------------------------------------------------------
    @callback
    def _on_timer(self, satellite: Satellite, event_type: TimerEventType, timer: TimerInfo) -> None:
        build = _TIMER_MESSAGES[event_type]
        message = build(satellite.satellite_id, timer)
        self.hass.async_create_task(self._publish(ha_topics.ha_event(), message))


def _raise_if_failed(done: Message) -> None:
    if isinstance(done, RequestDone) and not done.ok:
        raise HomeAssistantError(done.message or f"The Hearth server could not do it ({done.error})")


_TIMER_MESSAGES: dict[TimerEventType, Callable[[str, TimerInfo], Message]] = {
    TimerEventType.STARTED: lambda sid, t: TimerStarted(sid, t.id, total_seconds=t.seconds, name=t.name),
    TimerEventType.UPDATED: lambda sid, t: TimerUpdated(
        sid, t.id, seconds_left=t.seconds_left, is_active=t.is_active, total_seconds=t.created_seconds, name=t.name
    ),
    TimerEventType.CANCELLED: lambda sid, t: TimerCancelled(sid, t.id, name=t.name),
    TimerEventType.FINISHED: lambda sid, t: TimerFinished(sid, t.id, total_seconds=t.created_seconds, name=t.name),
}
