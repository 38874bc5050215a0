"""The relay engine with a second real Hearth server as its upstream (real on both ends).

The upstream is the shared test server (default cascade, intents brain, real models: its
Silero VAD detects the turns, its Whisper transcribes them); the relay is a Hearth whose
engine is `relay`, driven by the real `openai` SDK, or a session on the relay engine driven
through the session port where a test needs Hearth's own tools or playback reports.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from hearth.server.context import ServerContext
from hearth.server.engines.relay.engine import RelayEngine, RelaySession
from hearth.server.engines.relay.options import UpstreamConfig
from hearth.server.protocol import client_events as ce
from hearth.server.session.interfaces import EngineSessionInfo, Playback, ToolResult
from hearth.server.session.session import RealtimeSession, SessionOptions
from hearth.server.session.testing import RecordingSink, ScriptedToolbox
from tests.conftest import API_KEY
from tests.server_harness import RunningServer, make_config, run_server

from .conftest import RATE, Speech, connect, ha_output, hass_turn_on, silence, words

pytestmark = pytest.mark.slow

TIME_RE = re.compile(r"\b\d{1,2}:\d{2} (AM|PM)\b")
LONG_SPEECH = ("Turned on the porch light. The porch light is now shining over the front steps and the driveway. "
               "It will stay on until you ask me to turn it off again, or until the schedule ends at midnight. "
               "The kitchen light is still on as well, and the bedroom is dark.")


@pytest.fixture(scope="module")
def relay(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = make_config(tmp_path_factory.mktemp("relay"), {
        "server": {"api_key": "relay-client-key"},
        "engine": {"type": "relay", "upstream": {"base_url": server.base_url, "api_key": API_KEY, "model": "hearth"}},
    })
    with run_server(config) as running:
        yield running


async def test_text_turn_through_the_relay(relay: RunningServer) -> None:
    async with connect(relay, api_key="relay-client-key") as rt:
        mark = rt.mark()
        await rt.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "What time is it?"}]}})
        await rt.send({"type": "response.create"})
        response = await rt.response(since=mark)
        audio = rt.find("response.output_audio.delta", mark)
    assert response["status"] == "completed"
    transcript = response["output"][0]["content"][0]["transcript"]
    assert TIME_RE.search(transcript), transcript
    assert audio, "the upstream's speech is relayed"
    assert response["usage"]["input_tokens"] > 0


async def test_audio_turn_is_detected_and_transcribed_by_the_upstream(
        relay: RunningServer, speak: Callable[[str], Speech]) -> None:
    async with connect(relay, api_key="relay-client-key", session={
            "type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}) as rt:
        mark = await rt.say(speak("What time is it?"))
        committed = await rt.wait("input_audio_buffer.committed", since=mark)
        response = await rt.response(since=mark, timeout=60)
        transcribed = await rt.wait("conversation.item.input_audio_transcription.completed", since=mark)
        (session,) = list(relay.app[ServerContext.KEY].sessions)
        engine = session.engine
        types = rt.types(mark)
    assert isinstance(engine, RelaySession) and engine.vad is None and engine.transcriber is None
    assert session.input.detector is None  # no local VAD: the turn is the upstream's
    item_id = committed["item_id"]
    assert item_id in engine._upstream_ids, "the upstream committed this turn"
    assert [e["item_id"] for e in rt.find("input_audio_buffer.speech_started", mark)] == [item_id]
    assert types.index("input_audio_buffer.speech_started") < types.index("input_audio_buffer.speech_stopped") \
        < types.index("input_audio_buffer.committed") < types.index("response.created")
    assert transcribed["item_id"] == item_id and words(transcribed["transcript"]) == "what time is it"
    assert API_KEY not in json.dumps(rt.events) and "relay-client-key" not in json.dumps(rt.events)
    assert response["status"] == "completed"
    assert TIME_RE.search(response["output"][0]["content"][0]["transcript"])


class HouseTools(ScriptedToolbox):
    """Home Assistant's HassTurnOn as a server-side tool (with its real parameter schema)."""

    def definitions(self) -> list[dict[str, Any]]:
        return [hass_turn_on(["Kitchen Light"])]


def relay_session(server: RunningServer, toolbox: ScriptedToolbox | None = None, *, vad: bool = False
                  ) -> tuple[RelayEngine, RealtimeSession, RecordingSink]:
    """A session on a relay engine, through the session port; `vad`: the default server_vad, else manual turns."""
    engine = RelayEngine(UpstreamConfig(base_url=server.base_url, api_key=API_KEY, model="hearth"))
    sink = RecordingSink()
    session = RealtimeSession(engine, sink, SessionOptions(), toolbox=toolbox)
    session.start()
    if not vad:
        session.submit(ce.SessionUpdate(type="session.update", session={
            "type": "realtime", "audio": {"input": {"turn_detection": None}}}))
    return engine, session, sink


async def say(session: RealtimeSession, pcm: np.ndarray, chunk_ms: int = 40) -> None:
    """Stream 24 kHz audio through the session port, faster than real time."""
    step = RATE * chunk_ms // 1000
    for offset in range(0, len(pcm), step):
        session.append_pcm(pcm[offset : offset + step], RATE)
        await asyncio.sleep(0)


def pcm_silence(ms: int) -> np.ndarray:
    return silence(ms).astype(np.int16)


def ask(session: RealtimeSession, text: str) -> None:
    session.handle_text(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))
    session.submit(ce.ResponseCreate(type="response.create"))


async def test_spoken_tool_call_from_upstream_is_answered_by_hearth(
        server: RunningServer, speak: Callable[[str], Speech]) -> None:
    toolbox = HouseTools(tools={"HassTurnOn": ToolResult(output=ha_output("Turned on the kitchen light"))})
    engine, session, sink = relay_session(server, toolbox, vad=True)
    try:
        await say(session, np.concatenate([speak("Turn on the kitchen light.").pcm, pcm_silence(1200)]))
        await sink.wait_for("response.done", 2, timeout=60)
    finally:
        session.close()
        await engine.close()
    first, second = (e["response"] for e in sink.of_type("response.done"))
    call = first["output"][0]
    assert call["type"] == "function_call" and call["name"] == "HassTurnOn"
    assert json.loads(call["arguments"]) == {"name": "Kitchen Light"}
    assert "".join(e["delta"] for e in sink.of_type("response.function_call_arguments.delta")) == call["arguments"]
    assert toolbox.calls and toolbox.calls[0].call_id == call["call_id"]  # the upstream's id, run by Hearth
    assert second["status"] == "completed"
    assert "kitchen light" in second["output"][0]["content"][0]["transcript"].lower()


def long_answer(session: RealtimeSession) -> None:
    """A context whose answer (the upstream confirming a long tool result) takes seconds to speak."""
    for item in ({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Porch light on"}]},
                 {"type": "function_call", "call_id": "call_porch", "name": "HassTurnOn",
                  "arguments": json.dumps({"name": "Porch Light"})},
                 {"type": "function_call_output", "call_id": "call_porch", "output": ha_output(LONG_SPEECH)}):
        session.handle_text(json.dumps({"type": "conversation.item.create", "item": item}))
    session.submit(ce.ResponseCreate(type="response.create"))


async def test_barge_in_cancels_the_upstream_response(server: RunningServer) -> None:
    engine, session, sink = relay_session(server)
    try:
        long_answer(session)
        await sink.wait_for("response.output_audio.delta", timeout=30)
        session.submit(ce.ResponseCancel(type="response.cancel"))
        done = await sink.wait_for("response.done", timeout=10)
        (upstream,) = engine._sessions
        assert done["response"]["status"] == "cancelled"
        # The upstream stopped too: its response ended cancelled, long before its speech would have.
        event = await asyncio.wait_for(_next_done(upstream), 5)
        assert event.response.status == "cancelled"
    finally:
        session.close()
        await engine.close()


async def test_spoken_barge_in_across_the_relay_cuts_the_reply_at_what_was_heard(
        server: RunningServer, speak: Callable[[str], Speech]) -> None:
    engine, session, sink = relay_session(server, vad=True)
    (upstream,) = engine._sessions
    sent: list[dict[str, Any]] = []
    params = upstream._response_params
    upstream._response_params = lambda request, tag: sent.append(params(request, tag)) or sent[-1]  # type: ignore[method-assign]
    try:
        long_answer(session)
        await sink.wait_for("response.output_audio.delta", timeout=30)
        first = sink.of_type("response.created")[0]["response"]["id"]
        speech = speak("What time is it?").pcm
        await say(session, speech[: len(speech) // 2])
        started = await sink.wait_for("input_audio_buffer.speech_started", timeout=30)
        cut = (await sink.wait_for("response.done", timeout=10))["response"]
        session.report_playback(Playback(response_id=first, played_ms=700, finished=True))  # the speaker stopped
        event = await asyncio.wait_for(_next_done(upstream), 10)  # (before the next response reads the inbox)
        await say(session, np.concatenate([speech[len(speech) // 2 :], pcm_silence(1200)]))
        answer = (await sink.wait_for("response.done", 2, timeout=60))["response"]
    finally:
        session.close()
        await engine.close()
    assert cut["id"] == first and cut["status"] == "cancelled"
    assert cut["status_details"]["reason"] == "turn_detected"  # the upstream's speech_started, here
    assert event.response.status == "cancelled"  # and the upstream stopped generating
    (truncated,) = sink.of_type("conversation.item.truncated")
    assert truncated["audio_end_ms"] == 700
    heard = [i for i in sent[-1]["input"] if i.get("role") == "assistant"][-1]["content"][0]["text"]
    generated = cut["output"][0]["content"][0]["transcript"]
    assert 0 < len(words(heard)) < len(words(generated)) and words(generated).startswith(words(heard))
    assert {"type": "item_reference", "id": upstream._upstream_ids[started["item_id"]]} in sent[-1]["input"]
    assert answer["status"] == "completed" and TIME_RE.search(answer["output"][0]["content"][0]["transcript"])


async def _next_done(upstream: Any) -> Any:
    while True:
        event = await upstream._inbox.get()
        if getattr(event, "type", None) == "response.done":
            return event


async def test_upstream_loss_mid_turn_is_an_error_then_a_fresh_connection(server: RunningServer) -> None:
    engine, session, sink = relay_session(server)
    try:
        long_answer(session)
        await sink.wait_for("response.output_audio.delta", timeout=30)

        async def drop() -> None:
            for ws in list(server.app[ServerContext.KEY].websockets):
                await ws.close(code=1011, message=b"test: upstream lost")

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(drop(), server.loop))
        failed = (await sink.wait_for("response.done", timeout=10))["response"]
        assert failed["status"] == "failed"
        assert failed["status_details"]["error"]["code"] == "upstream_disconnected"
        ask(session, "What time is it?")
        recovered = (await sink.wait_for("response.done", 2, timeout=30))["response"]
        (upstream,) = engine._sessions
        assert upstream.connections == 2
    finally:
        session.close()
        await engine.close()
    assert recovered["status"] == "completed"
    assert TIME_RE.search(recovered["output"][0]["content"][0]["transcript"])


async def test_a_manual_commit_is_the_upstreams_item_too(server: RunningServer, speak: Callable[[str], Speech]) -> None:
    engine, session, sink = relay_session(server)
    (upstream,) = engine._sessions
    sent: list[dict[str, Any]] = []
    params = upstream._response_params
    upstream._response_params = lambda request, tag: sent.append(params(request, tag)) or sent[-1]  # type: ignore[method-assign]
    try:
        await say(session, speak("What time is it?").pcm)
        session.submit(ce.InputAudioBufferCommit(type="input_audio_buffer.commit"))
        session.submit(ce.ResponseCreate(type="response.create"))  # at once: the relay waits for the upstream's commit
        answer = (await sink.wait_for("response.done", timeout=60))["response"]
    finally:
        session.close()
        await engine.close()
    (committed,) = sink.of_type("input_audio_buffer.committed")
    assert sent[0]["input"] == [{"type": "item_reference", "id": upstream._upstream_ids[committed["item_id"]]}]
    assert answer["status"] == "completed" and TIME_RE.search(answer["output"][0]["content"][0]["transcript"])


async def test_upstream_loss_while_the_user_speaks_is_an_error_then_a_fresh_connection(
        server: RunningServer, speak: Callable[[str], Speech]) -> None:
    engine, session, sink = relay_session(server, vad=True)
    speech = speak("What time is it?").pcm
    try:
        await say(session, speech[: len(speech) * 2 // 3])
        await sink.wait_for("input_audio_buffer.speech_started", timeout=30)

        async def drop() -> None:
            for ws in list(server.app[ServerContext.KEY].websockets):
                await ws.close(code=1011, message=b"test: upstream lost")

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(drop(), server.loop))
        error = (await sink.wait_for("error", timeout=10))["error"]
        assert error["code"] == "upstream_disconnected" and error["type"] == "server_error"
        assert not session.input.in_speech  # the turn being spoken is dropped
        await say(session, np.concatenate([pcm_silence(300), speech, pcm_silence(1200)]))
        answer = (await sink.wait_for("response.done", timeout=60))["response"]
        (upstream,) = engine._sessions
        assert upstream.connections == 2
    finally:
        session.close()
        await engine.close()
    assert answer["status"] == "completed" and TIME_RE.search(answer["output"][0]["content"][0]["transcript"])
    assert len(sink.of_type("input_audio_buffer.committed")) == 1


def test_upstream_request_carries_the_context_as_heard_and_the_sessions_own_lines() -> None:
    import numpy as np

    from hearth.server.engines.relay.engine import upstream_item
    from hearth.server.session.interfaces import ContextItem, EngineSessionInfo, ItemAudio, ResponseRequest

    heard = ContextItem(type="message", id="a", role="assistant", text="It's sunny and", truncated=True)
    spoken = ContextItem(type="message", id="u", role="user", audio=ItemAudio(np.ones(16_000, np.int16), 16_000))
    assert upstream_item(heard) == {"type": "message", "role": "assistant",
                                    "content": [{"type": "output_text", "text": "It's sunny and"}]}
    (part,) = upstream_item(spoken)["content"]
    assert part["type"] == "input_audio" and len(__import__("base64").b64decode(part["audio"])) == 2 * 24_000
    assert upstream_item(ContextItem(type="message", id="e", role="user")) is None

    engine = RelayEngine(UpstreamConfig(base_url="http://127.0.0.1:9/v1", voice="marin"))
    session = RelaySession(engine, EngineSessionInfo(session_id="s"))
    request = ResponseRequest(instructions="Be brief.", items=[heard], tools=[], tool_choice="auto",
                              output_modalities=["audio"], voice="alloy", speed=1.0)
    params = session._response_params(request, "tag1")
    assert params["conversation"] == "none" and params["metadata"] == {"hearth_relay": "tag1"}
    assert params["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24_000}, "voice": "marin"}
    said = session._response_params(ResponseRequest(**{**request.__dict__, "say": "Sorry, that failed."}), "t")
    assert said["input"] == [] and said["instructions"].endswith("Sorry, that failed.")
    session._upstream_ids["u"] = "item_up_1"  # a turn the upstream committed is referenced, not re-sent
    referenced = session._response_params(ResponseRequest(**{**request.__dict__, "items": [spoken, heard]}), "t")
    assert referenced["input"][0] == {"type": "item_reference", "id": "item_up_1"}


def test_the_relay_session_has_no_local_vad_or_transcriber() -> None:
    engine = RelayEngine(UpstreamConfig(base_url="http://127.0.0.1:9/v1", api_key="k"))
    relay = engine.open(EngineSessionInfo(session_id="s"))
    assert relay.vad is None and relay.transcriber is None and relay.listener is relay
    assert json.dumps(relay._session_update()).count("create_response") == 0  # manual until told
    relay.listen(None, {"type": "server_vad", "idle_timeout_ms": 5000, "create_response": True}, None)  # type: ignore[arg-type]
    turn = relay._session_update()["session"]["audio"]["input"]["turn_detection"]
    assert turn == {"type": "server_vad", "create_response": False, "interrupt_response": False}


async def test_an_unreachable_upstream_is_one_error_while_audio_keeps_coming() -> None:
    engine = RelayEngine(UpstreamConfig(base_url="http://127.0.0.1:9/v1", api_key="k", connect_timeout_s=2.0))
    sink = RecordingSink()
    session = RealtimeSession(engine, sink, SessionOptions())
    session.start()
    try:
        await say(session, pcm_silence(400))
        error = (await sink.wait_for("error", timeout=5))["error"]
        await say(session, pcm_silence(400))
        await asyncio.sleep(0.2)
        (upstream,) = engine._sessions
        assert upstream._outbox.empty()  # audio meanwhile is dropped, not queued without bound
    finally:
        session.close()
        await engine.close()
    assert error["code"] == "upstream_unreachable" and "127.0.0.1:9" in error["message"]
    assert len(sink.of_type("error")) == 1
