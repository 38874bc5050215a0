"""The base of every per-satellite entity: device, availability, updates by dispatcher."""

from __future__ import annotations

from collections.abc import Callable

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from .const import DOMAIN
from .hub import HearthHub, Satellite, signal_new_satellite, signal_satellite_updated


class HearthSatelliteEntity(Entity):
    """An entity of one Hearth satellite's device."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, hub: HearthHub, satellite: Satellite, description: EntityDescription) -> None:
        self.hub = hub
        self.satellite = satellite
        self.entity_description = description
        self._attr_unique_id = f"{satellite.satellite_id}-{description.key}"
        self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, satellite.satellite_id)})

    @property
    def available(self) -> bool:
        return self.satellite.available and self.hub.server_online

    async def async_added_to_hass(self) -> None:
        await super().async_added_to_hass()
        entry_id = self.hub.entry.entry_id
        for signal in (signal_satellite_updated(entry_id, self.satellite.satellite_id), signal_satellite_updated(entry_id, "*")):
            self.async_on_remove(async_dispatcher_connect(self.hass, signal, self._handle_update))

    @callback
    def _handle_update(self) -> None:
        self.async_write_ha_state()


def async_setup_satellite_platform(
    hass: HomeAssistant,
    entry: ConfigEntry,
    async_add_entities: AddEntitiesCallback,
    build: Callable[[HearthHub, Satellite], list[Entity]],
) -> None:
    """Add a platform's entities for every satellite, now and whenever a new one appears."""
    hub: HearthHub = entry.runtime_data.hub

    @callback
    def add(satellite: Satellite) -> None:
        async_add_entities(build(hub, satellite))

    entry.async_on_unload(async_dispatcher_connect(hass, signal_new_satellite(entry.entry_id), add))
    for satellite in hub.satellites.values():
        add(satellite)
