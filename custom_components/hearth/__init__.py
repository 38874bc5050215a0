"""Hearth: a self-hosted voice assistant server's satellites as Assist satellites, and its tools.

A thin integration: the wire protocol is the ``hearth-wire`` distribution
(``hearth.wire``, pinned in manifest.json); this package only maps it onto
Home Assistant (config entry, devices, entities, the LLM API, timers).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import voluptuous as vol

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import ATTR_ENTITY_ID, Platform
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.exceptions import ConfigEntryNotReady, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.typing import ConfigType

from .const import DOMAIN
from .hub import HearthHub

PLATFORMS = [Platform.ASSIST_SATELLITE, Platform.CONVERSATION, Platform.SELECT, Platform.SENSOR, Platform.SWITCH]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

SERVICE_ANNOUNCE = "announce"
ATTR_MESSAGE = "message"
ATTR_PREANNOUNCE = "preannounce"

ANNOUNCE_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_ENTITY_ID): cv.entity_ids,
        vol.Required(ATTR_MESSAGE): cv.string,
        vol.Optional(ATTR_PREANNOUNCE, default=True): cv.boolean,
    }
)


@dataclass
class HearthData:
    """What a loaded entry keeps (entry.runtime_data)."""

    hub: HearthHub


type HearthConfigEntry = ConfigEntry[HearthData]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register hearth.announce: one message on several satellites at once."""

    async def announce(call: ServiceCall) -> None:
        registry = er.async_get(hass)
        targets: list[tuple[HearthHub, str]] = []
        for entity_id in call.data[ATTR_ENTITY_ID]:
            entry = registry.async_get(entity_id)
            hub = _hub_for_entity(hass, entry)
            satellite = hub.satellite_for_device(entry.device_id) if hub and entry else None
            if hub is None or satellite is None:
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="not_a_satellite",
                    translation_placeholders={"entity_id": entity_id},
                )
            targets.append((hub, satellite.satellite_id))
        await asyncio.gather(
            *(
                hub.async_announce(satellite_id, call.data[ATTR_MESSAGE], preannounce=call.data[ATTR_PREANNOUNCE])
                for hub, satellite_id in targets
            )
        )

    hass.services.async_register(DOMAIN, SERVICE_ANNOUNCE, announce, schema=ANNOUNCE_SCHEMA)
    return True


def _hub_for_entity(hass: HomeAssistant, entry: er.RegistryEntry | None) -> HearthHub | None:
    if entry is None or entry.platform != DOMAIN or entry.config_entry_id is None:
        return None
    config_entry = hass.config_entries.async_get_entry(entry.config_entry_id)
    if config_entry is None or not hasattr(config_entry, "runtime_data"):
        return None
    return config_entry.runtime_data.hub


async def async_setup_entry(hass: HomeAssistant, entry: HearthConfigEntry) -> bool:
    if not await mqtt.async_wait_for_mqtt_client(hass):
        raise ConfigEntryNotReady(translation_domain=DOMAIN, translation_key="mqtt_unavailable")
    hub = HearthHub(hass, entry)
    entry.runtime_data = HearthData(hub)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    await hub.async_start()
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    return True


async def _async_options_updated(hass: HomeAssistant, entry: HearthConfigEntry) -> None:
    await hass.config_entries.async_reload(entry.entry_id)


async def async_unload_entry(hass: HomeAssistant, entry: HearthConfigEntry) -> bool:
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.hub.async_stop()
    return unloaded


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: HearthConfigEntry, device: dr.DeviceEntry
) -> bool:
    """A satellite's device may be removed while it is offline (it comes back if it reappears)."""
    hub = entry.runtime_data.hub
    if hub.server_identifier in device.identifiers:
        return False
    for domain, satellite_id in device.identifiers:
        if domain != DOMAIN:
            continue
        satellite = hub.satellites.get(satellite_id)
        if satellite is not None and satellite.available:
            return False
        hub.async_forget_satellite(satellite_id)
    return True
