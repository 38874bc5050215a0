"""The llm brain against the scripted Chat Completions server (exact SSE wire format)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hearth.server.engines.cascade.brain_llm import APOLOGIES, LlmBrain, LlmConfig, chat_messages
from hearth.server.engines.cascade.engine import CascadeEngine
from hearth.server.session.interfaces import (
    ContextItem,
    EngineFailure,
    OutputAudio,
    OutputFunctionCall,
    OutputFunctionCallDelta,
    OutputText,
    OutputUsage,
    ResponseRequest,
)
from tests.support.fake_chat_server import FakeChatServer, Reply, ScriptedCall

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME_TOOL = {"type": "function", "name": "get_time", "description": "Local time in a zone.",
             "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}


def user(text: str, item_id: str = "u1") -> ContextItem:
    return ContextItem(type="message", id=item_id, role="user", text=text)


def request(items: list[ContextItem] | str = "Tell me a joke.", **fields: Any) -> ResponseRequest:
    base: dict[str, Any] = {"instructions": "You are Hearth.", "tools": [], "tool_choice": "auto",
                            "output_modalities": ["text"], "voice": "alloy", "speed": 1.0}
    base.update(fields)
    return ResponseRequest(items=[user(items)] if isinstance(items, str) else items, **base)


_BRAINS: list[LlmBrain] = []


@pytest.fixture
async def fake() -> AsyncIterator[FakeChatServer]:
    async with FakeChatServer(api_key="sk-local") as server:
        yield server
        while _BRAINS:  # their connection pools, on this loop
            await _BRAINS.pop().close()


def tracked(brain: LlmBrain) -> LlmBrain:
    _BRAINS.append(brain)
    return brain


def brain_for(fake: FakeChatServer, **options: Any) -> LlmBrain:
    return tracked(LlmBrain(LlmConfig(base_url=fake.base_url, model="fake-model", api_key="sk-local", **options)))


async def run(brain: LlmBrain, req: ResponseRequest) -> tuple[list[Any], EngineFailure | None]:
    events: list[Any] = []
    try:
        async for event in brain.respond(req):
            events.append(event)
    except EngineFailure as failure:
        return events, failure
    return events, None


def text(events: list[Any]) -> str:
    return "".join(e.delta for e in events if isinstance(e, OutputText))


# --------------------------------------------------------------------------- the request


async def test_request_carries_history_instructions_tools_and_limits(fake: FakeChatServer) -> None:
    items = [
        user("What's the weather in Paris and the time in Tokyo?"),
        ContextItem(type="message", id="a1", role="assistant", text="Let me check."),
        ContextItem(type="function_call", id="c1", name="get_weather", arguments='{"city": "Paris"}', call_id="call_w"),
        ContextItem(type="function_call", id="c2", name="get_time", arguments='{"zone": "JST"}', call_id="call_t"),
        ContextItem(type="function_call_output", id="o2", call_id="call_t", output='{"time": "09:00"}'),
        ContextItem(type="function_call_output", id="o1", call_id="call_w", output='{"sky": "clear"}'),
        ContextItem(type="message", id="a2", role="assistant", text="It's clear in Paris and nine in"),
        user("Thanks!", "u2"),
        ContextItem(type="function_call", id="c3", name="get_time", arguments="{}", call_id="call_unanswered"),
        ContextItem(type="function_call_output", id="o9", call_id="call_orphan", output="{}"),
    ]
    brain = brain_for(fake, temperature=0.3, extra_body={"top_p": 0.9}, max_tokens_field="max_completion_tokens")
    events, failure = await run(brain, request(items, tools=[WEATHER_TOOL, TIME_TOOL],
                                               tool_choice={"type": "function", "name": "get_time"},
                                               max_output_tokens=120))
    assert failure is None and text(events) == "Hello from the fake model."
    body = fake.requests[0].body
    assert body["model"] == "fake-model" and body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "You are Hearth."},
        {"role": "user", "content": "What's the weather in Paris and the time in Tokyo?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_w", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_t", "type": "function", "function": {"name": "get_time", "arguments": '{"zone": "JST"}'}}]},
        {"role": "tool", "tool_call_id": "call_w", "content": '{"sky": "clear"}'},
        {"role": "tool", "tool_call_id": "call_t", "content": '{"time": "09:00"}'},
        # A truncated turn is what the listener heard, and stays that way.
        {"role": "assistant", "content": "It's clear in Paris and nine in"},
        {"role": "user", "content": "Thanks!"},
    ]
    assert body["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city.", "parameters": WEATHER_TOOL["parameters"]}}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert body["max_completion_tokens"] == 120 and "max_tokens" not in body
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["stream_options"] == {"include_usage": True}
    assert fake.requests[0].headers["Authorization"] == "Bearer sk-local"


async def test_per_response_temperature_and_no_tools_means_no_tool_choice(fake: FakeChatServer) -> None:
    await run(brain_for(fake, temperature=0.9), request(temperature=0.1, tool_choice="required"))
    body = fake.requests[0].body
    assert body["temperature"] == 0.1
    assert "tools" not in body and "tool_choice" not in body  # endpoints reject a choice without tools
    assert "max_tokens" not in body


def test_api_key_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-from-file\n")
    assert LlmConfig(base_url="http://x/v1", model="m", api_key_file=key).key() == "sk-from-file"
    with pytest.raises(ValueError, match="cannot read api_key_file"):
        LlmConfig(base_url="http://x/v1", model="m", api_key_file=tmp_path / "missing").key()


# --------------------------------------------------------------------------- the stream


async def test_text_streams_before_the_upstream_finishes(fake: FakeChatServer) -> None:
    fake.push(Reply(text="Why did the scarecrow win an award? Because he was outstanding in his field.",
                    chunk_delay=0.05))
    brain = brain_for(fake)
    seen_before_end = None
    pieces = []
    async for event in brain.respond(request()):
        if seen_before_end is None:
            seen_before_end = not fake.requests[0].ended.is_set()
        pieces.append(event)
    assert seen_before_end is True
    assert len([p for p in pieces if isinstance(p, OutputText)]) > 5
    assert text(pieces) == "Why did the scarecrow win an award? Because he was outstanding in his field."
    assert pieces[-1] == OutputUsage(input_tokens=17, output_tokens=14)


async def test_tool_call_streams_its_arguments_keeps_the_models_id_and_text_comes_first(
        fake: FakeChatServer) -> None:
    fake.push(Reply(text="Checking.", tool_calls=[ScriptedCall("get_weather", '{"city": "Paris"}', id="call_abc",
                                                               pieces=4)]))
    events, failure = await run(brain_for(fake), request(tools=[WEATHER_TOOL]))
    assert failure is None
    assert [type(e) for e in events] == [OutputText, *[OutputFunctionCallDelta] * 4, OutputFunctionCall, OutputUsage]
    deltas = events[1:5]
    assert {(d.call_id, d.name) for d in deltas} == {("call_abc", "get_weather")}
    assert "".join(d.delta for d in deltas) == '{"city": "Paris"}'
    assert events[5] == OutputFunctionCall(name="get_weather", arguments='{"city": "Paris"}', call_id="call_abc")


async def test_argument_pieces_are_yielded_as_the_endpoint_streams_them(fake: FakeChatServer) -> None:
    held = threading.Event()  # the model has not finished until the test says so
    fake.push(Reply(tool_calls=[ScriptedCall("get_weather", '{"city": "Paris"}', id="call_abc")], hold_end=held))
    stream = brain_for(fake).respond(request(tools=[WEATHER_TOOL]))
    try:
        first = await asyncio.wait_for(stream.__anext__(), 5)
        assert isinstance(first, OutputFunctionCallDelta) and not fake.requests[0].ended.is_set()
    finally:
        held.set()
        await stream.aclose()


async def test_parallel_tool_calls(fake: FakeChatServer) -> None:
    fake.push(Reply(tool_calls=[ScriptedCall("get_weather", '{"city": "Paris"}', id="call_1", pieces=4),
                                ScriptedCall("get_time", '{"zone": "CET"}', id="call_2", pieces=4)], parallel=True))
    events, failure = await run(brain_for(fake), request(tools=[WEATHER_TOOL, TIME_TOOL]))
    calls = [e for e in events if isinstance(e, OutputFunctionCall)]
    assert failure is None and [(c.name, json.loads(c.arguments), c.call_id) for c in calls] == [
        ("get_weather", {"city": "Paris"}, "call_1"), ("get_time", {"zone": "CET"}, "call_2")]
    deltas = [e for e in events if isinstance(e, OutputFunctionCallDelta)]
    assert [d.call_id for d in deltas] == ["call_1", "call_2"] * 4  # interleaved, as the endpoint sent them
    for call in calls:
        assert "".join(d.delta for d in deltas if d.call_id == call.call_id) == call.arguments
        assert {d.name for d in deltas if d.call_id == call.call_id} == {call.name}
    assert events.index(calls[0]) > events.index(deltas[-1])  # complete once the model has finished


async def test_closing_mid_stream_closes_the_upstream_request(fake: FakeChatServer) -> None:
    fake.push(Reply(text="one two three four five six seven eight nine ten", chunk_delay=0.2))
    stream = brain_for(fake).respond(request())
    first = await stream.__anext__()
    assert isinstance(first, OutputText)
    await stream.aclose()
    recorded = fake.requests[0]
    await asyncio.wait_for(recorded.ended.wait(), 10)  # bounds a hang only
    # Closed, not read to the end: the upstream saw the client go before its ten chunks were sent.
    assert recorded.client_closed and not recorded.completed


async def test_cancelling_the_consumer_closes_the_upstream_request(fake: FakeChatServer) -> None:
    fake.push(Reply(text="one two three", first_token_delay=60.0))

    async def consume() -> None:
        async for _ in brain_for(fake).respond(request()):
            pass

    task = asyncio.create_task(consume())
    await fake.wait_for_requests(1)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake.requests[0].ended.wait(), 10)  # the first token is 60 s away
    assert fake.requests[0].client_closed and not fake.requests[0].completed


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(("status", "code", "upstream"), [
    (500, "upstream_error", "The server had an error while processing your request."),
    (429, "upstream_rate_limited", "Rate limit reached for requests."),
])
async def test_upstream_http_errors_are_an_apology_then_a_failure(
        fake: FakeChatServer, status: int, code: str, upstream: str) -> None:
    fake.push(Reply(status=status))
    events, failure = await run(brain_for(fake), request())
    assert failure is not None and failure.code == code and upstream in failure.message
    assert text(events) == APOLOGIES[code]
    assert len(fake.requests) == 1  # no retry by default: a spoken reply cannot wait for backoff


async def test_first_token_timeout(fake: FakeChatServer, caplog: pytest.LogCaptureFixture) -> None:
    fake.push(Reply(hang=True))
    started = time.monotonic()
    events, failure = await run(brain_for(fake, first_token_timeout_s=0.3), request())
    # Not before the timeout (load only delays it); the fake never answers, so returning at all is the timeout.
    assert time.monotonic() - started >= 0.3
    assert failure is not None and failure.code == "upstream_timeout" and "first token" in failure.message
    assert text(events) == APOLOGIES["upstream_timeout"]
    await asyncio.wait_for(fake.requests[0].ended.wait(), 10)  # bounds a hang only
    assert fake.requests[0].client_closed


async def test_total_timeout_after_partial_text(fake: FakeChatServer) -> None:
    fake.push(Reply(text="This answer never really ends", chunk_delay=0.3))
    events, failure = await run(brain_for(fake, total_timeout_s=0.5), request())
    assert failure is not None and failure.code == "upstream_timeout" and "rest of the reply" in failure.message
    said = text(events)
    assert said.startswith("This") and said.endswith(" " + APOLOGIES["upstream_timeout"])


async def test_slow_first_token_is_logged_with_its_time(fake: FakeChatServer, caplog: pytest.LogCaptureFixture) -> None:
    fake.push(Reply(text="Fine.", first_token_delay=0.25))
    with caplog.at_level(logging.WARNING, logger="hearth.server.engines.cascade.brain_llm"):
        events, failure = await run(brain_for(fake, slow_first_token_s=0.1), request())
    assert failure is None and text(events) == "Fine."
    (record,) = [r for r in caplog.records if "slow first token" in r.getMessage()]
    assert 250 <= int(record.getMessage().split("after ")[1].split(" ms")[0]) < 1000


async def test_refusal_and_dropped_stream_and_unreachable(fake: FakeChatServer) -> None:
    fake.push(Reply(refusal="I can't assist with that."), Reply(text="one two three four", drop_after=2))
    events, failure = await run(brain_for(fake), request())
    assert failure is not None and failure.code == "upstream_refusal" and "I can't assist" in failure.message
    assert text(events) == APOLOGIES["upstream_refusal"]
    events, failure = await run(brain_for(fake), request())
    assert failure is not None and failure.code == "upstream_error"
    assert text(events) == "one two " + APOLOGIES["upstream_error"]

    closed = tracked(LlmBrain(LlmConfig(base_url="http://127.0.0.1:9/v1", model="m", connect_timeout_s=1.0)))
    events, failure = await run(closed, request())
    assert failure is not None and failure.code == "upstream_unreachable" and "127.0.0.1:9" in failure.message


async def test_reasoning_block_is_not_spoken(fake: FakeChatServer) -> None:
    fake.push(Reply(text=["<thi", "nk>The user wants", " a joke.</think>", "\n\nWhy ", "not?"]))
    events, _ = await run(brain_for(fake), request())
    assert text(events) == "Why not?"


def test_messages_leave_out_empty_turns() -> None:
    req = request([user(" "), ContextItem(type="message", id="s", role="system", text="Be brief.")], instructions="")
    assert chat_messages(req) == [{"role": "system", "content": "Be brief."}]


# --------------------------------------------------------------------------- through the cascade


async def test_cascade_speaks_the_first_sentence_before_the_upstream_ends(
        fake: FakeChatServer, transcriber, synthesizer) -> None:
    held = threading.Event()
    fake.push(Reply(text="Sure, here is one. A second sentence follows after a while, and then a third one ends it.",
                    hold_end=held))
    cascade = CascadeEngine(brain_for(fake), transcriber, synthesizer)
    first_audio_before_end = None
    chunks = []

    async def consume() -> None:
        nonlocal first_audio_before_end
        async for chunk in cascade.respond(request(output_modalities=["audio"])):
            if isinstance(chunk, OutputAudio) and first_audio_before_end is None:
                first_audio_before_end = not fake.requests[0].ended.is_set()
                held.set()  # the model finishes only once speech has started
            chunks.append(chunk)

    await asyncio.wait_for(consume(), 30)
    assert first_audio_before_end is True
    assert isinstance(chunks[-1], OutputUsage)


# --------------------------------------------------------------------------- a server-side tool, through a session


async def test_server_side_tool_round_trip_within_the_turn(fake: FakeChatServer) -> None:
    from hearth.server.protocol import client_events as ce
    from hearth.server.session.interfaces import ToolResult
    from hearth.server.session.session import RealtimeSession, SessionOptions
    from hearth.server.session.testing import RecordingSink, ScriptedToolbox

    def model(recorded):  # calls the house's tool, then speaks from its result
        if recorded.messages[-1]["role"] == "tool":
            return Reply(text="The kitchen light is on.")
        return Reply(tool_calls=[ScriptedCall("HassTurnOn", '{"name": "Kitchen Light"}', id="call_ha_1")])

    fake.script = model
    toolbox = ScriptedToolbox(tools={"HassTurnOn": ToolResult(output='{"success": true}')})
    sink = RecordingSink()
    session = RealtimeSession(CascadeEngine(brain_for(fake), None, None), sink, SessionOptions(),  # type: ignore[arg-type]
                              toolbox=toolbox)
    session.start()
    session.submit(ce.SessionUpdate(type="session.update", session={
        "type": "realtime", "output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}))
    session.handle_text(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Turn on the kitchen light."}]}}))
    session.submit(ce.ResponseCreate(type="response.create"))
    await sink.wait_for("response.done", 2, timeout=10)
    session.close()
    first, second = (e["response"] for e in sink.of_type("response.done"))
    assert first["output"][0]["call_id"] == "call_ha_1" and toolbox.calls[0].call_id == "call_ha_1"
    assert second["status"] == "completed"
    assert second["output"][0]["content"][0]["text"] == "The kitchen light is on."
    assert fake.requests[0].body["tools"][0]["function"]["name"] == "HassTurnOn"
    assert fake.requests[1].messages[-1] == {"role": "tool", "tool_call_id": "call_ha_1", "content": '{"success": true}'}
