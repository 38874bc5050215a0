"""The real server with the `auto` brain and its LLM at the scripted Chat Completions endpoint.

Driven by the real `openai` SDK over a real socket, with the real Whisper, piper and intents;
only the language model is the scripted stand-in (tests/support/fake_chat_server.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from hearth.server.engines.cascade.brain_llm import APOLOGIES
from tests.conftest import API_KEY
from tests.server_harness import RunningServer, make_config, run_server
from tests.support.fake_chat_server import (
    FakeChatServer,
    RecordedRequest,
    Reply,
    ScriptedCall,
    ThreadedFakeChatServer,
    eventually,
)

from .conftest import Realtime, connect, hass_turn_on

pytestmark = pytest.mark.slow

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CLOCK = {"type": "function", "name": "get_time", "description": "Local time in a time zone.",
         "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}
JOKE = ("Why did the scarecrow win an award? Because he was outstanding in his field. "
        "I have plenty more where that came from, so just ask me again.")


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeChatServer, RunningServer]]:
    with ThreadedFakeChatServer() as fake:
        config = make_config(tmp_path_factory.mktemp("llm-server"), {
            "server": {"api_key": API_KEY},
            "engine": {"brain": {"type": "auto", "names": ["Kitchen Light"],
                                 "llm": {"base_url": fake.base_url, "model": "fake-model",
                                         "first_token_timeout_s": 1.0}}},
        })
        with run_server(config) as server:
            yield fake, server


@pytest.fixture
def fake(llm: tuple[FakeChatServer, RunningServer]) -> FakeChatServer:
    fake = llm[0]
    fake.requests.clear()
    fake.script = None
    return fake


@pytest.fixture
def server(llm: tuple[FakeChatServer, RunningServer]) -> RunningServer:
    return llm[1]


async def ask(rt: Realtime, text: str, **response: object) -> int:
    mark = rt.mark()
    await rt.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    await rt.send({"type": "response.create", **({"response": response} if response else {})})
    return mark


def transcript(response: dict) -> str:
    parts = [part for item in response["output"] if item["type"] == "message" for part in item["content"]]
    return "".join(part.get("transcript") or part.get("text") or "" for part in parts)


async def test_spoken_reply_starts_before_the_upstream_finishes_and_usage_is_the_endpoints(
        fake: FakeChatServer, server: RunningServer) -> None:
    held = threading.Event()  # the model has not finished until the test says so
    fake.script = lambda _r: Reply(text=JOKE, prompt_tokens=31, completion_tokens=29, hold_end=held)
    async with connect(server) as rt:
        mark = await ask(rt, "Tell me a joke.")
        await rt.wait("response.output_audio.delta", since=mark)  # times out if audio waited for the end
        streaming = not fake.requests[0].completed
        held.set()
        response = await rt.response(since=mark)
    assert streaming, "the first audio should play while the model is still writing"
    assert response["status"] == "completed" and transcript(response) == JOKE
    usage = response["usage"]
    assert usage["input_tokens"] == 31 and usage["input_token_details"]["text_tokens"] == 31
    assert usage["output_token_details"]["text_tokens"] == 29 and usage["output_token_details"]["audio_tokens"] > 0
    assert fake.requests[0].messages[-1] == {"role": "user", "content": "Tell me a joke."}


async def test_device_command_is_answered_locally_without_an_upstream_request(
        fake: FakeChatServer, server: RunningServer) -> None:
    async with connect(server, session={"type": "realtime", "output_modalities": ["text"],
                                        "tools": [hass_turn_on(["Kitchen Light"])]}) as rt:
        response = await rt.response(since=await ask(rt, "Turn on the kitchen light."))
    (call,) = response["output"]
    assert call["type"] == "function_call" and call["name"] == "HassTurnOn"
    assert fake.requests == []


def weather_then_answer(recorded: RecordedRequest) -> Reply:
    if recorded.messages[-1]["role"] == "tool":
        return Reply(text="It's sunny in Paris, and it is nine in Tokyo.")
    return Reply(tool_calls=[ScriptedCall("get_weather", '{"city": "Paris"}', id="call_paris_1"),
                             ScriptedCall("get_time", '{"zone": "Asia/Tokyo"}', id="call_tokyo_2")], parallel=True)


async def test_parallel_client_tool_calls_round_trip_with_the_models_call_ids(
        fake: FakeChatServer, server: RunningServer) -> None:
    fake.script = weather_then_answer
    async with connect(server, session={"type": "realtime", "output_modalities": ["text"],
                                        "tools": [WEATHER, CLOCK]}) as rt:
        mark = await ask(rt, "What's the weather in Paris and the time in Tokyo?")
        response = await rt.response(since=mark)
        calls = [item for item in response["output"] if item["type"] == "function_call"]
        assert [(c["name"], c["call_id"], json.loads(c["arguments"])) for c in calls] == [
            ("get_weather", "call_paris_1", {"city": "Paris"}), ("get_time", "call_tokyo_2", {"zone": "Asia/Tokyo"})]
        assert [e["call_id"] for e in rt.find("response.function_call_arguments.done", mark)] == \
            ["call_paris_1", "call_tokyo_2"]
        deltas = rt.find("response.function_call_arguments.delta", mark)
        assert [e["call_id"] for e in deltas[:4]] == ["call_paris_1", "call_tokyo_2"] * 2  # as the model streamed
        for call in calls:
            mine = [e for e in deltas if e["call_id"] == call["call_id"]]
            assert len(mine) == 3 and "".join(e["delta"] for e in mine) == call["arguments"]
            assert {e["item_id"] for e in mine} == {call["id"]}
        mark = rt.mark()
        for call_id, output in (("call_paris_1", '{"sky": "sunny"}'), ("call_tokyo_2", '{"time": "09:00"}')):
            await rt.send({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": call_id, "output": output}})
        await rt.send({"type": "response.create"})
        answer = await rt.response(since=mark)
    assert transcript(answer) == "It's sunny in Paris, and it is nine in Tokyo."
    follow_up = fake.requests[1].messages
    assert follow_up[-3] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_paris_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_tokyo_2", "type": "function", "function": {"name": "get_time", "arguments": '{"zone": "Asia/Tokyo"}'}}]}
    assert follow_up[-2:] == [{"role": "tool", "tool_call_id": "call_paris_1", "content": '{"sky": "sunny"}'},
                              {"role": "tool", "tool_call_id": "call_tokyo_2", "content": '{"time": "09:00"}'}]


async def test_spoken_text_before_a_call_goes_out_before_the_calls_streamed_arguments(
        fake: FakeChatServer, server: RunningServer) -> None:
    fake.script = lambda _r: Reply(text="Let me look that up for you.", tool_calls=[
        ScriptedCall("get_weather", '{"city": "Paris", "unit": "celsius"}', id="call_paris_9", pieces=5)])
    async with connect(server, session={"type": "realtime", "tools": [WEATHER]}) as rt:
        mark = await ask(rt, "What's the weather in Paris?")
        response = await rt.response(since=mark)
        events = rt.events[mark:]
    types = [e["type"] for e in events]
    first_delta = types.index("response.function_call_arguments.delta")
    assert "response.output_audio.delta" in types[:first_delta]
    assert "response.output_audio.delta" not in types[first_delta:]
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert len(deltas) == 5 and "".join(deltas) == '{"city": "Paris", "unit": "celsius"}'
    message, call = response["output"]
    assert message["content"][0]["transcript"] == "Let me look that up for you."
    assert call["call_id"] == "call_paris_9" and call["status"] == "completed"


async def test_cancel_mid_stream_closes_the_upstream_request(fake: FakeChatServer, server: RunningServer) -> None:
    fake.script = lambda _r: Reply(text=JOKE, chunk_delay=0.25)
    async with connect(server, session={"type": "realtime", "output_modalities": ["text"]}) as rt:
        mark = await ask(rt, "Tell me a long story.")
        await rt.wait("response.output_text.delta", since=mark)
        await rt.send({"type": "response.cancel"})
        response = await rt.response(since=mark)
        assert response["status"] == "cancelled"
        await eventually(lambda: fake.requests[0].client_closed, timeout=2.0)
        assert not fake.requests[0].completed


@pytest.mark.parametrize(("reply", "code", "upstream_says"), [
    (Reply(status=500), "upstream_error", "The server had an error"),
    (Reply(status=429), "upstream_rate_limited", "Rate limit reached"),
    (Reply(hang=True), "upstream_timeout", "first token"),
])
async def test_upstream_failure_is_a_spoken_apology_and_a_failed_response(
        fake: FakeChatServer, server: RunningServer, reply: Reply, code: str, upstream_says: str) -> None:
    replies = iter([reply, Reply(text="I'm back.")])
    fake.script = lambda _r: next(replies)
    async with connect(server) as rt:
        mark = await ask(rt, "Tell me a joke.")
        failed = await rt.response(since=mark)
        assert rt.find("response.output_audio.delta", mark), "the apology is spoken"
        mark = await ask(rt, "Are you there?")
        recovered = await rt.response(since=mark)
    assert failed["status"] == "failed"
    error = failed["status_details"]["error"]
    assert error["code"] == code and upstream_says in error["message"]
    assert transcript(failed) == APOLOGIES[code]
    assert recovered["status"] == "completed" and transcript(recovered) == "I'm back."


async def test_history_after_a_truncation_is_what_was_heard(fake: FakeChatServer, server: RunningServer) -> None:
    fake.script = lambda _r: Reply(text=JOKE)
    async with connect(server) as rt:
        first = await rt.response(since=await ask(rt, "Tell me a joke."))
        item_id = first["output"][0]["id"]
        mark = rt.mark()
        await rt.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
                       "audio_end_ms": 2500})
        await rt.wait("conversation.item.truncated", since=mark)
        fake.script = lambda _r: Reply(text="Sorry, go ahead.")
        await rt.response(since=await ask(rt, "Wait, stop."))
    history = fake.requests[1].messages
    assert history[-1] == {"role": "user", "content": "Wait, stop."}
    heard = history[-2]
    assert heard["role"] == "assistant" and JOKE.startswith(heard["content"])
    assert 0 < len(heard["content"]) < len(JOKE) / 2
