"""Fixtures: Home Assistant with its MQTT integration (paho mocked by phacc), a Hearth entry, template lights."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import Mock

import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message

from custom_components.hearth.const import CONF_SERVER_ID, DOMAIN
from hearth.wire import SatelliteCapabilities, SatelliteStatus, ServerStatus, decode_message, ha_topics, topics
from hearth.wire.message import Message
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component

SERVER = "house"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Every test may load custom_components/hearth."""


@pytest.fixture(autouse=True)
async def unload_entries_after_test(hass: HomeAssistant) -> AsyncIterator[None]:
    """Unload every entry after a test (Hearth before MQTT)."""
    yield
    entries = sorted(hass.config_entries.async_entries(), key=lambda e: e.domain == "mqtt")
    for config_entry in entries:
        if config_entry.state is ConfigEntryState.LOADED:
            await hass.config_entries.async_unload(config_entry.entry_id)
    await hass.async_block_till_done()


def fire(hass: HomeAssistant, topic: str, message: Message | str, *, retain: bool = False) -> None:
    payload = message if isinstance(message, str) else message.to_json().decode()
    async_fire_mqtt_message(hass, topic, payload, retain=retain)


def fire_server_online(hass: HomeAssistant, server_id: str = SERVER) -> None:
    fire(hass, topics.server_status(server_id), ServerStatus(server_id, name=f"Hearth {server_id}"))


def fire_satellite(hass: HomeAssistant, satellite_id: str = "kitchen", **fields: Any) -> None:
    status = SatelliteStatus(
        satellite_id,
        name=fields.pop("name", "Kitchen satellite"),
        state=fields.pop("state", "idle"),
        muted=fields.pop("muted", False),
        version="0.1.0",
        capabilities=SatelliteCapabilities(wake_words=("hey_jarvis",)),
        **fields,
    )
    fire(hass, topics.satellite_status(satellite_id), status)


class Published:
    """What the integration published, decoded, read from the mocked MQTT client."""

    def __init__(self, mqtt_mock: Any) -> None:
        self.mqtt_mock = mqtt_mock

    def calls(self, topic: str) -> list[tuple[str, bool]]:
        found = []
        for call in self.mqtt_mock.async_publish.call_args_list:
            args = call.args
            if args[0] == topic:
                payload = args[1]
                found.append((payload.decode() if isinstance(payload, bytes) else payload, bool(args[3])))
        return found

    def messages(self, topic: str, kind: type[Message] | None = None) -> list[Message]:
        decoded = []
        for payload, _retain in self.calls(topic):
            if not payload:
                continue
            message = decode_message(payload) if len(payload) < 60000 else ha_topics.decode_tool_catalog(payload)
            if kind is None or isinstance(message, kind):
                decoded.append(message)
        return decoded

    async def wait(self, hass: HomeAssistant, topic: str, kind: type[Message], count: int = 1, timeout: float = 5) -> Message:
        async with asyncio.timeout(timeout):
            while len(found := self.messages(topic, kind)) < count:
                await asyncio.sleep(0.01)
        return found[count - 1]


@pytest.fixture
async def broker(hass: HomeAssistant, mqtt_mock: Any, mqtt_client_mock: Any) -> AsyncIterator[Any]:
    """Home Assistant's MQTT integration on phacc's mocked paho client.

    That mock "opens" a socket on connect but never closes it, so HA's MQTT client
    would leave its 1 s housekeeping timer behind: close it at the end.
    """
    yield mqtt_mock
    for config_entry in hass.config_entries.async_entries():
        if config_entry.domain != "mqtt" and config_entry.state is ConfigEntryState.LOADED:
            await hass.config_entries.async_unload(config_entry.entry_id)
    mqtt_client_mock.on_socket_close(mqtt_client_mock, None, Mock(fileno=Mock(return_value=-1)))
    await hass.async_block_till_done()


@pytest.fixture
def published(broker: Any) -> Published:
    return Published(broker)


LIGHTS = {
    "kitchen": "Kitchen light",
    "garage": "Garage light",
}


@pytest.fixture
async def home(hass: HomeAssistant) -> None:
    """Template lights backed by input_booleans (what the end-to-end test runs too)."""
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(
        hass, "input_boolean", {"input_boolean": {key: {"name": f"{name} power"} for key, name in LIGHTS.items()}}
    )
    lights = {
        key: {
            "friendly_name": name,
            "unique_id": f"light-{key}",
            "value_template": f"{{{{ is_state('input_boolean.{key}', 'on') }}}}",
            "turn_on": {"action": "input_boolean.turn_on", "target": {"entity_id": f"input_boolean.{key}"}},
            "turn_off": {"action": "input_boolean.turn_off", "target": {"entity_id": f"input_boolean.{key}"}},
        }
        for key, name in LIGHTS.items()
    }
    assert await async_setup_component(hass, "light", {"light": [{"platform": "template", "lights": lights}]})
    await hass.async_block_till_done()


@pytest.fixture
async def entry(hass: HomeAssistant, broker: Any, home: None) -> MockConfigEntry:
    """A loaded Hearth entry with its server online and one satellite, ``kitchen``."""
    config_entry = MockConfigEntry(domain=DOMAIN, data={CONF_SERVER_ID: SERVER}, unique_id=SERVER, title="Hearth house")
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    fire_server_online(hass)
    fire_satellite(hass)
    await hass.async_block_till_done()
    return config_entry


def agent_entity_id(hass: HomeAssistant) -> str:
    return er.async_get(hass).async_get_entity_id("conversation", DOMAIN, f"{SERVER}-conversation")


def catalog_json(published: Published, satellite_id: str | None) -> dict[str, Any]:
    payload = [p for p, _ in published.calls(ha_topics.ha_tools(satellite_id)) if p][-1]
    return json.loads(payload)
