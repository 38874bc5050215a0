"""Home Assistant's LLM API as Hearth tool catalogs, and tool calls run through it.

Everything goes through ``llm.async_get_api``: only what Home Assistant
exposes to Assist can be touched, and device-dependent tools (timers) appear
for a satellite because its device is the LLM context.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Any

import voluptuous as vol
from voluptuous_openapi import convert

from hearth.wire import ExposedEntity, ToolCall, ToolCatalog, ToolDefinition, ToolErrorCode, ToolResult
from hearth.wire.arguments import check_arguments
from homeassistant.components.homeassistant.exposed_entities import async_should_expose
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import area_registry as ar
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import floor_registry as fr
from homeassistant.helpers import intent, llm
from homeassistant.helpers.json import json_dumps

from .const import ASSISTANT, DOMAIN

_LOGGER = logging.getLogger(__name__)

# LLMContext lost ``user_prompt`` after 2025.x; ToolInput gained ``external``.
_LLM_CONTEXT_FIELDS = frozenset(field.name for field in dataclasses.fields(llm.LLMContext))


def llm_context(
    hass: HomeAssistant, device_id: str | None, *, text: str | None = None, language: str | None = None
) -> llm.LLMContext:
    """An LLM context for one satellite's device (or none), on any supported Home Assistant."""
    values: dict[str, Any] = {
        "platform": DOMAIN,
        "context": Context(),
        "language": language or hass.config.language,
        "assistant": ASSISTANT,
        "device_id": device_id,
        "user_prompt": text,
    }
    return llm.LLMContext(**{key: value for key, value in values.items() if key in _LLM_CONTEXT_FIELDS})


async def async_get_api(
    hass: HomeAssistant, api_id: str, device_id: str | None, *, text: str | None = None, language: str | None = None
) -> llm.APIInstance:
    return await llm.async_get_api(hass, api_id, llm_context(hass, device_id, text=text, language=language))


def tool_definition(tool: llm.Tool, api: llm.APIInstance) -> ToolDefinition:
    """A Home Assistant tool as a Realtime function definition."""
    parameters = convert(tool.parameters, custom_serializer=api.custom_serializer)
    return ToolDefinition(name=tool.name, description=tool.description or "", parameters=parameters)


async def async_build_catalog(
    hass: HomeAssistant, api_id: str, *, satellite_id: str | None, device_id: str | None
) -> ToolCatalog:
    """The catalog a satellite (or device-less use) gets: tools, prompt, exposed names and areas."""
    api = await async_get_api(hass, api_id, device_id)
    tools = tuple(tool_definition(tool, api) for tool in api.tools)
    entities = exposed_entities(hass)
    areas = tuple(sorted(area.name for area in ar.async_get(hass).async_list_areas()))
    catalog = ToolCatalog(
        tools=tools,
        satellite_id=satellite_id,
        api_prompt=api.api_prompt,
        llm_api=(api_id,),
        language=hass.config.language,
        entities=entities,
        areas=areas,
    )
    digest = hashlib.sha256(json.dumps(catalog.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    return dataclasses.replace(catalog, revision=digest)


def exposed_entities(hass: HomeAssistant) -> tuple[ExposedEntity, ...]:
    """The entities exposed to Assist, with names, aliases, areas and floors."""
    entity_reg = er.async_get(hass)
    device_reg = dr.async_get(hass)
    area_reg = ar.async_get(hass)
    floor_reg = fr.async_get(hass)
    found: list[ExposedEntity] = []
    for state in hass.states.async_all():
        if not async_should_expose(hass, ASSISTANT, state.entity_id):
            continue
        entry = entity_reg.async_get(state.entity_id)
        area_id = entry.area_id if entry else None
        if entry and area_id is None and entry.device_id and (device := device_reg.async_get(entry.device_id)):
            area_id = device.area_id
        area = area_reg.async_get_area(area_id) if area_id else None
        floor = floor_reg.async_get_floor(area.floor_id) if area and area.floor_id else None
        found.append(
            ExposedEntity(
                entity_id=state.entity_id,
                name=state.name,
                domain=state.domain,
                aliases=tuple(sorted(entry.aliases)) if entry else (),
                area=area.name if area else None,
                floor=floor.name if floor else None,
                device_class=state.attributes.get("device_class"),
            )
        )
    return tuple(found)


async def async_execute(hass: HomeAssistant, api_id: str, call: ToolCall, device_id: str | None) -> ToolResult:
    """Run one tool call through the LLM API; every failure becomes a structured, speakable error."""
    try:
        api = await async_get_api(hass, api_id, device_id, text=call.text, language=call.language)
    except HomeAssistantError as err:
        return _error(call, ToolErrorCode.UNAVAILABLE, f"Home Assistant's {api_id} tools are not available: {err}")
    tool = next((tool for tool in api.tools if tool.name == call.name), None)
    if tool is None:
        return _error(call, ToolErrorCode.UNKNOWN_TOOL, f"There is no tool called {call.name} here.")

    # Home Assistant's async_call_tool does not validate: check against the tool's own schema.
    problems = check_arguments(tool_definition(tool, api).parameters, call.arguments)
    if problems:
        return _error(call, ToolErrorCode.INVALID_ARGUMENTS, f"Bad arguments for {call.name}: " + "; ".join(problems))
    try:
        arguments = tool.parameters(call.arguments)
    except vol.Invalid as err:
        return _error(call, ToolErrorCode.INVALID_ARGUMENTS, f"Bad arguments for {call.name}: {err}")

    try:
        result = await api.async_call_tool(_tool_input(call.name, dict(arguments)))
    except intent.MatchFailedError as err:
        return _error(call, ToolErrorCode.NO_MATCH, describe_match_failure(err))
    except (intent.IntentHandleError, intent.InvalidSlotInfo) as err:
        return _error(call, ToolErrorCode.FAILED, _sentence(str(err)) or f"{call.name} failed.")
    except vol.Invalid as err:
        return _error(call, ToolErrorCode.INVALID_ARGUMENTS, f"Bad arguments for {call.name}: {err}")
    except HomeAssistantError as err:
        return _error(call, ToolErrorCode.FAILED, _sentence(str(err)) or f"{call.name} failed.")
    except Exception:  # a tool's own bug must not take the integration down
        _LOGGER.exception("Tool %s failed", call.name)
        return _error(call, ToolErrorCode.FAILED, f"Something went wrong while running {call.name}.")

    data = json.loads(json_dumps(result)) if result is not None else {}
    if not isinstance(data, dict):
        data = {"result": data}
    return ToolResult(call_id=call.call_id, result=data, speech=_speech(data))


def _tool_input(name: str, arguments: dict[str, Any]) -> llm.ToolInput:
    return llm.ToolInput(tool_name=name, tool_args=arguments)


def _error(call: ToolCall, code: str, message: str) -> ToolResult:
    _LOGGER.debug("Tool call %s (%s) refused: %s", call.call_id, call.name, message)
    return ToolResult(call_id=call.call_id, error=code, message=message)


def _speech(result: dict[str, Any]) -> str | None:
    speech = result.get("speech")
    if isinstance(speech, dict):
        plain = speech.get("plain")
        if isinstance(plain, dict) and isinstance(plain.get("speech"), str) and plain["speech"].strip():
            return plain["speech"]
    return None


def _sentence(text: str) -> str:
    text = text.strip()
    if text and text[-1] not in ".!?":
        text += "."
    return text[:1].upper() + text[1:]


def _target(constraints: intent.MatchTargetsConstraints) -> str:
    if constraints.name and constraints.area_name:
        return f"the {constraints.name} in the {constraints.area_name}"
    if constraints.name:
        return f"the {constraints.name}"
    if constraints.area_name:
        return f"anything in the {constraints.area_name}"
    if constraints.floor_name:
        return f"anything on the {constraints.floor_name}"
    if constraints.domains:
        return "any " + " or ".join(sorted(constraints.domains))
    return "that"


_REASONS = {
    intent.MatchFailedReason.ASSISTANT: lambda c, r: f"I can't control {_target(c)}.",
    intent.MatchFailedReason.NAME: lambda c, r: f"I don't know any device called {c.name}.",
    intent.MatchFailedReason.AREA: lambda c, r: f"I found nothing like that in the {c.area_name}.",
    intent.MatchFailedReason.FLOOR: lambda c, r: f"I found nothing like that on the {c.floor_name}.",
    intent.MatchFailedReason.INVALID_AREA: lambda c, r: f"There is no area called {r.no_match_name or c.area_name}.",
    intent.MatchFailedReason.INVALID_FLOOR: lambda c, r: f"There is no floor called {r.no_match_name or c.floor_name}.",
    intent.MatchFailedReason.DOMAIN: lambda c, r: f"I found no {' or '.join(sorted(c.domains or ())) or 'device'} like that.",
    intent.MatchFailedReason.DEVICE_CLASS: lambda c, r: "I found no device of that kind.",
    intent.MatchFailedReason.FEATURE: lambda c, r: f"{_target(c)[:1].upper()}{_target(c)[1:]} can't do that.",
    intent.MatchFailedReason.STATE: lambda c, r: f"{_target(c)[:1].upper()}{_target(c)[1:]} is already like that.",
    intent.MatchFailedReason.DUPLICATE_NAME: lambda c, r: f"There is more than one {r.no_match_name or c.name}; which area do you mean?",
    intent.MatchFailedReason.MULTIPLE_TARGETS: lambda c, r: "That matches more than one device; please be more specific.",
}


def describe_match_failure(err: intent.MatchFailedError) -> str:
    """A sentence for a failed match (MatchFailedError's own str() is a repr)."""
    reason = err.result.no_match_reason
    describe = _REASONS.get(reason) if reason is not None else None
    if describe is None:
        return f"I couldn't find {_target(err.constraints)}."
    return describe(err.constraints, err.result)
