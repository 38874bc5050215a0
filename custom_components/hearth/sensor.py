"""What each satellite last heard."""

from __future__ import annotations

from homeassistant.components.sensor import SensorEntity, SensorEntityDescription
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from .entity import HearthSatelliteEntity, async_setup_satellite_platform

PARALLEL_UPDATES = 0

LAST_TRANSCRIPT = SensorEntityDescription(key="last_transcript", translation_key="last_transcript")


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback) -> None:
    async_setup_satellite_platform(
        hass, entry, async_add_entities, lambda hub, satellite: [HearthLastTranscript(hub, satellite, LAST_TRANSCRIPT)]
    )


class HearthLastTranscript(HearthSatelliteEntity, SensorEntity):
    """The last thing the satellite heard; its last answer is an attribute."""

    @property
    def native_value(self) -> str | None:
        activity = self.satellite.activity
        return activity.transcript[:255] if activity and activity.transcript else None

    @property
    def extra_state_attributes(self) -> dict[str, str | None]:
        activity = self.satellite.activity
        return {"response": activity.response if activity else None}
