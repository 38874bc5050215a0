"""Server-side tools: the session runs the call, adds its output, and a follow-up response speaks.

Driven with the scripted engine and a scripted toolbox; every event is checked against the
SDK's server event types, since a Realtime client sees the whole round trip.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from hearth.server.protocol import client_events as ce
from hearth.server.session.interfaces import (
    OutputAudio,
    OutputFunctionCall,
    OutputText,
    ResponseRequest,
    ToolCall,
    ToolResult,
)
from hearth.server.session.responses import APOLOGY_FAILED, APOLOGY_TIMEOUT, APOLOGY_TOO_MANY, MAX_TOOL_ROUNDS
from hearth.server.session.session import RealtimeSession, SessionOptions
from hearth.server.session.testing import RecordingSink, ScriptedEngine, ScriptedToolbox
from hearth.server.tools.registry import SessionToolbox, ToolRegistry, ToolScope, ToolSpec

SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
LIGHT_ON = ToolResult(output=json.dumps({"success": True, "speech": "Turned on the kitchen light"}))


def calls_then_confirms(request: ResponseRequest) -> list:
    """Call HassTurnOn for a user turn; confirm from the tool's output once it is there."""
    last = request.items[-1]
    if last.type == "function_call_output":
        return [OutputText(f"Done: {json.loads(last.output).get('speech', 'ok')}."),
                OutputAudio(np.zeros(2400, np.int16), 24000)]
    return [OutputFunctionCall("HassTurnOn", json.dumps({"name": "kitchen light"}))]


def client(toolbox: ScriptedToolbox, engine: ScriptedEngine | None = None, **options) -> tuple[RealtimeSession, RecordingSink]:
    sink = RecordingSink()
    session = RealtimeSession(engine or ScriptedEngine(reply=calls_then_confirms), sink,
                              SessionOptions(**options), toolbox=toolbox)
    session.start()
    session.submit(ce.SessionUpdate(type="session.update", session={
        "type": "realtime", "audio": {"input": {"turn_detection": None}}}))
    return session, sink


def ask(session: RealtimeSession, text: str = "turn on the kitchen light") -> None:
    session.handle_text(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))
    session.submit(ce.ResponseCreate(type="response.create"))


def valid(sink: RecordingSink) -> None:
    for event in sink.events:
        SERVER_EVENT.validate_python(event)


def spoken(sink: RecordingSink) -> list[str]:
    return [e["transcript"] for e in sink.of_type("response.output_audio_transcript.done")]


async def test_server_tool_round_trip_is_visible_as_protocol_items() -> None:
    toolbox = ScriptedToolbox(tools={"HassTurnOn": LIGHT_ON})
    session, sink = client(toolbox)
    ask(session)
    second = await sink.wait_for("response.done", 2)
    first = sink.of_type("response.done")[0]
    call = first["response"]["output"][0]
    assert call["type"] == "function_call" and call["name"] == "HassTurnOn"
    assert toolbox.calls == [ToolCall("HassTurnOn", json.dumps({"name": "kitchen light"}), call["call_id"], session.id)]
    outputs = [e["item"] for e in sink.of_type("conversation.item.added") if e["item"]["type"] == "function_call_output"]
    assert outputs == [{**outputs[0], "call_id": call["call_id"], "output": LIGHT_ON.output}]
    kinds = sink.types()
    first_done = kinds.index("response.done")
    output_added = next(i for i, e in enumerate(sink.events)
                        if e["type"] == "conversation.item.added" and e["item"]["type"] == "function_call_output")
    assert first_done < output_added < kinds.index("response.created", first_done)
    assert second["response"]["status"] == "completed"
    assert spoken(sink) == ["Done: Turned on the kitchen light."]
    # the engine saw the server tool offered beside the client's (none here), and the output
    assert [t["name"] for t in session.engine.engine.requests[0].tools] == ["HassTurnOn"]
    valid(sink)
    session.close()


async def test_a_failing_tool_is_answered_with_a_spoken_apology() -> None:
    toolbox = ScriptedToolbox(tools={"HassTurnOn": RuntimeError("home assistant exploded")})
    session, sink = client(toolbox)
    ask(session)
    await sink.wait_for("response.done", 2)
    output = next(e["item"] for e in sink.of_type("conversation.item.added")
                  if e["item"]["type"] == "function_call_output")
    assert json.loads(output["output"])["error"]["code"] == "failed"
    assert spoken(sink) == [APOLOGY_FAILED]
    valid(sink)
    # the session goes on
    session.submit(ce.ResponseCreate(type="response.create", response={"output_modalities": ["text"]}))
    await sink.wait_for("response.done", 3)
    session.close()


async def test_a_tool_error_result_speaks_the_tools_own_words() -> None:
    refused = ToolResult(output=json.dumps({"error": "MatchFailedError"}), speech="I can't control the garage door.",
                         error="refused")
    session, sink = client(ScriptedToolbox(tools={"HassTurnOn": refused}))
    ask(session)
    await sink.wait_for("response.done", 2)
    assert spoken(sink) == ["I can't control the garage door."]
    session.close()


async def test_a_tool_that_times_out_is_apologised_for() -> None:
    toolbox = ScriptedToolbox(tools={"HassTurnOn": LIGHT_ON}, delay=5.0)
    session, sink = client(toolbox, tool_timeout_s=0.1)
    ask(session)
    await sink.wait_for("response.done", 2, timeout=3)
    output = next(e["item"] for e in sink.of_type("conversation.item.added")
                  if e["item"]["type"] == "function_call_output")
    assert json.loads(output["output"])["error"]["code"] == "timeout"
    assert spoken(sink) == [APOLOGY_TIMEOUT]
    valid(sink)
    session.close()


async def test_client_tools_still_go_to_the_client() -> None:
    toolbox = ScriptedToolbox(tools={"HassTurnOff": LIGHT_ON})  # a different server tool
    session, sink = client(toolbox)
    session.submit(ce.SessionUpdate(type="session.update", session={"type": "realtime", "tools": [
        {"type": "function", "name": "HassTurnOn", "parameters": {"type": "object", "properties": {}}}]}))
    ask(session)
    done = await sink.wait_for("response.done")
    assert done["response"]["output"][0]["name"] == "HassTurnOn"
    await asyncio.sleep(0.2)
    assert toolbox.calls == []
    assert len(sink.of_type("response.created")) == 1, "no follow-up: the client runs its own tool"
    offered = [t["name"] for t in session.engine.engine.requests[0].tools]
    assert offered == ["HassTurnOn", "HassTurnOff"]
    session.close()


async def test_tool_rounds_are_bounded() -> None:
    engine = ScriptedEngine(reply=[OutputFunctionCall("HassTurnOn", "{}")])  # calls forever
    toolbox = ScriptedToolbox(tools={"HassTurnOn": LIGHT_ON})
    session, sink = client(toolbox, engine)
    ask(session)
    await sink.wait_for("response.done", MAX_TOOL_ROUNDS + 2, timeout=5)
    assert len(toolbox.calls) == MAX_TOOL_ROUNDS
    assert spoken(sink)[-1] == APOLOGY_TOO_MANY
    session.close()


async def test_barge_in_during_a_tool_call_drops_the_follow_up() -> None:
    toolbox = ScriptedToolbox(tools={"HassTurnOn": LIGHT_ON}, delay=0.3)
    session, sink = client(toolbox)
    ask(session)
    await sink.wait_for("response.done")
    assert session.responses.interrupt() is not None
    await asyncio.sleep(0.5)
    assert len(sink.of_type("response.created")) == 1
    session.close()


async def test_toolbox_instructions_join_the_session_instructions() -> None:
    engine = ScriptedEngine(reply=[OutputText("Okay.")])
    session, sink = client(ScriptedToolbox(tools={"HassTurnOn": LIGHT_ON}, prompt="Static context: the kitchen."),
                           engine)
    ask(session)
    await sink.wait_for("response.done")
    assert engine.requests[0].instructions.endswith("Static context: the kitchen.")
    session.close()


# ---------------------------------------------------------------------------- the registry


class Provider:
    def __init__(self, name: str, specs: list[ToolSpec]) -> None:
        self.name = name
        self.specs = specs
        self.calls: list[tuple[ToolScope, ToolCall]] = []

    def tools(self, scope: ToolScope) -> list[ToolSpec]:
        return self.specs if scope.satellite_id != "garage" else []

    def instructions(self, scope: ToolScope) -> str | None:
        return f"{self.name} prompt"

    async def call(self, scope: ToolScope, call: ToolCall) -> ToolResult:
        self.calls.append((scope, call))
        return ToolResult(output=f"{self.name}:{call.name}")


async def test_registry_gives_each_scope_a_live_toolbox_first_provider_wins() -> None:
    registry = ToolRegistry()
    home = Provider("home", [ToolSpec("HassTurnOn", "on"), ToolSpec("HassTurnOff", "off")])
    extra = Provider("extra", [ToolSpec("HassTurnOn", "shadowed"), ToolSpec("GetWeather", "weather")])
    kitchen = registry.for_session(ToolScope("satellite", "kitchen"))
    assert isinstance(kitchen, SessionToolbox) and kitchen.definitions() == []
    registry.add(home)
    registry.add(extra)  # added after the toolbox was made: the view is live
    assert [d["name"] for d in kitchen.definitions()] == ["HassTurnOn", "HassTurnOff", "GetWeather"]
    assert kitchen.handles("GetWeather") and not kitchen.handles("Nope")
    assert kitchen.instructions() == "home prompt\n\nextra prompt"
    result = await kitchen.call(ToolCall("HassTurnOn", "{}", "call_1", "sess_1"))
    assert result.output == "home:HassTurnOn" and home.calls[0][0] == ToolScope("satellite", "kitchen")
    unknown = await kitchen.call(ToolCall("Nope", "{}", "call_2", "sess_1"))
    assert unknown.error == "unknown_tool"
    garage = registry.for_session(ToolScope("satellite", "garage"))
    assert garage.definitions() == []


async def test_a_broken_provider_does_not_hide_the_others() -> None:
    class Broken(Provider):
        def tools(self, scope: ToolScope) -> list[ToolSpec]:
            raise RuntimeError("catalog corrupt")

    registry = ToolRegistry()
    registry.add(Broken("broken", []))
    registry.add(Provider("home", [ToolSpec("HassTurnOn", "on")]))
    assert [d["name"] for d in registry.for_session(ToolScope("realtime")).definitions()] == ["HassTurnOn"]


@pytest.mark.parametrize("count", [200])
async def test_toolbox_offers_a_bounded_number_of_tools(count: int) -> None:
    registry = ToolRegistry()
    registry.add(Provider("many", [ToolSpec(f"tool_{i}", "x") for i in range(count)]))
    assert len(registry.for_session(ToolScope("realtime")).definitions()) == 128


async def test_the_registry_offers_server_tools_to_realtime_clients_only_when_configured() -> None:
    from hearth.server.sessions import SessionPolicy, SessionRegistry

    tools = ToolRegistry()
    tools.add(Provider("home", [ToolSpec("HassTurnOn", "on")]))
    for offered in (False, True):
        registry = SessionRegistry(ScriptedEngine(), tools, SessionPolicy(defaults={}, tools_for_clients=offered))
        realtime = registry.open(RecordingSink())
        satellite = registry.open(RecordingSink(), satellite_id="kitchen")
        assert satellite.toolbox.handles("HassTurnOn")
        assert realtime.toolbox.handles("HassTurnOn") is offered
        await registry.close_all()
