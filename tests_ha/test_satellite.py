"""Announce, start_conversation, hearth.announce, the conversation agent, settings entities, diagnostics."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import patch

import pytest
from conftest import Published, agent_entity_id, fire, fire_satellite
from hearth.wire import (
    Announce,
    ConversationRequest,
    ConversationResponse,
    Mute,
    RequestDone,
    SatelliteActivity,
    SatelliteSettings,
    StartConversation,
    ha_topics,
    topics,
)
from homeassistant.components import conversation
from homeassistant.components.diagnostics import REDACTED
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry

SATELLITE = "assist_satellite.kitchen_satellite"


async def serve(hass: HomeAssistant, published: Published, kind, answer, count: int = 1):
    """Play the Hearth server: wait for the request, answer it."""
    request = await published.wait(hass, ha_topics.ha_event(), kind, count=count)
    fire(hass, ha_topics.ha_command(), answer(request))
    return request


async def test_announce_speaks_on_the_satellite(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    call = asyncio.ensure_future(
        hass.services.async_call("assist_satellite", "announce", {"entity_id": SATELLITE, "message": "Dinner is ready"}, blocking=True)
    )
    request = await serve(hass, published, Announce, lambda r: RequestDone(r.request_id))
    await call
    assert request.satellite_id == "kitchen" and request.text == "Dinner is ready" and request.preannounce


async def test_announce_failure_is_reported(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    call = asyncio.ensure_future(
        hass.services.async_call("assist_satellite", "announce", {"entity_id": SATELLITE, "message": "Hi", "preannounce": False}, blocking=True)
    )
    await serve(hass, published, Announce, lambda r: RequestDone(r.request_id, error="unavailable", message="The kitchen satellite is offline."))
    with pytest.raises(HomeAssistantError, match="kitchen satellite is offline"):
        await call
    with pytest.raises(HomeAssistantError):
        await hass.services.async_call("assist_satellite", "announce", {"entity_id": SATELLITE, "media_id": "media-source://x"}, blocking=True)


async def test_announce_times_out_when_the_server_does_not_answer(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    with patch("custom_components.hearth.hub.ANNOUNCE_TIMEOUT_SECONDS", 0.2), pytest.raises(HomeAssistantError, match="did not answer"):
        await hass.services.async_call("assist_satellite", "announce", {"entity_id": SATELLITE, "message": "Hi"}, blocking=True)


async def test_start_conversation(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    call = asyncio.ensure_future(
        hass.services.async_call(
            "assist_satellite", "start_conversation",
            {"entity_id": SATELLITE, "start_message": "Shall I close the blinds?", "extra_system_prompt": "It is late."},
            blocking=True,
        )
    )
    request = await serve(hass, published, StartConversation, lambda r: RequestDone(r.request_id))
    await call
    assert request.text == "Shall I close the blinds?" and request.extra_system_prompt == "It is late."
    with pytest.raises(HomeAssistantError):
        await hass.services.async_call("assist_satellite", "start_conversation", {"entity_id": SATELLITE, "start_media_id": "media-source://x"}, blocking=True)


async def test_hearth_announce_on_several_satellites(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    fire_satellite(hass, "bedroom", name="Bedroom satellite")
    await hass.async_block_till_done()
    call = asyncio.ensure_future(
        hass.services.async_call(
            "hearth", "announce", {"entity_id": [SATELLITE, "assist_satellite.bedroom_satellite"], "message": "Lights out"}, blocking=True
        )
    )
    first = await serve(hass, published, Announce, lambda r: RequestDone(r.request_id), count=1)
    second = await serve(hass, published, Announce, lambda r: RequestDone(r.request_id), count=2)
    await call
    assert {first.satellite_id, second.satellite_id} == {"kitchen", "bedroom"}
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call("hearth", "announce", {"entity_id": ["light.kitchen"], "message": "x"}, blocking=True)


async def test_announce_while_the_server_is_offline(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    fire(hass, topics.server_status("house"), '{"type":"server-status","server_id":"house","availability":"offline"}')
    await hass.async_block_till_done()
    with pytest.raises(HomeAssistantError, match="offline"):
        await entry.runtime_data.hub.async_announce("kitchen", "Hi")


async def test_conversation_agent(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    device = dr.async_get(hass).async_get_device(identifiers={("hearth", "kitchen")})
    task = asyncio.ensure_future(
        conversation.async_converse(hass, "turn on the kitchen light", None, Context(), agent_id=agent_entity_id(hass), device_id=device.id)
    )
    request = await serve(
        hass, published, ConversationRequest,
        lambda r: ConversationResponse(r.request_id, "Which one?", conversation_id="c1", continue_conversation=True),
    )
    result = await task
    assert request.text == "turn on the kitchen light" and request.satellite_id == "kitchen"
    assert result.response.speech["plain"]["speech"] == "Which one?"
    assert result.conversation_id == "c1" and result.continue_conversation

    task = asyncio.ensure_future(conversation.async_converse(hass, "hello", "c1", Context(), agent_id=agent_entity_id(hass)))
    await serve(hass, published, ConversationRequest, lambda r: ConversationResponse(r.request_id, "Sorry, I am busy.", error="busy"), count=2)
    result = await task
    assert result.response.error_code is not None and result.response.speech["plain"]["speech"] == "Sorry, I am busy."


async def test_conversation_agent_when_the_server_is_silent(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    with patch.object(type(entry.runtime_data.hub), "response_timeout", 0.2):
        result = await conversation.async_converse(hass, "hello", None, Context(), agent_id=agent_entity_id(hass))
    assert result.response.error_code is not None
    assert "did not answer" in result.response.speech["plain"]["speech"]


async def test_mute_switch_and_wake_sensitivity(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    await hass.services.async_call("switch", "turn_on", {"entity_id": "switch.kitchen_satellite_mute"}, blocking=True)
    assert published.messages(topics.satellite_command("kitchen"), Mute)[-1] == Mute(True)
    assert published.calls(ha_topics.ha_settings("kitchen"))[-1][1] is True  # retained
    await hass.services.async_call(
        "select", "select_option", {"entity_id": "select.kitchen_satellite_wake_word_sensitivity", "option": "high"}, blocking=True
    )
    settings = published.messages(ha_topics.ha_settings("kitchen"), SatelliteSettings)[-1]
    assert settings == SatelliteSettings("kitchen", muted=True, wake_sensitivity="high")
    assert hass.states.get("select.kitchen_satellite_wake_word_sensitivity").state == "high"
    await hass.services.async_call("switch", "turn_off", {"entity_id": "switch.kitchen_satellite_mute"}, blocking=True)
    assert published.messages(topics.satellite_command("kitchen"), Mute)[-1] == Mute(False)
    # The satellite's own status is the truth for mute.
    fire_satellite(hass, muted=True, state="muted")
    await hass.async_block_till_done()
    assert hass.states.get("switch.kitchen_satellite_mute").state == "on"
    # Retained settings are read back (after a restart of Home Assistant).
    fire(hass, ha_topics.ha_settings("kitchen"), SatelliteSettings("kitchen", wake_sensitivity="low"))
    await hass.async_block_till_done()
    assert hass.states.get("select.kitchen_satellite_wake_word_sensitivity").state == "low"


async def test_last_transcript_sensor(hass: HomeAssistant, entry: MockConfigEntry):
    fire(hass, ha_topics.ha_activity("kitchen"), SatelliteActivity("kitchen", transcript="turn on the light", response="Done."))
    await hass.async_block_till_done()
    state = hass.states.get("sensor.kitchen_satellite_last_transcript")
    assert state.state == "turn on the light" and state.attributes["response"] == "Done."


async def test_assist_satellite_configuration(hass: HomeAssistant, entry: MockConfigEntry):
    entity = hass.data["assist_satellite"].get_entity(SATELLITE)
    config = entity.async_get_configuration()
    assert config.active_wake_words == ["hey_jarvis"] and config.available_wake_words[0].wake_word == "hey jarvis"
    with pytest.raises(HomeAssistantError):
        await entity.async_set_configuration(config)
    entity.on_pipeline_event(None)


async def test_diagnostics_are_redacted(hass: HomeAssistant, entry: MockConfigEntry, hass_client: Any):
    fire(hass, ha_topics.ha_activity("kitchen"), SatelliteActivity("kitchen", transcript="my secret", response="ok"))
    await hass.async_block_till_done()
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["entry"]["data"] == {"server_id": "house"}
    assert diagnostics["server"]["availability"] == "online"
    kitchen = diagnostics["satellites"]["kitchen"]
    assert kitchen["status"]["name"] == "Kitchen satellite"
    assert kitchen["activity"]["transcript"] == REDACTED and kitchen["activity"]["response"] == REDACTED
    assert kitchen["catalog_revision"]
    assert "my secret" not in str(diagnostics)
