"""The auto brain: the real intent matcher first, the llm brain (against the scripted endpoint) for the rest."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hearth.server.engines.cascade.brain_auto import AutoBrain
from hearth.server.engines.cascade.brain_intents import IntentsBrain, IntentsConfig
from hearth.server.engines.cascade.brain_llm import LlmBrain, LlmConfig
from hearth.server.engines.cascade.engine import CascadeEngine
from hearth.server.engines.factory import build_brain
from hearth.server.session.interfaces import (
    ContextItem,
    Declined,
    EngineSessionInfo,
    OutputFunctionCall,
    OutputText,
    OutputUsage,
    ResponseRequest,
)
from tests.server_harness import make_config
from tests.support.fake_chat_server import FakeChatServer, Reply, ScriptedCall

TURN_ON = {"type": "function", "name": "HassTurnOn", "description": "Turns on a device.",
           "parameters": {"type": "object", "properties": {
               "name": {"type": "string", "enum": ["Kitchen Light"]}, "domain": {"type": "array", "items": {"type": "string"}}}}}
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def request(text: str, metadata: dict[str, str] | None = None) -> ResponseRequest:
    return request_of([ContextItem(type="message", id="u", role="user", text=text)], metadata)


def request_of(items: list[ContextItem], metadata: dict[str, str] | None = None) -> ResponseRequest:
    return ResponseRequest(instructions="You are Hearth.", items=items, tools=[TURN_ON, WEATHER], tool_choice="auto",
                           output_modalities=["text"], voice="alloy", speed=1.0, metadata=metadata)


@pytest.fixture(scope="module")
def intents() -> IntentsBrain:
    return IntentsBrain(IntentsConfig())


@pytest.fixture
async def fake_llm() -> AsyncIterator[tuple[FakeChatServer, LlmBrain]]:
    async with FakeChatServer() as fake:
        llm = LlmBrain(LlmConfig(base_url=fake.base_url, model="fake-model"))
        fake.script = lambda _request: Reply(text="Why did the lamp go to school? To get brighter.")
        yield fake, llm
        await llm.close()


async def collect(brain: Any, req: ResponseRequest) -> list[Any]:
    return [event async for event in brain.respond(req)]


async def test_device_command_is_answered_by_intents_without_an_upstream_request(intents, fake_llm) -> None:
    fake, llm = fake_llm
    events = await collect(AutoBrain(intents, llm), request("turn on the kitchen light"))
    assert [type(e) for e in events] == [OutputFunctionCall]
    assert events[0].name == "HassTurnOn" and json.loads(events[0].arguments)["name"] == "Kitchen Light"
    assert (await collect(AutoBrain(intents, llm), request("what time is it")))[0].delta.startswith("It's")
    assert fake.requests == []


async def test_open_question_goes_to_the_llm_with_the_same_tools(intents, fake_llm) -> None:
    fake, llm = fake_llm
    events = await collect(AutoBrain(intents, llm), request("tell me a joke"))
    assert "".join(e.delta for e in events if isinstance(e, OutputText)) == "Why did the lamp go to school? To get brighter."
    assert isinstance(events[-1], OutputUsage)
    (sent,) = fake.requests
    assert sent.messages[-1] == {"role": "user", "content": "tell me a joke"}
    assert sent.body["tools"][0]["function"]["name"] == "HassTurnOn"


async def test_routes_per_satellite_and_per_response(intents, fake_llm) -> None:
    fake, llm = fake_llm
    auto = AutoBrain(intents, llm, satellites={"kitchen": "intents", "study": "llm"})
    # The kitchen satellite never leaves the house: the intents' own sorry is spoken.
    (declined,) = await collect(auto.for_satellite("kitchen"), request("tell me a joke"))
    assert isinstance(declined, Declined) and declined.reply.startswith("Sorry")
    assert fake.requests == []
    await collect(auto.for_satellite("study"), request("turn on the kitchen light"))
    assert len(fake.requests) == 1  # even a device command goes to the LLM there
    assert auto.for_satellite(None) is auto and auto.for_satellite("hall") is auto
    await collect(auto, request("turn on the kitchen light", {"hearth_brain": "llm"}))
    assert len(fake.requests) == 2
    (only_intents,) = await collect(auto, request("tell me a joke", {"hearth_brain": "intents"}))
    assert isinstance(only_intents, Declined) and len(fake.requests) == 2


async def test_results_of_the_llms_calls_go_back_to_the_llm_and_intents_calls_stay_local(intents, fake_llm) -> None:
    fake, llm = fake_llm
    auto = AutoBrain(intents, llm)
    fake.push(Reply(tool_calls=[ScriptedCall("get_weather", '{"city": "Paris"}', id="call_w1")]),
              Reply(text="It's sunny in Paris."))
    question = ContextItem(type="message", id="u", role="user", text="what's the weather in Paris")
    (call,) = [e for e in await collect(auto, request_of([question])) if isinstance(e, OutputFunctionCall)]
    answered = [question, ContextItem(type="function_call", id="c", name="get_weather", arguments=call.arguments,
                                      call_id="call_w1"),
                ContextItem(type="function_call_output", id="o", call_id="call_w1", output='{"sky": "sunny"}')]
    events = await collect(auto, request_of(answered))
    assert "".join(e.delta for e in events if isinstance(e, OutputText)) == "It's sunny in Paris."
    assert fake.requests[1].messages[-1] == {"role": "tool", "tool_call_id": "call_w1", "content": '{"sky": "sunny"}'}
    # A call the intents made (its id is the session's) is confirmed locally.
    local = [ContextItem(type="message", id="u", role="user", text="turn on the kitchen light"),
             ContextItem(type="function_call", id="c", name="HassTurnOn", arguments='{"name": "Kitchen Light"}',
                         call_id="call_session_7"),
             ContextItem(type="function_call_output", id="o", call_id="call_session_7", output='{"success": true}')]
    events = await collect(auto, request_of(local))
    assert all(isinstance(e, OutputText) for e in events) and len(fake.requests) == 2


def test_a_satellites_cascade_session_gets_its_route(intents) -> None:
    auto = AutoBrain(intents, intents, satellites={"kitchen": "intents"})
    engine = CascadeEngine(auto, None, None)  # type: ignore[arg-type]  # the models are not needed here
    assert engine.open(EngineSessionInfo(session_id="s1", satellite_id="kitchen")).brain.route == "intents"
    assert engine.open(EngineSessionInfo(session_id="s2")).brain is auto


def test_auto_without_an_llm_is_the_intents_brain_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path, {"engine": {"brain": {"type": "auto"}}})
    with caplog.at_level(logging.WARNING, logger="hearth.server.engines.factory"):
        brain = build_brain(config.engine.brain)
    assert isinstance(brain, IntentsBrain)
    assert any("no engine.brain.llm is configured" in r.getMessage() for r in caplog.records)


async def test_factory_builds_llm_and_auto_brains(tmp_path: Path) -> None:
    llm_section = {"base_url": "http://127.0.0.1:11434/v1", "model": "llama3.2:3b", "extra_body": {"top_p": 0.5}}
    llm = build_brain(make_config(tmp_path, {"engine": {"brain": {"type": "llm", "llm": llm_section}}}).engine.brain)
    assert isinstance(llm, LlmBrain) and llm.config.model == "llama3.2:3b" and llm.config.extra_body == {"top_p": 0.5}
    auto = build_brain(make_config(tmp_path, {"engine": {"brain": {"type": "auto", "llm": llm_section,
                                                                   "satellites": {"kitchen": "intents"}}}}).engine.brain)
    assert isinstance(auto, AutoBrain) and auto.for_satellite("kitchen").route == "intents"
    await llm.close()
    await auto.llm.close()
