"""The published catalog, and tool calls run through Home Assistant's LLM API (and only it)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Published, catalog_json, fire
from custom_components.hearth import tools
from custom_components.hearth.const import DOMAIN
from hearth.wire import TimerCancelled, TimerFinished, TimerStarted, ToolCall, ToolCatalog, ToolResult, ha_topics
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import intent
from pytest_homeassistant_custom_component.common import MockConfigEntry


async def call_tool(hass: HomeAssistant, published: Published, name: str, arguments: dict[str, Any], *, satellite: str | None = "kitchen", call_id: str = "call_1") -> ToolResult:
    before = len(published.messages(ha_topics.ha_event(), ToolResult))
    fire(hass, ha_topics.ha_command(), ToolCall(call_id, name, arguments, satellite_id=satellite, text="test"))
    result = await published.wait(hass, ha_topics.ha_event(), ToolResult, count=before + 1)
    assert result.call_id == call_id
    return result


async def test_catalog_lists_the_tools_and_exposed_entities(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    data = catalog_json(published, "kitchen")
    catalog = ha_topics.decode_tool_catalog(published.calls(ha_topics.ha_tools("kitchen"))[-1][0])
    assert isinstance(catalog, ToolCatalog) and catalog.satellite_id == "kitchen"
    names = {tool.name for tool in catalog.tools}
    # The satellite's device has a timer handler, so the timer tools are there.
    assert {"HassTurnOn", "HassTurnOff", "HassLightSet", "HassStartTimer", "HassCancelTimer", "GetLiveContext"} <= names
    turn_on = catalog.tool("HassTurnOn")
    assert turn_on.type == "function" and turn_on.parameters["type"] == "object"
    assert turn_on.parameters["properties"]["name"] == {"type": "string"}
    assert data["tools"][0]["type"] == "function"  # the Realtime function definition shape
    assert "Kitchen light" in catalog.api_prompt
    assert {e.entity_id for e in catalog.entities} >= {"light.kitchen", "light.garage"}
    assert catalog.llm_api == ("assist",) and catalog.revision
    # Retained, so a server that starts later still gets it.
    assert published.calls(ha_topics.ha_tools("kitchen"))[-1][1] is True
    # The device-less catalog has no timer tools.
    deviceless = ha_topics.decode_tool_catalog(published.calls(ha_topics.ha_tools())[-1][0])
    assert deviceless.satellite_id is None
    assert "HassStartTimer" not in {tool.name for tool in deviceless.tools}


async def test_catalog_is_refreshed_when_areas_or_exposure_change(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    before = len(published.messages(ha_topics.ha_tools("kitchen"), ToolCatalog))
    kitchen = ar.async_get(hass).async_create("Kitchen")
    er.async_get(hass).async_update_entity("light.kitchen", area_id=kitchen.id)
    await entry.runtime_data.hub.async_publish_catalogs()  # what the debounced refresh runs
    catalogs = published.messages(ha_topics.ha_tools("kitchen"), ToolCatalog)
    assert len(catalogs) == before + 1
    light = next(e for e in catalogs[-1].entities if e.entity_id == "light.kitchen")
    assert light.area == "Kitchen" and "Kitchen" in catalogs[-1].areas
    # Unchanged content is not republished.
    await entry.runtime_data.hub.async_publish_catalogs()
    assert len(published.messages(ha_topics.ha_tools("kitchen"), ToolCatalog)) == before + 1
    async_expose_entity(hass, "conversation", "light.garage", False)
    await entry.runtime_data.hub.async_publish_catalogs()
    latest = published.messages(ha_topics.ha_tools("kitchen"), ToolCatalog)[-1]
    assert "light.garage" not in {e.entity_id for e in latest.entities}


async def test_a_tool_call_changes_an_entity(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    assert hass.states.get("light.kitchen").state == "off"
    result = await call_tool(hass, published, "HassTurnOn", {"name": "Kitchen light"})
    assert result.ok, result
    await hass.async_block_till_done()
    assert hass.states.get("light.kitchen").state == "on"
    assert result.result["response_type"] == "action_done"
    assert result.result["data"]["success"][0]["id"] == "light.kitchen"
    assert entry.runtime_data.hub.stats.tool_calls == 1


async def test_an_unexposed_entity_is_refused_in_words(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    async_expose_entity(hass, "conversation", "light.garage", False)
    result = await call_tool(hass, published, "HassTurnOn", {"name": "Garage light"})
    assert result.error == "no-match"
    assert result.message == "I can't control the Garage light."
    assert "<" not in result.message and "MatchFailed" not in result.message
    assert hass.states.get("light.garage").state == "off"


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        ({"name": 5}, "'name' must be a string"),
        ({"nmae": "Kitchen light"}, "'nmae' is not a known argument"),
        ({"domain": "light"}, "'domain' must be a list"),
    ],
)
async def test_bad_arguments_are_refused(hass: HomeAssistant, entry: MockConfigEntry, published: Published, arguments, needle):
    result = await call_tool(hass, published, "HassTurnOn", arguments)
    assert result.error == "invalid-arguments"
    assert needle in result.message
    assert hass.states.get("light.kitchen").state == "off"


async def test_unknown_tool_and_device_less_calls(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    result = await call_tool(hass, published, "HassTeleport", {})
    assert result.error == "unknown-tool" and "HassTeleport" in result.message
    # Without a satellite there is no timer device, so no timer tool.
    result = await call_tool(hass, published, "HassStartTimer", {"minutes": 5}, satellite=None, call_id="call_2")
    assert result.error == "unknown-tool"
    result = await call_tool(hass, published, "GetLiveContext", {}, satellite=None, call_id="call_3")
    assert result.ok and "Kitchen light" in str(result.result)


async def test_a_timer_rings_on_its_satellite_and_can_be_cancelled(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    result = await call_tool(hass, published, "HassStartTimer", {"seconds": 1, "name": "tea"})
    assert result.ok, result
    started = await published.wait(hass, ha_topics.ha_event(), TimerStarted)
    assert started.satellite_id == "kitchen" and started.total_seconds == 1 and started.name == "tea"
    finished = await published.wait(hass, ha_topics.ha_event(), TimerFinished, timeout=5)
    assert finished.satellite_id == "kitchen" and finished.timer_id == started.timer_id and finished.name == "tea"

    result = await call_tool(hass, published, "HassStartTimer", {"minutes": 10}, call_id="call_2")
    assert result.ok
    result = await call_tool(hass, published, "HassCancelTimer", {}, call_id="call_3")
    assert result.ok, result
    cancelled = await published.wait(hass, ha_topics.ha_event(), TimerCancelled)
    assert cancelled.satellite_id == "kitchen"


async def test_removing_an_offline_satellite_device(hass: HomeAssistant, entry: MockConfigEntry, published: Published, hass_ws_client):
    from homeassistant.setup import async_setup_component

    assert await async_setup_component(hass, "config", {})
    devices = dr.async_get(hass)
    device = devices.async_get_device(identifiers={(DOMAIN, "kitchen")})
    client = await hass_ws_client(hass)

    async def remove(device_id: str) -> bool:
        await client.send_json_auto_id({"type": "config/device_registry/remove_config_entry", "config_entry_id": entry.entry_id, "device_id": device_id})
        return (await client.receive_json())["success"]

    assert not await remove(device.id)  # online: refused
    server = devices.async_get_device(identifiers={(DOMAIN, "server:house")})
    assert not await remove(server.id)
    fire(hass, "hearth/v1/satellite/kitchen/status", '{"type":"satellite-status","satellite_id":"kitchen","availability":"offline"}')
    await hass.async_block_till_done()
    assert await remove(device.id)
    assert "kitchen" not in entry.runtime_data.hub.satellites
    assert published.calls(ha_topics.ha_tools("kitchen"))[-1] == ("", True)


def test_match_failures_become_sentences():
    def failure(reason, **constraints):
        return intent.MatchFailedError(
            result=intent.MatchTargetsResult(False, reason, no_match_name=constraints.pop("no_match_name", None)),
            constraints=intent.MatchTargetsConstraints(**constraints),
        )

    cases = [
        (failure(intent.MatchFailedReason.ASSISTANT, name="garage door"), "I can't control the garage door."),
        (failure(intent.MatchFailedReason.ASSISTANT, area_name="Garage"), "I can't control anything in the Garage."),
        (failure(intent.MatchFailedReason.ASSISTANT, name="lamp", area_name="Den"), "I can't control the lamp in the Den."),
        (failure(intent.MatchFailedReason.ASSISTANT, floor_name="attic"), "I can't control anything on the attic."),
        (failure(intent.MatchFailedReason.ASSISTANT, domains={"fan"}), "I can't control any fan."),
        (failure(intent.MatchFailedReason.ASSISTANT), "I can't control that."),
        (failure(intent.MatchFailedReason.NAME, name="toaster"), "I don't know any device called toaster."),
        (failure(intent.MatchFailedReason.AREA, area_name="Den"), "I found nothing like that in the Den."),
        (failure(intent.MatchFailedReason.FLOOR, floor_name="attic"), "I found nothing like that on the attic."),
        (failure(intent.MatchFailedReason.INVALID_AREA, area_name="Moon"), "There is no area called Moon."),
        (failure(intent.MatchFailedReason.INVALID_FLOOR, floor_name="Moon"), "There is no floor called Moon."),
        (failure(intent.MatchFailedReason.DOMAIN, domains={"fan"}), "I found no fan like that."),
        (failure(intent.MatchFailedReason.DEVICE_CLASS), "I found no device of that kind."),
        (failure(intent.MatchFailedReason.FEATURE, name="lamp"), "The lamp can't do that."),
        (failure(intent.MatchFailedReason.STATE, name="lamp"), "The lamp is already like that."),
        (failure(intent.MatchFailedReason.DUPLICATE_NAME, name="lamp", no_match_name="lamp"), "There is more than one lamp; which area do you mean?"),
        (failure(intent.MatchFailedReason.MULTIPLE_TARGETS), "That matches more than one device; please be more specific."),
        (failure(None, name="lamp"), "I couldn't find the lamp."),
    ]
    for err, sentence in cases:
        assert tools.describe_match_failure(err) == sentence


@pytest.mark.parametrize(
    ("raised", "code", "needle"),
    [
        (intent.IntentHandleError("Timer not found"), "failed", "Timer not found."),
        (__import__("voluptuous").Invalid("bad color"), "invalid-arguments", "bad color"),
        (__import__("homeassistant.exceptions", fromlist=["x"]).HomeAssistantError("service down"), "failed", "Service down."),
        (RuntimeError("bug"), "failed", "Something went wrong while running HassTurnOn."),
    ],
)
async def test_home_assistant_failures_become_sentences(hass: HomeAssistant, entry: MockConfigEntry, published: Published, raised, code, needle):
    from unittest.mock import patch

    with patch("homeassistant.helpers.llm.APIInstance.async_call_tool", side_effect=raised):
        result = await call_tool(hass, published, "HassTurnOn", {"name": "Kitchen light"})
    assert result.error == code and needle in result.message
    assert entry.runtime_data.hub.stats.tool_errors == 1


async def test_schema_checks_beyond_json_types_and_odd_results(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    from unittest.mock import patch

    # The JSON types are right, but the tool's own voluptuous schema refuses the value.
    with patch("voluptuous.Schema.__call__", side_effect=__import__("voluptuous").Invalid("not a color")):
        result = await call_tool(hass, published, "HassLightSet", {"name": "Kitchen light", "color": "plaid"})
    assert result.error == "invalid-arguments" and "not a color" in result.message
    with patch("homeassistant.helpers.llm.APIInstance.async_call_tool", return_value={"speech": {"plain": {"speech": "Turned on"}}}):
        result = await call_tool(hass, published, "HassTurnOn", {"name": "Kitchen light"}, call_id="c2")
    assert result.speech == "Turned on"
    with patch("homeassistant.helpers.llm.APIInstance.async_call_tool", return_value=None):
        result = await call_tool(hass, published, "HassTurnOn", {"name": "Kitchen light"}, call_id="c3")
    assert result.ok and result.result == {} and result.speech is None


async def test_an_unavailable_llm_api_is_reported(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    from unittest.mock import patch

    with patch.object(type(entry.runtime_data.hub), "llm_api", "gone"):
        result = await call_tool(hass, published, "HassTurnOn", {"name": "Kitchen light"})
    assert result.error == "unavailable" and "gone" in result.message
