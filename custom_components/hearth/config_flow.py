"""Config flow: zeroconf discovery or a server id typed in, checked over Home Assistant's MQTT."""

from __future__ import annotations

import asyncio
from typing import Any

import voluptuous as vol

from hearth.wire import ProtocolError, ServerStatus, decode_server_status, topics
from hearth.wire.discovery import ServerAdvert
from hearth.wire.ids import check_node_id
from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry, ConfigFlow, ConfigFlowResult, OptionsFlow
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import llm
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    TextSelector,
)
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo

from .const import (
    CONF_DEVICELESS_TOOLS,
    CONF_LLM_HASS_API,
    CONF_RESPONSE_TIMEOUT,
    CONF_SERVER_ID,
    DEFAULT_LLM_API,
    DEFAULT_RESPONSE_TIMEOUT,
    DEFAULT_SERVER_ID,
    DOMAIN,
    STATUS_WAIT_SECONDS,
)


class CannotConnect(Exception):
    """No online status from the server arrived over MQTT."""


class MqttUnavailable(Exception):
    """Home Assistant's MQTT integration is not set up."""


async def async_check_server(hass: HomeAssistant, server_id: str) -> ServerStatus:
    """Wait for the server's retained, online status on Home Assistant's MQTT."""
    if not await mqtt.async_wait_for_mqtt_client(hass):
        raise MqttUnavailable
    found: asyncio.Future[ServerStatus] = hass.loop.create_future()

    @callback
    def on_status(msg: mqtt.ReceiveMessage) -> None:
        try:
            status = decode_server_status(msg.payload, topic=msg.topic)
        except ProtocolError:
            return
        if status.online and not found.done():
            found.set_result(status)

    unsubscribe = await mqtt.async_subscribe(hass, topics.server_status(server_id), on_status, qos=1, encoding=None)
    try:
        async with asyncio.timeout(STATUS_WAIT_SECONDS):
            return await found
    except TimeoutError as err:
        raise CannotConnect from err
    finally:
        unsubscribe()


def _valid_server_id(value: Any) -> str:
    try:
        return check_node_id(str(value).strip())
    except ProtocolError as err:
        raise vol.Invalid("invalid_server_id") from err


class HearthConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add a Hearth server."""

    VERSION = 1

    def __init__(self) -> None:
        self._server_id: str | None = None

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> OptionsFlow:
        return HearthOptionsFlow()

    async def _check(self, server_id: str, errors: dict[str, str]) -> ServerStatus | None:
        try:
            return await async_check_server(self.hass, server_id)
        except MqttUnavailable:
            errors["base"] = "mqtt_unavailable"
        except CannotConnect:
            errors["base"] = "cannot_connect"
        return None

    def _schema(self, default: str) -> vol.Schema:
        return vol.Schema({vol.Required(CONF_SERVER_ID, default=default): TextSelector()})

    async def _typed_server(
        self, user_input: dict[str, Any], errors: dict[str, str], *, keeps: str | None = None
    ) -> tuple[str, ServerStatus] | None:
        """The typed server id, valid, not configured yet and answering over MQTT; else None and `errors`.

        `keeps`: the id of the entry being reconfigured, which may keep its own id.
        """
        try:
            server_id = _valid_server_id(user_input[CONF_SERVER_ID])
        except vol.Invalid:
            errors[CONF_SERVER_ID] = "invalid_server_id"
            return None
        await self.async_set_unique_id(server_id)
        if server_id != keeps:
            self._abort_if_unique_id_configured()
        status = await self._check(server_id, errors)
        return None if status is None else (server_id, status)

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None and (server := await self._typed_server(user_input, errors)) is not None:
            server_id, status = server
            return self.async_create_entry(title=status.name or f"Hearth {server_id}", data={CONF_SERVER_ID: server_id})
        return self.async_show_form(
            step_id="user", data_schema=self._schema(DEFAULT_SERVER_ID), errors=errors
        )

    async def async_step_zeroconf(self, discovery_info: ZeroconfServiceInfo) -> ConfigFlowResult:
        try:
            advert = ServerAdvert.from_txt(discovery_info.properties, address=discovery_info.host)
        except ProtocolError:
            return self.async_abort(reason="invalid_discovery")
        if not advert.compatible:
            return self.async_abort(reason="incompatible_protocol")
        server_id = advert.server_id or DEFAULT_SERVER_ID
        await self.async_set_unique_id(server_id)
        self._abort_if_unique_id_configured()
        self._server_id = server_id
        self.context["title_placeholders"] = {"server_id": server_id}
        return await self.async_step_zeroconf_confirm()

    async def async_step_zeroconf_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        assert self._server_id is not None
        errors: dict[str, str] = {}
        if user_input is not None:
            if (status := await self._check(self._server_id, errors)) is not None:
                return self.async_create_entry(
                    title=status.name or f"Hearth {self._server_id}", data={CONF_SERVER_ID: self._server_id}
                )
        return self.async_show_form(
            step_id="zeroconf_confirm", description_placeholders={"server_id": self._server_id}, errors=errors
        )

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None and (
            server := await self._typed_server(user_input, errors, keeps=entry.unique_id)
        ) is not None:
            server_id, _status = server
            return self.async_update_reload_and_abort(
                entry, unique_id=server_id, data_updates={CONF_SERVER_ID: server_id}
            )
        return self.async_show_form(
            step_id="reconfigure", data_schema=self._schema(entry.data[CONF_SERVER_ID]), errors=errors
        )


class HearthOptionsFlow(OptionsFlow):
    """Which LLM API the satellites get, the device-less catalog, and the agent's patience."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        if user_input is not None:
            return self.async_create_entry(data=user_input)
        apis = [SelectOptionDict(value=api.id, label=api.name) for api in llm.async_get_apis(self.hass)]
        schema = vol.Schema(
            {
                vol.Required(CONF_LLM_HASS_API, default=DEFAULT_LLM_API): SelectSelector(SelectSelectorConfig(options=apis)),
                vol.Required(CONF_DEVICELESS_TOOLS, default=True): BooleanSelector(),
                vol.Required(CONF_RESPONSE_TIMEOUT, default=DEFAULT_RESPONSE_TIMEOUT): NumberSelector(
                    NumberSelectorConfig(min=3, max=300, step=1, unit_of_measurement="s", mode=NumberSelectorMode.BOX)
                ),
            }
        )
        return self.async_show_form(
            step_id="init", data_schema=self.add_suggested_values_to_schema(schema, self.config_entry.options)
        )
