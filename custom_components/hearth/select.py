"""The wake-word sensitivity of each satellite."""

from __future__ import annotations

from hearth.wire import WakeSensitivity
from homeassistant.components.select import SelectEntity, SelectEntityDescription
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from .entity import HearthSatelliteEntity, async_setup_satellite_platform

PARALLEL_UPDATES = 0

WAKE_SENSITIVITY = SelectEntityDescription(
    key="wake_sensitivity",
    translation_key="wake_sensitivity",
    entity_category=EntityCategory.CONFIG,
    options=list(WakeSensitivity.ALL),
)


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback) -> None:
    async_setup_satellite_platform(
        hass, entry, async_add_entities, lambda hub, satellite: [HearthWakeSensitivity(hub, satellite, WAKE_SENSITIVITY)]
    )


class HearthWakeSensitivity(HearthSatelliteEntity, SelectEntity):
    """How readily the satellite's wake word fires (it maps the level to its own threshold)."""

    @property
    def current_option(self) -> str | None:
        settings = self.satellite.settings
        if settings and settings.wake_sensitivity:
            return settings.wake_sensitivity
        return WakeSensitivity.MEDIUM

    async def async_select_option(self, option: str) -> None:
        await self.hub.async_set_wake_sensitivity(self.satellite.satellite_id, option)
