"""Function calls whose arguments stream in pieces (`OutputFunctionCallDelta`), through a session.

Every event is checked against the `openai` SDK's `RealtimeServerEvent`; a call that is
emitted whole (the intents brain) keeps its one-delta shape (tests/session/test_session.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from hearth.server.protocol import client_events as ce
from hearth.server.session.interfaces import (
    OutputFunctionCall,
    OutputFunctionCallDelta,
    OutputText,
    ResponseChunk,
    ToolResult,
)
from hearth.server.session.session import RealtimeSession, SessionOptions
from hearth.server.session.testing import RecordingSink, ScriptedEngine, ScriptedToolbox

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
WEATHER = '{"city": "Paris", "unit": "celsius"}'
CLOCK = '{"zone": "Asia/Tokyo"}'


def pieces(call_id: str, name: str, arguments: str, size: int = 5) -> list[OutputFunctionCallDelta]:
    return [OutputFunctionCallDelta(call_id, name, arguments[i : i + size]) for i in range(0, len(arguments), size)]


def session_with(chunks: list[ResponseChunk], *, chunk_delay: float = 0.0,
                 toolbox: ScriptedToolbox | None = None) -> tuple[RealtimeSession, RecordingSink, ScriptedEngine]:
    engine = ScriptedEngine(reply=chunks, chunk_delay=chunk_delay)
    sink = RecordingSink()
    session = RealtimeSession(engine, sink, SessionOptions(), toolbox=toolbox)
    session.start()
    session.submit(ce.SessionUpdate(type="session.update", session={
        "type": "realtime", "output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}))
    session.handle_text(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather and time?"}]}}))
    session.submit(ce.ResponseCreate(type="response.create"))
    return session, sink, engine


def validated(sink: RecordingSink) -> list[dict[str, Any]]:
    for event in sink.events:
        SERVER_EVENT.validate_python(event)
    return sink.events


def of_call(events: list[dict[str, Any]], call_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("call_id") == call_id or e.get("item", {}).get("call_id") == call_id]


async def test_arguments_stream_as_deltas_then_done_after_the_text() -> None:
    chunks: list[ResponseChunk] = [OutputText("Let me check."), *pieces("call_w", "get_weather", WEATHER),
                                   OutputFunctionCall("get_weather", WEATHER, "call_w")]
    session, sink, _ = session_with(chunks)
    await sink.wait_for("response.done")
    session.close()
    events = validated(sink)
    kinds = [e["type"] for e in of_call(events, "call_w")]
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert len(deltas) == len(pieces("call_w", "get_weather", WEATHER)) > 3 and "".join(deltas) == WEATHER
    assert kinds == ["response.output_item.added", "conversation.item.added",
                     *["response.function_call_arguments.delta"] * len(deltas),
                     "response.function_call_arguments.done", "conversation.item.done", "response.output_item.done"]
    types = [e["type"] for e in events]
    assert types.index("response.output_text.done") < types.index("response.function_call_arguments.delta")
    (done,) = sink.of_type("response.done")
    message, call = done["response"]["output"]
    assert message["content"][0]["text"] == "Let me check."
    assert call == {**call, "status": "completed", "call_id": "call_w", "name": "get_weather", "arguments": WEATHER}


async def test_parallel_calls_interleave_each_in_its_own_item() -> None:
    weather, clock = pieces("call_w", "get_weather", WEATHER), pieces("call_t", "get_time", CLOCK)
    interleaved: list[ResponseChunk] = [p for pair in zip(weather, clock, strict=False) for p in pair]
    interleaved += weather[len(clock):]
    chunks = [*interleaved, OutputFunctionCall("get_weather", WEATHER, "call_w"),
              OutputFunctionCall("get_time", CLOCK, "call_t")]
    session, sink, _ = session_with(chunks)
    await sink.wait_for("response.done")
    session.close()
    events = validated(sink)
    for call_id, arguments in (("call_w", WEATHER), ("call_t", CLOCK)):
        mine = of_call(events, call_id)
        (added,) = [e for e in mine if e["type"] == "response.output_item.added"]
        deltas = [e for e in mine if e["type"] == "response.function_call_arguments.delta"]
        assert {e["item_id"] for e in deltas} == {added["item"]["id"]}
        assert {e["output_index"] for e in deltas} == {added["output_index"]}
        assert "".join(e["delta"] for e in deltas) == arguments
        (done,) = [e for e in mine if e["type"] == "response.function_call_arguments.done"]
        assert done["arguments"] == arguments
    delta_calls = [e["call_id"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert delta_calls[:4] == ["call_w", "call_t", "call_w", "call_t"]  # interleaved on the wire, as streamed
    output = sink.of_type("response.done")[0]["response"]["output"]
    assert [(o["call_id"], o["status"]) for o in output] == [("call_w", "completed"), ("call_t", "completed")]


async def test_cancel_mid_arguments_leaves_the_call_incomplete_and_unrun() -> None:
    toolbox = ScriptedToolbox(tools={"get_weather": ToolResult(output='{"sky": "sunny"}')})
    chunks: list[ResponseChunk] = [*pieces("call_w", "get_weather", WEATHER, size=3),
                                   OutputFunctionCall("get_weather", WEATHER, "call_w")]
    session, sink, _ = session_with(chunks, chunk_delay=0.02, toolbox=toolbox)
    await sink.wait_for("response.function_call_arguments.delta", 2)
    session.submit(ce.ResponseCancel(type="response.cancel"))
    done = (await sink.wait_for("response.done"))["response"]
    await asyncio.sleep(0.1)
    session.close()
    events = validated(sink)
    assert done["status"] == "cancelled"
    (call,) = done["output"]
    streamed = "".join(e["delta"] for e in sink.of_type("response.function_call_arguments.delta"))
    assert call["status"] == "incomplete" and call["arguments"] == streamed and streamed != WEATHER
    assert sink.of_type("response.function_call_arguments.done") == []  # nothing a client could run
    (item_done,) = [e for e in events if e["type"] == "response.output_item.done"]
    assert item_done["item"]["status"] == "incomplete"
    assert toolbox.calls == [] and len(sink.of_type("response.created")) == 1  # no tool round


async def test_a_server_side_call_streamed_in_pieces_runs_once_complete() -> None:
    toolbox = ScriptedToolbox(tools={"get_weather": ToolResult(output='{"sky": "sunny"}')})

    def reply(request: Any) -> list[ResponseChunk]:
        if request.items[-1].type == "function_call_output":
            return [OutputText("It's sunny.")]
        return [*pieces("call_w", "get_weather", WEATHER), OutputFunctionCall("get_weather", WEATHER, "call_w")]

    engine = ScriptedEngine(reply=reply)
    sink = RecordingSink()
    session = RealtimeSession(engine, sink, SessionOptions(), toolbox=toolbox)
    session.start()
    session.submit(ce.SessionUpdate(type="session.update", session={
        "type": "realtime", "output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}))
    session.handle_text(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}}))
    session.submit(ce.ResponseCreate(type="response.create"))
    await sink.wait_for("response.done", 2)
    session.close()
    validated(sink)
    assert [(c.call_id, c.arguments) for c in toolbox.calls] == [("call_w", WEATHER)]
