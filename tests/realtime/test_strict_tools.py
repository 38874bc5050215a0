"""Drop-in conformance: tools declared the way openai-agents' `function_tool` declares them.

`function_tool` writes a strict schema: every parameter is required, `str | None = None`
becomes `anyOf [string, null]` and `x: int = 0` keeps `"default": 0`. The intents brain
used to give up on such a tool ("I don't know the area"); now the parameters the sentence
does not fill take their default or null. Checked by text and by speech with the `openai`
SDK, and end to end with `RealtimeAgent`, which runs the tool with those arguments.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from agents import FunctionTool, function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner

from tests.conftest import API_KEY
from tests.server_harness import RunningServer

from .conftest import SERVER_EVENT, Speech, connect, words

pytestmark = pytest.mark.slow

EXPECTED = {"name": "Kitchen Light", "area": None, "domain": ["light"], "transition": 0}


def strict_turn_on(calls: list[dict[str, Any]]) -> FunctionTool:
    @function_tool(name_override="HassTurnOn")
    def turn_on(name: str | None = None, area: str | None = None, domain: list[str] | None = None,
                transition: int = 0) -> dict[str, Any]:
        """Turns on a device or entity.

        Args:
            name: Name of the device or entity.
            area: Name of the area.
            domain: Domains of the device.
            transition: Seconds to fade in.
        """
        calls.append({"name": name, "area": area, "domain": domain, "transition": transition})
        return {"speech": {"plain": {"speech": f"Turned on the {(name or 'lights').lower()}"}},
                "response_type": "action_done",
                "data": {"success": [{"name": name, "type": "entity", "id": "light.kitchen"}], "failed": []}}

    return turn_on


def realtime_tool(tool: FunctionTool) -> dict[str, Any]:
    """The tool as the agents SDK puts it in `session.update` (Realtime function shape)."""
    schema = tool.params_json_schema
    assert tool.strict_json_schema and schema["required"] == ["name", "area", "domain", "transition"]
    assert schema["properties"]["area"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    return {"type": "function", "name": tool.name, "description": tool.description, "parameters": schema}


async def test_strict_tool_call_from_text(server: RunningServer) -> None:
    tool = realtime_tool(strict_turn_on([]))
    async with connect(server, session={"type": "realtime", "output_modalities": ["text"], "tools": [tool]}) as rt:
        mark = rt.mark()
        await rt.conn.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "turn on the kitchen light"}]})
        await rt.conn.response.create()
        response = await rt.response(mark)
        assert not rt.errors(mark)
        [call] = response["output"]
        assert call["type"] == "function_call" and call["name"] == "HassTurnOn", response
        assert json.loads(call["arguments"]) == EXPECTED


async def test_strict_tool_call_from_speech(server: RunningServer, speak: Callable[[str], Speech]) -> None:
    tool = realtime_tool(strict_turn_on([]))
    async with connect(server, session={"type": "realtime", "tools": [tool]}) as rt:
        mark = await rt.say(speak("Turn on the kitchen light."))
        response = await rt.response(mark)
        [call] = response["output"]
        assert call["type"] == "function_call" and json.loads(call["arguments"]) == EXPECTED, response


async def test_agent_runs_a_strict_tool(server: RunningServer) -> None:
    calls: list[dict[str, Any]] = []
    agent = RealtimeAgent(name="Home", instructions="You control the lights.", tools=[strict_turn_on(calls)])
    session = await RealtimeRunner(agent).run(model_config={
        "url": server.ws_url + "?model=gpt-realtime", "api_key": API_KEY,
        "initial_model_settings": {"voice": "alloy"}})
    events: list[Any] = []
    raw: list[dict[str, Any]] = []

    def answered() -> bool:  # the reply to the tool output is done
        return any(e["type"] == "response.done" and e["response"]["output"]
                   and e["response"]["output"][0]["type"] == "message" for e in raw)

    async def consume() -> None:
        async for event in session:
            events.append(event)
            if event.type == "raw_model_event" and event.data.type == "raw_server_event":
                raw.append(event.data.data)
            if answered():
                return

    async with session:
        await session.send_message("turn on the kitchen light")
        await asyncio.wait_for(consume(), 60)
    assert not [e for e in events if e.type == "error"], [e.error for e in events if e.type == "error"]
    for event in raw:
        SERVER_EVENT.validate_python(event)
    assert calls == [{"name": "Kitchen Light", "area": None, "domain": ["light"], "transition": 0}]
    dones = [e["response"] for e in raw if e["type"] == "response.done"]
    assert [d["output"][0]["type"] for d in dones] == ["function_call", "message"]
    assert words(dones[-1]["output"][0]["content"][0]["transcript"]) == "turned on the kitchen light"
