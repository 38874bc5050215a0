"""Config flow (user, zeroconf, already configured, cannot connect), options and reconfigure."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address
from typing import Any
from unittest.mock import patch

import pytest
from conftest import SERVER, fire
from custom_components.hearth.const import CONF_DEVICELESS_TOOLS, CONF_LLM_HASS_API, CONF_RESPONSE_TIMEOUT, CONF_SERVER_ID, DOMAIN
from hearth.wire import ServerStatus, topics
from homeassistant import config_entries
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry


@pytest.fixture(autouse=True)
async def core(hass: HomeAssistant) -> None:
    """Home Assistant's own core integration, always there in a real instance."""
    assert await async_setup_component(hass, "homeassistant", {})


@pytest.fixture(autouse=True)
def short_wait():
    with patch("custom_components.hearth.config_flow.STATUS_WAIT_SECONDS", 0.3):
        yield


async def answer_when_subscribed(hass: HomeAssistant, coro, server_id: str = SERVER, status: ServerStatus | None = None):
    """Run a flow step and, once it listens, publish the server's (retained) status."""
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(0.05)
    fire(hass, topics.server_status(server_id), status or ServerStatus(server_id, name="Hearth house"), retain=True)
    return await task


def zeroconf(server_id: str = SERVER, proto: str = "1") -> ZeroconfServiceInfo:
    return ZeroconfServiceInfo(
        ip_address=ip_address("127.0.0.1"),
        ip_addresses=[ip_address("127.0.0.1")],
        hostname="hearth.local.",
        name=f"Hearth {server_id}._hearth._tcp.local.",
        port=8765,
        type="_hearth._tcp.local.",
        properties={"proto": proto, "mqtt": "mqtt://:1883", "id": server_id},
    )


async def test_user_flow(hass: HomeAssistant, broker: Any):
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "user"
    result = await answer_when_subscribed(
        hass, hass.config_entries.flow.async_configure(result["flow_id"], {CONF_SERVER_ID: SERVER})
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Hearth house"
    assert result["data"] == {CONF_SERVER_ID: SERVER}
    assert result["result"].unique_id == SERVER


async def test_user_flow_cannot_connect_then_recovers(hass: HomeAssistant, broker: Any):
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_SERVER_ID: SERVER})
    assert result["type"] is FlowResultType.FORM and result["errors"] == {"base": "cannot_connect"}
    # An offline (last-will) status is not a connection either.
    result = await answer_when_subscribed(
        hass, hass.config_entries.flow.async_configure(result["flow_id"], {CONF_SERVER_ID: SERVER}), status=ServerStatus.offline(SERVER)
    )
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_SERVER_ID: "has space"})
    assert result["errors"] == {CONF_SERVER_ID: "invalid_server_id"}
    result = await answer_when_subscribed(
        hass, hass.config_entries.flow.async_configure(result["flow_id"], {CONF_SERVER_ID: SERVER})
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_user_flow_without_mqtt(hass: HomeAssistant):
    with patch("custom_components.hearth.config_flow.mqtt.async_wait_for_mqtt_client", return_value=False):
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_SERVER_ID: SERVER})
    assert result["errors"] == {"base": "mqtt_unavailable"}


async def test_zeroconf_flow(hass: HomeAssistant, broker: Any):
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=zeroconf())
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "zeroconf_confirm"
    assert result["description_placeholders"] == {"server_id": SERVER}
    result = await answer_when_subscribed(hass, hass.config_entries.flow.async_configure(result["flow_id"], {}))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {CONF_SERVER_ID: SERVER}


async def test_zeroconf_cannot_connect(hass: HomeAssistant, broker: Any):
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=zeroconf())
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.FORM and result["errors"] == {"base": "cannot_connect"}


@pytest.mark.parametrize(("info", "reason"), [(zeroconf(proto="2"), "incompatible_protocol"), (zeroconf(proto="x"), "invalid_discovery")])
async def test_zeroconf_refuses_other_protocols(hass: HomeAssistant, broker: Any, info, reason):
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=info)
    assert result["type"] is FlowResultType.ABORT and result["reason"] == reason


async def test_already_configured(hass: HomeAssistant, broker: Any):
    MockConfigEntry(domain=DOMAIN, data={CONF_SERVER_ID: SERVER}, unique_id=SERVER).add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=zeroconf())
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "already_configured"
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_SERVER_ID: SERVER})
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "already_configured"


async def test_options_flow(hass: HomeAssistant, entry: MockConfigEntry):
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "init"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_LLM_HASS_API: "assist", CONF_DEVICELESS_TOOLS: False, CONF_RESPONSE_TIMEOUT: 12}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options == {CONF_LLM_HASS_API: "assist", CONF_DEVICELESS_TOOLS: False, CONF_RESPONSE_TIMEOUT: 12}
    # The entry reloaded with the new options.
    hub = entry.runtime_data.hub
    assert hub.response_timeout == 12 and not hub.deviceless_tools


async def test_reconfigure(hass: HomeAssistant, entry: MockConfigEntry):
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_SERVER_ID: "attic"})
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_SERVER_ID: "-bad"})
    assert result["errors"] == {CONF_SERVER_ID: "invalid_server_id"}
    result = await answer_when_subscribed(
        hass, hass.config_entries.flow.async_configure(result["flow_id"], {CONF_SERVER_ID: "attic"}), server_id="attic"
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.data == {CONF_SERVER_ID: "attic"} and entry.unique_id == "attic"
    assert entry.runtime_data.hub.server_id == "attic"


async def test_reconfigure_to_another_configured_server(hass: HomeAssistant, entry: MockConfigEntry):
    MockConfigEntry(domain=DOMAIN, data={CONF_SERVER_ID: "attic"}, unique_id="attic").add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_SERVER_ID: "attic"})
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "already_configured"
