"""The Hearth conversation agent: typed (or other satellites') turns answered by the Hearth server."""

from __future__ import annotations

from typing import Literal

from homeassistant.components import conversation
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import MATCH_ALL
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import intent
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from .hub import HearthHub

PARALLEL_UPDATES = 0


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback) -> None:
    async_add_entities([HearthConversationAgent(entry.runtime_data.hub)])


class HearthConversationAgent(conversation.ConversationEntity):
    """Sends the text to the Hearth server over MQTT; tool calls come back as ``tool-call``s."""

    _attr_has_entity_name = True
    _attr_name = None
    _attr_translation_key = "agent"

    def __init__(self, hub: HearthHub) -> None:
        self.hub = hub
        self._attr_unique_id = f"{hub.server_id}-conversation"
        self._attr_device_info = DeviceInfo(identifiers={hub.server_identifier})

    @property
    def supported_languages(self) -> list[str] | Literal["*"]:
        return MATCH_ALL

    async def async_process(self, user_input: conversation.ConversationInput) -> conversation.ConversationResult:
        satellite = self.hub.satellite_for_device(user_input.device_id)
        response = intent.IntentResponse(language=user_input.language)
        try:
            answer = await self.hub.async_converse(
                user_input.text,
                conversation_id=user_input.conversation_id,
                language=user_input.language,
                satellite_id=satellite.satellite_id if satellite else None,
                extra_system_prompt=user_input.extra_system_prompt,
            )
        except HomeAssistantError as err:
            response.async_set_error(intent.IntentResponseErrorCode.UNKNOWN, str(err))
            return conversation.ConversationResult(response=response, conversation_id=user_input.conversation_id)
        if answer.error:
            response.async_set_error(intent.IntentResponseErrorCode.UNKNOWN, answer.text)
        else:
            response.async_set_speech(answer.text)
        return conversation.ConversationResult(
            response=response,
            conversation_id=answer.conversation_id or user_input.conversation_id,
            continue_conversation=answer.continue_conversation,
        )
