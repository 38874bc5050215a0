"""Each Hearth satellite as an Assist satellite: its state, announce and start_conversation.

The speech itself never passes through Home Assistant: an announcement is
sent to the Hearth server as text, which speaks it on the satellite with its
own voice and answers when the satellite has played it.
"""

from __future__ import annotations

from typing import Any

from hearth.wire import SatelliteState
from homeassistant.components.assist_pipeline import PipelineEvent
from homeassistant.components.assist_satellite import (
    AssistSatelliteConfiguration,
    AssistSatelliteEntity,
    AssistSatelliteEntityDescription,
    AssistSatelliteEntityFeature,
    AssistSatelliteWakeWord,
)
from homeassistant.components.assist_satellite.entity import AssistSatelliteState
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from .const import DOMAIN
from .entity import HearthSatelliteEntity, async_setup_satellite_platform

PARALLEL_UPDATES = 0

SATELLITE = AssistSatelliteEntityDescription(key="assist_satellite", translation_key="assist_satellite", name=None)

# The satellite's own state (its retained status) as an Assist satellite state.
_STATES: dict[str | None, AssistSatelliteState] = {
    SatelliteState.IDLE: AssistSatelliteState.IDLE,
    SatelliteState.LISTENING: AssistSatelliteState.LISTENING,
    SatelliteState.THINKING: AssistSatelliteState.PROCESSING,
    SatelliteState.SPEAKING: AssistSatelliteState.RESPONDING,
    SatelliteState.MUTED: AssistSatelliteState.IDLE,
    SatelliteState.ERROR: AssistSatelliteState.IDLE,
}


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback) -> None:
    async_setup_satellite_platform(
        hass, entry, async_add_entities, lambda hub, satellite: [HearthAssistSatellite(hub, satellite, SATELLITE)]
    )


class HearthAssistSatellite(HearthSatelliteEntity, AssistSatelliteEntity):
    """A Hearth satellite. Its conversations run on the Hearth server, not in an HA pipeline."""

    _attr_name = None
    _attr_supported_features = AssistSatelliteEntityFeature.ANNOUNCE | AssistSatelliteEntityFeature.START_CONVERSATION

    async def async_added_to_hass(self) -> None:
        await super().async_added_to_hass()
        self._sync_state()

    @callback
    def _handle_update(self) -> None:
        self._sync_state()

    @callback
    def _sync_state(self) -> None:
        self._set_state(_STATES.get(self.satellite.status.state, AssistSatelliteState.IDLE))

    @callback
    def async_get_configuration(self) -> AssistSatelliteConfiguration:
        capabilities = self.satellite.status.capabilities
        words = list(capabilities.wake_words) if capabilities else []
        return AssistSatelliteConfiguration(
            available_wake_words=[AssistSatelliteWakeWord(id=w, wake_word=w.replace("_", " "), trained_languages=[]) for w in words],
            active_wake_words=words,
            max_active_wake_words=len(words),
        )

    async def async_set_configuration(self, config: AssistSatelliteConfiguration) -> None:
        raise HomeAssistantError(translation_domain=DOMAIN, translation_key="wake_words_fixed")

    def on_pipeline_event(self, event: PipelineEvent) -> None:
        """Hearth satellites do not run Home Assistant pipelines."""

    async def async_internal_announce(
        self, message: str | None = None, media_id: str | None = None, preannounce: bool = True, **_: Any
    ) -> None:
        """Speak ``message`` on the satellite (Home Assistant's TTS is not involved)."""
        if not message:
            raise HomeAssistantError(translation_domain=DOMAIN, translation_key="text_only")
        await self.hub.async_announce(self.satellite.satellite_id, message, preannounce=preannounce)

    async def async_internal_start_conversation(
        self,
        start_message: str | None = None,
        start_media_id: str | None = None,
        extra_system_prompt: str | None = None,
        preannounce: bool = True,
        **_: Any,
    ) -> None:
        """Speak ``start_message``, then the satellite listens and the Hearth server answers."""
        if not start_message and start_media_id:
            raise HomeAssistantError(translation_domain=DOMAIN, translation_key="text_only")
        await self.hub.async_start_conversation(
            self.satellite.satellite_id,
            start_message,
            extra_system_prompt=extra_system_prompt or start_message,
            preannounce=preannounce,
        )
