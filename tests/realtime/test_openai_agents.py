"""openai-agents' RealtimeAgent, pointed at the real server, completes a turn that calls a tool.

The agents SDK validates every server event against the `openai` types and reports a
mismatch as an `error` session event, so "no error events" is a protocol check too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner, RealtimeSession

from tests.conftest import API_KEY
from tests.server_harness import RunningServer

from .conftest import SERVER_EVENT, Speech, silence, words

pytestmark = pytest.mark.slow


def kitchen_agent(calls: list[str]) -> RealtimeAgent[Any]:
    @function_tool(name_override="HassTurnOn")
    def turn_on(name: str) -> dict[str, Any]:
        """Turns on a device or entity by its name.

        Args:
            name: Name of the device or entity.
        """
        calls.append(name)
        return {"speech": {"plain": {"speech": f"Turned on the {name.lower()}"}}, "response_type": "action_done",
                "data": {"success": [{"name": name, "type": "entity", "id": "light.kitchen"}], "failed": []}}

    return RealtimeAgent(name="Home", instructions="You control the lights of this home.", tools=[turn_on])


async def run_turn(server: RunningServer, send: Callable[[RealtimeSession], Any],
                   settings: dict[str, Any]) -> tuple[list[str], list[Any], list[dict[str, Any]]]:
    """Run one agent session until the reply after the tool call has finished.

    Returns the tool's calls, the session events and the raw server events.
    """
    calls: list[str] = []
    runner = RealtimeRunner(kitchen_agent(calls))
    session = await runner.run(model_config={
        "url": server.ws_url + "?model=gpt-realtime",
        "api_key": API_KEY,
        "initial_model_settings": settings,
    })
    events: list[Any] = []
    raw: list[dict[str, Any]] = []

    async def consume() -> None:
        tool_ended = spoken = False
        async for event in session:
            events.append(event)
            if event.type == "raw_model_event" and event.data.type == "raw_server_event":
                raw.append(event.data.data)
            if event.type == "tool_end":
                tool_ended = True
            spoken = spoken or (tool_ended and event.type == "audio_end")
            if spoken and event.type == "agent_end":  # the turn that answered the tool output ended
                return

    async with session:
        sender = asyncio.create_task(send(session))
        try:
            await asyncio.wait_for(consume(), 60)
        finally:
            sender.cancel()
    return calls, events, raw


def check_turn(calls: list[str], events: list[Any], raw: list[dict[str, Any]]) -> None:
    errors = [e for e in events if e.type == "error"]
    assert not errors, f"the agents SDK reported errors: {[e.error for e in errors]}"
    for event in raw:  # the same check the SDK made, on the raw JSON
        SERVER_EVENT.validate_python(event)
    assert calls == ["Kitchen Light"], "the tool ran once, with the name from the speech"

    types = [e.type for e in events]
    start = types.index("tool_start")
    end = types.index("tool_end")
    assert start < end
    tool_end = events[end]
    assert tool_end.tool.name == "HassTurnOn" and json.loads(tool_end.arguments) == {"name": "Kitchen Light"}
    # the reply to the tool output is spoken: audio chunks, then audio_end, then agent_end
    after = types[end:]
    assert after[-1] == "agent_end" and "audio" in after
    assert after.index("audio") < after.index("audio_end")

    raw_types = [e["type"] for e in raw]
    assert "error" not in raw_types
    dones = [e["response"] for e in raw if e["type"] == "response.done"]
    assert [d["status"] for d in dones] == ["completed", "completed"]
    assert dones[0]["output"][-1]["type"] == "function_call"
    reply = dones[1]["output"][0]
    assert words(reply["content"][0]["transcript"]) == "turned on the kitchen light"
    # the function_call_output the agents SDK sent was answered, with audio
    assert any(e["type"] == "response.output_audio.delta" and e["response_id"] == dones[1]["id"] for e in raw)


async def test_agent_calls_tool_from_text(server: RunningServer) -> None:
    async def send(session: RealtimeSession) -> None:
        await session.send_message("turn on the kitchen light")

    calls, events, raw = await run_turn(server, send, {"voice": "alloy"})
    check_turn(calls, events, raw)
    sent_update = next(e for e in raw if e["type"] == "session.updated")["session"]
    assert sent_update["tools"][0]["name"] == "HassTurnOn"


async def test_agent_calls_tool_from_speech(server: RunningServer, speak: Callable[[str], Speech]) -> None:
    speech = speak("Turn on the kitchen light.")
    audio = np.concatenate([speech.pcm, silence(1500)]).astype("<i2").tobytes()

    async def send(session: RealtimeSession) -> None:
        # the agent's default turn detection (semantic_vad, interrupt_response) and transcription
        for offset in range(0, len(audio), 960 * 2):  # 40 ms chunks
            await session.send_audio(audio[offset : offset + 960 * 2])
        await asyncio.sleep(3600)  # keep the task alive; cancelled when the turn is done

    calls, events, raw = await run_turn(server, send, {"voice": "alloy"})
    check_turn(calls, events, raw)
    raw_types = [e["type"] for e in raw]
    assert raw_types.index("input_audio_buffer.speech_started") < raw_types.index("input_audio_buffer.committed")
    transcribed = [e for e in raw if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert [words(e["transcript"]) for e in transcribed] == ["turn on the kitchen light"]
    updated = [e["session"] for e in raw if e["type"] == "session.updated"]
    assert updated[0]["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
