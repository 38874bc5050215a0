"""Strict tool schemas (every parameter required, optional ones with a default or null) get calls.

openai-agents' `function_tool` and @openai/agents-realtime's zod `tool()` declare tools this
way by default; the schemas here come from a real decorated function (Python) and from the
JSON that `@openai/agents-realtime`'s `tool()` declares for zod `.nullable()` and `.default()`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from agents import function_tool

from hearth.server.engines.cascade.brain_intents import IntentsBrain, IntentsConfig
from hearth.server.tools.schema import schema_fallback
from hearth.server.session.interfaces import ContextItem, Declined, OutputFunctionCall, ResponseRequest

CONFIG = IntentsConfig(names=[{"name": "Kitchen Light", "domain": "light", "areas": ["Kitchen"]}],
                       areas=["Kitchen", "Bedroom"])


def agents_tool() -> dict[str, Any]:
    """HassTurnOn as `function_tool` declares it, in the Realtime tool shape the SDK sends."""

    @function_tool(name_override="HassTurnOn")
    def turn_on(name: str | None = None, area: str | None = None, domain: list[str] | None = None,
                transition: int = 0) -> str:
        """Turns on a device or entity.

        Args:
            name: Name of the device or entity.
            area: Area of the device.
            domain: Domains of the device.
            transition: Seconds to fade in.
        """
        return "ok"

    assert turn_on.strict_json_schema
    return {"type": "function", "name": turn_on.name, "description": turn_on.description,
            "parameters": turn_on.params_json_schema}


#: What @openai/agents-realtime 0.20.0's `tool()` (zod 4.6.7) declares for `z.object({name:
#: z.string().nullable(), area: z.string().nullable(), brightness: z.number().int().default(100)})`,
#: recorded from the real packages (`tool(...).parameters`, `strict: true`); npm is not part of CI.
ZOD_LIGHT_SET = {
    "type": "function", "name": "HassLightSet", "description": "Sets a light.",
    "parameters": {
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "properties": {"name": {"type": ["string", "null"]}, "area": {"type": ["string", "null"]},
                       "brightness": {"default": 100, "type": "integer", "minimum": -9007199254740991,
                                      "maximum": 9007199254740991}},
        "required": ["name", "area", "brightness"], "additionalProperties": False},
}


def request(text: str, tools: list[dict[str, Any]]) -> ResponseRequest:
    return ResponseRequest(instructions="", items=[ContextItem(type="message", id="item_u", role="user", text=text)],
                           tools=tools, tool_choice="auto", output_modalities=["text"], voice="joe", speed=1.0)


@pytest.fixture(scope="module")
def brain() -> IntentsBrain:
    return IntentsBrain(CONFIG, now=lambda: datetime(2025, 3, 4, 15, 5))


async def reply(brain: IntentsBrain, text: str, tools: list[dict[str, Any]]) -> list[Any]:
    return [chunk async for chunk in brain.respond(request(text, tools))]


async def test_function_tool_schema_produces_the_call(brain: IntentsBrain) -> None:
    chunks = await reply(brain, "turn on the kitchen light", [agents_tool()])
    assert len(chunks) == 1 and isinstance(chunks[0], OutputFunctionCall), chunks
    assert chunks[0].name == "HassTurnOn"
    # Every required parameter is present: the sentence's, the default, and null for the rest.
    assert json.loads(chunks[0].arguments) == {"name": "Kitchen Light", "area": None, "domain": ["light"],
                                               "transition": 0}


async def test_zod_nullable_and_default(brain: IntentsBrain) -> None:
    chunks = await reply(brain, "set the kitchen light to 40%", [ZOD_LIGHT_SET])
    assert len(chunks) == 1 and isinstance(chunks[0], OutputFunctionCall), chunks
    assert json.loads(chunks[0].arguments) == {"name": "Kitchen Light", "area": None, "brightness": 40}
    turn_on = {"type": "function", "name": "HassTurnOn", "parameters": {
        "type": "object", "additionalProperties": False, "required": ["name", "area", "domain"],
        "properties": {"name": {"type": ["string", "null"]}, "area": {"type": ["string", "null"]},
                       "domain": {"type": ["array", "null"], "items": {"type": "string"}}}}}
    chunks = await reply(brain, "turn on the lights in the kitchen", [turn_on])
    assert len(chunks) == 1 and isinstance(chunks[0], OutputFunctionCall), chunks
    assert json.loads(chunks[0].arguments) == {"name": None, "area": "Kitchen", "domain": ["light"]}


async def test_a_required_parameter_without_default_or_null_still_declines(brain: IntentsBrain) -> None:
    tool = agents_tool()
    tool["parameters"]["properties"]["area"] = {"type": "string"}  # required, not nullable, no default
    chunks = await reply(brain, "turn on the kitchen light", [tool])
    assert len(chunks) == 1 and isinstance(chunks[0], Declined), chunks
    assert "don't know the area" in chunks[0].reply


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "string", "default": "light"}, (True, "light")),
    ({"type": ["string", "null"]}, (True, None)),
    ({"anyOf": [{"type": "string"}, {"type": "null"}]}, (True, None)),
    ({"oneOf": [{"$ref": "#/$defs/Color"}, {"type": "null"}]}, (True, None)),
    ({"type": "string", "nullable": True}, (True, None)),
    ({"enum": ["a", None]}, (True, None)),
    ({"type": "array", "items": {"type": "string"}, "default": ["x"]}, (True, ["x"])),
    ({"type": "string"}, (False, None)),
    ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, (False, None)),
    (None, (False, None)),
])
def test_schema_fallback(schema: Any, expected: tuple[bool, Any]) -> None:
    assert schema_fallback(schema) == expected
