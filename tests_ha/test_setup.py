"""Setup, satellites as devices and entities, and an unload that leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hearth.wire
from conftest import SERVER, agent_entity_id, Published, fire, fire_satellite, fire_server_online
from custom_components.hearth.const import DOMAIN
from hearth.wire import IntegrationStatus, ServerStatus, ToolCatalog, ha_topics, topics
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

REPO = Path(__file__).resolve().parent.parent


def test_wire_comes_from_the_installed_distribution():
    """Like Home Assistant, the tests import hearth.wire from the hearth-wire wheel, not the checkout."""
    from importlib.metadata import distribution

    location = Path(hearth.wire.__file__).resolve()
    assert REPO / "hearth" not in location.parents, location
    assert distribution("hearth-wire").version == "0.1.0"
    manifest = (REPO / "custom_components" / "hearth" / "manifest.json").read_text()
    assert '"hearth-wire==0.1.0"' in manifest


async def test_satellite_becomes_a_device_with_entities(hass: HomeAssistant, entry: MockConfigEntry, published: Published):
    assert entry.state is ConfigEntryState.LOADED
    devices = dr.async_get(hass)
    device = devices.async_get_device(identifiers={(DOMAIN, "kitchen")})
    assert device is not None and device.name == "Kitchen satellite" and device.sw_version == "0.1.0"
    server = devices.async_get_device(identifiers={(DOMAIN, f"server:{SERVER}")})
    assert device.via_device_id == server.id

    entities = {e.translation_key or e.original_name: e.entity_id for e in er.async_entries_for_device(er.async_get(hass), device.id)}
    assert set(entities) == {"assist_satellite", "mute", "wake_sensitivity", "last_transcript"}
    assert hass.states.get(entities["assist_satellite"]).state == "idle"
    assert hass.states.get(entities["mute"]).state == "off"
    assert hass.states.get(entities["wake_sensitivity"]).state == "medium"
    # The conversation agent lives on the server's device.
    assert hass.states.get(agent_entity_id(hass)) is not None

    status = published.messages(ha_topics.ha_status(), IntegrationStatus)[-1]
    assert status.online


async def test_satellite_state_follows_its_status(hass: HomeAssistant, entry: MockConfigEntry):
    entity_id = "assist_satellite.kitchen_satellite"
    for wire_state, ha_state in [("listening", "listening"), ("thinking", "processing"), ("speaking", "responding"), ("idle", "idle")]:
        fire_satellite(hass, state=wire_state)
        await hass.async_block_till_done()
        assert hass.states.get(entity_id).state == ha_state
    fire(hass, topics.satellite_status("kitchen"), '{"type":"satellite-status","satellite_id":"kitchen","availability":"offline"}')
    await hass.async_block_till_done()
    assert hass.states.get(entity_id).state == "unavailable"
    # The last will keeps what was known about the device.
    assert dr.async_get(hass).async_get_device(identifiers={(DOMAIN, "kitchen")}).name == "Kitchen satellite"


async def test_server_offline_raises_a_repair_and_online_clears_it(hass: HomeAssistant, entry: MockConfigEntry):
    issues = ir.async_get(hass)
    issue_id = f"server_unreachable_{entry.entry_id}"
    fire(hass, topics.server_status(SERVER), ServerStatus.offline(SERVER))
    await hass.async_block_till_done()
    assert issues.async_get_issue(DOMAIN, issue_id) is not None
    assert hass.states.get("switch.kitchen_satellite_mute").state == "unavailable"
    fire_server_online(hass)
    await hass.async_block_till_done()
    assert issues.async_get_issue(DOMAIN, issue_id) is None
    assert hass.states.get("switch.kitchen_satellite_mute").state == "off"


async def test_malformed_payloads_are_ignored(hass: HomeAssistant, entry: MockConfigEntry):
    fire(hass, topics.satellite_status("kitchen"), "not json")
    fire(hass, ha_topics.ha_command(), '{"type": "teleport"}')
    fire(hass, ha_topics.ha_command(), '{"type": "tool-call", "call_id": "has space", "name": "x", "arguments": {}}')
    await hass.async_block_till_done()
    hub = entry.runtime_data.hub
    assert hub.stats.bad_payloads == 3
    assert hass.states.get("assist_satellite.kitchen_satellite").state == "idle"


async def test_unload_leaves_nothing_behind(hass: HomeAssistant, entry: MockConfigEntry, published: Published, mqtt_mock: Any):
    assert published.messages(ha_topics.ha_tools("kitchen"), ToolCatalog)
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.NOT_LOADED
    # Retained catalogs are cleared and the integration says it is offline.
    assert published.calls(ha_topics.ha_tools("kitchen"))[-1] == ("", True)
    assert published.calls(ha_topics.ha_tools())[-1] == ("", True)
    assert not published.messages(ha_topics.ha_status(), IntegrationStatus)[-1].online
    # Nothing listens any more: a new satellite creates no device.
    fire_satellite(hass, "bedroom", name="Bedroom")
    await hass.async_block_till_done()
    assert dr.async_get(hass).async_get_device(identifiers={(DOMAIN, "bedroom")}) is None
    assert hass.states.get("assist_satellite.kitchen_satellite").state == "unavailable"


async def test_empty_malformed_and_foreign_payloads(hass: HomeAssistant, entry: MockConfigEntry):
    hub = entry.runtime_data.hub
    for topic in [topics.server_status(SERVER), topics.satellite_status("kitchen"), ha_topics.ha_activity("kitchen"), ha_topics.ha_settings("kitchen")]:
        fire(hass, topic, "")  # a cleared retained message
        fire(hass, topic, "{broken")
    # A satellite speaking another protocol version is left alone.
    fire(hass, topics.satellite_status("future"), '{"type":"satellite-status","satellite_id":"future","protocol":2}')
    await hass.async_block_till_done()
    assert hub.stats.bad_payloads == 4
    assert "future" not in hub.satellites
    assert hub.server_online and hass.states.get("assist_satellite.kitchen_satellite").state == "idle"


async def test_a_server_that_never_shows_up_raises_a_repair(hass: HomeAssistant, broker: Any, home: None):
    from datetime import timedelta

    from homeassistant.util import dt as dt_util
    from pytest_homeassistant_custom_component.common import async_fire_time_changed

    config_entry = MockConfigEntry(domain=DOMAIN, data={"server_id": "attic"}, unique_id="attic")
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, f"server_unreachable_{config_entry.entry_id}") is None
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=10))
    await hass.async_block_till_done()
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"server_unreachable_{config_entry.entry_id}")
    assert issue is not None and issue.translation_placeholders == {"server_id": "attic"}
    assert await hass.config_entries.async_unload(config_entry.entry_id)
    assert ir.async_get(hass).async_get_issue(DOMAIN, f"server_unreachable_{config_entry.entry_id}") is None


async def test_setup_waits_for_mqtt(hass: HomeAssistant, home: None):
    from unittest.mock import patch

    config_entry = MockConfigEntry(domain=DOMAIN, data={"server_id": SERVER}, unique_id=SERVER)
    config_entry.add_to_hass(hass)
    with patch("custom_components.hearth.mqtt.async_wait_for_mqtt_client", return_value=False):
        assert not await hass.config_entries.async_setup(config_entry.entry_id)
    assert config_entry.state is ConfigEntryState.SETUP_RETRY


async def test_a_missing_llm_api_publishes_no_catalog(hass: HomeAssistant, broker: Any, home: None, published: Published):
    config_entry = MockConfigEntry(domain=DOMAIN, data={"server_id": SERVER}, unique_id=SERVER, options={"llm_hass_api": "gone"})
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    fire_satellite(hass)
    await hass.async_block_till_done()
    assert not published.calls(ha_topics.ha_tools("kitchen")) and not published.calls(ha_topics.ha_tools())
    assert hass.states.get("assist_satellite.kitchen_satellite") is not None
