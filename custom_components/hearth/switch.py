"""The mute switch of each satellite."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from .entity import HearthSatelliteEntity, async_setup_satellite_platform

PARALLEL_UPDATES = 0

MUTE = SwitchEntityDescription(key="mute", translation_key="mute", entity_category=EntityCategory.CONFIG)


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback) -> None:
    async_setup_satellite_platform(
        hass, entry, async_add_entities, lambda hub, satellite: [HearthMuteSwitch(hub, satellite, MUTE)]
    )


class HearthMuteSwitch(HearthSatelliteEntity, SwitchEntity):
    """On = the satellite ignores its wake word and streams nothing."""

    @property
    def is_on(self) -> bool | None:
        if self.satellite.status.muted is not None:
            return self.satellite.status.muted
        return self.satellite.settings.muted if self.satellite.settings else None

    async def async_turn_on(self, **kwargs: Any) -> None:
        await self.hub.async_set_muted(self.satellite.satellite_id, True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        await self.hub.async_set_muted(self.satellite.satellite_id, False)
