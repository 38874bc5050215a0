"""Per-session limits and the work one request may create (issue: fairness and hostile input)."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

from hearth.server.session.limits import SessionLimits
from hearth.server.session.session import RealtimeSession, SessionOptions
from hearth.server.session.testing import RecordingSink, ScriptedEngine

RATE = 24_000


def session(engine: ScriptedEngine | None = None, **options) -> tuple[RealtimeSession, RecordingSink, ScriptedEngine]:
    engine = engine or ScriptedEngine()
    sink = RecordingSink()
    s = RealtimeSession(engine, sink, SessionOptions(**options))
    s.start()
    return s, sink, engine


def send(s: RealtimeSession, event: dict) -> None:
    s.handle_text(json.dumps(event))


def last_error(sink: RecordingSink) -> dict:
    return sink.of_type("error")[-1]["error"]


def tone(ms: int, rate: int = RATE) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * 220 * t) * 0.3 * 32767).astype(np.int16)


async def test_out_of_band_responses_are_bounded_per_session() -> None:
    s, sink, _ = session(ScriptedEngine(chunk_delay=0.2), limits=SessionLimits(max_side_responses=2))
    for index in range(5):
        send(s, {"type": "response.create", "event_id": f"oob_{index}",
                 "response": {"conversation": "none", "output_modalities": ["text"]}})
    assert len(sink.of_type("response.created")) == 2
    errors = sink.of_type("error")
    assert [e["error"]["code"] for e in errors] == ["too_many_concurrent_responses"] * 3
    assert [e["error"]["event_id"] for e in errors] == ["oob_2", "oob_3", "oob_4"]
    await sink.wait_for("response.done", 2)
    send(s, {"type": "response.create", "response": {"conversation": "none", "output_modalities": ["text"]}})
    assert len(sink.of_type("response.created")) == 3, "room again once they finished"
    s.close()


async def test_tool_lists_are_bounded_in_count_and_size() -> None:
    s, sink, _ = session()
    tools = [{"type": "function", "name": f"t{i}", "parameters": {"type": "object"}} for i in range(200)]
    send(s, {"type": "session.update", "session": {"type": "realtime", "tools": tools}})
    assert last_error(sink)["param"] == "session.tools"
    huge = {"type": "function", "name": "HassTurnOn", "parameters": {"type": "object", "properties": {
        "name": {"type": "string", "enum": [f"Light {i}" for i in range(20_000)]}}}}
    send(s, {"type": "session.update", "session": {"type": "realtime", "tools": [huge]}})
    error = last_error(sink)
    assert error["code"] == "invalid_value" and error["param"] == "session.tools[0]"
    assert s.config.tools == [], "the session keeps its old settings"
    send(s, {"type": "response.create", "response": {"tools": [huge]}})
    assert last_error(sink)["param"] == "response.tools[0]"
    s.close()


async def test_item_text_and_audio_are_bounded() -> None:
    s, sink, engine = session(limits=SessionLimits(max_item_audio_s=2.0, max_item_text_chars=1000))
    send(s, {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "x" * 1001}]}})
    assert "Item too large" in last_error(sink)["message"]
    audio = base64.b64encode(tone(2500).tobytes()).decode()
    send(s, {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_audio", "audio": audio}]}})
    assert "Item audio too long" in last_error(sink)["message"]
    assert len(s.conversation) == 0 and engine.transcriptions == []
    s.close()


async def test_client_item_audio_is_transcribed_as_bulk_work() -> None:
    """A client's uploaded audio waits behind live turns in the shared pool (see tests/test_scheduler.py)."""
    from hearth.server.session.work import WORK_OWNER

    seen = []

    class Recording(ScriptedEngine):
        async def transcribe(self, request):  # noqa: ANN001, ANN201
            seen.append(WORK_OWNER.get())
            return await super().transcribe(request)

    s, sink, _ = session(Recording())
    audio = base64.b64encode(tone(500).tobytes()).decode()
    send(s, {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_audio", "audio": audio}]}})
    await asyncio.sleep(0.05)
    assert [(o.session_id, o.priority) for o in seen] == [(s.id, "bulk")]
    s.close()


async def test_manual_mode_does_not_speculate_on_long_buffers() -> None:
    """Every pause used to start a transcription of the whole buffer, up to 15 minutes of it."""
    s, sink, engine = session(limits=SessionLimits(max_speculation_s=2.0))
    send(s, {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}})
    silence = np.zeros(RATE * 400 // 1000, dtype=np.int16)
    for _ in range(4):  # speech and pauses, 1.4 s each: within the window, a speculation each pause
        for chunk in np.array_split(np.concatenate([tone(1000), silence]), 35):
            send(s, {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk.tobytes()).decode()})
        await asyncio.sleep(0.02)
    speculated = len(engine.transcriptions)
    assert 1 <= speculated <= 2, "only while the buffer fits the window"
    send(s, {"type": "input_audio_buffer.commit"})
    await sink.wait_for("input_audio_buffer.committed")
    s.close()


async def test_a_large_append_is_scored_off_the_event_loop_in_order() -> None:
    """The VAD for a 4-minute append (15 MiB of base64, upstream's most) runs in a worker thread;
    small appends after it wait their turn."""
    s, sink, _ = session()
    pcm = np.tile(np.concatenate([tone(600), np.zeros(RATE, dtype=np.int16)]), 190)[: RATE * 240]
    send(s, {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm.tobytes()).decode()})
    detector = s.input.detector
    assert detector.position == 0, "the append returned before its VAD ran"
    assert "input_audio_buffer.speech_started" not in sink.types()
    small = base64.b64encode(tone(40).tobytes()).decode()
    send(s, {"type": "input_audio_buffer.append", "audio": small})
    assert detector.position == 0, "a small append queues behind the large one"
    await sink.wait_for("input_audio_buffer.speech_stopped", timeout=20)
    while s.input._backlog:
        await asyncio.sleep(0.01)
    assert detector.position >= (240 * 16_000 + 640 - 512), "every sample was scored, in order"
    starts = [e["audio_start_ms"] for e in sink.of_type("input_audio_buffer.speech_started")]
    assert starts == sorted(starts) and starts[0] < 1000
    s.close()


async def test_cleared_audio_is_released() -> None:
    s, _sink, _ = session()
    send(s, {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}})
    chunk = base64.b64encode(np.zeros(RATE * 10, dtype=np.int16).tobytes()).decode()
    for _ in range(12):
        send(s, {"type": "input_audio_buffer.append", "audio": chunk})
    assert s.input.buffer.duration_ms == pytest.approx(120_000, abs=50)
    send(s, {"type": "input_audio_buffer.clear"})
    buffer = s.input.buffer
    assert buffer.duration_ms == 0 and buffer._wire == [] and buffer._pipe == []
    s.close()


async def test_an_engine_sees_only_the_newest_items() -> None:
    """A client that piles up items cannot make each response of its session slower than the last."""
    s, sink, engine = session(limits=SessionLimits(max_context_items=3))
    for index in range(10):
        send(s, {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": f"message {index}"}]}})
    send(s, {"type": "response.create", "response": {"output_modalities": ["text"]}})
    await sink.wait_for("response.done")
    assert [item.text for item in engine.requests[0].items] == ["message 7", "message 8", "message 9"]
    assert len(s.conversation) == 11, "the conversation keeps every item"
    s.close()


def test_token_counting_agrees_with_the_documented_rule() -> None:
    """The fast ASCII count must give the regex's answer (docs/realtime-api.md, Usage) on any text."""
    import random
    import re

    from hearth.server.session.usage import text_tokens

    rule = re.compile(r"\w+|[^\w\s]")
    rng = random.Random(11)
    alphabet = [chr(c) for c in range(128)] + ["é", "ß", "日", "\u00a0", "\u2003"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert text_tokens(text) == len(rule.findall(text)), repr(text)
    assert text_tokens("Turn on the kitchen light, please!") == 8


def test_a_conversation_item_is_counted_once_not_per_response(monkeypatch: pytest.MonkeyPatch) -> None:
    import hearth.server.session.conversation as conversation

    counted: list[str] = []
    real = conversation.text_tokens
    monkeypatch.setattr(conversation, "text_tokens", lambda text: counted.append(text) or real(text))
    entry = conversation.Entry(item={"type": "message"})
    assert [entry.tokens("what time is it") for _ in range(3)] == [4, 4, 4]
    assert entry.tokens("what time is it now") == 5  # the text changed (a transcript arrived)
    assert counted == ["what time is it", "what time is it now"]


async def test_response_requests_are_rate_limited_per_session_and_recover() -> None:
    clock = [5000.0]
    s, sink, _ = session(limits=SessionLimits(responses_per_minute=3))
    s._requests.clock = lambda: clock[0]  # type: ignore[union-attr]  # the budget's own clock, not the loop's
    text = {"type": "response.create", "response": {"conversation": "none", "output_modalities": ["text"]}}
    for index in range(3):
        send(s, {**text, "event_id": f"r{index}"})
        await sink.wait_for("rate_limits.updated", index + 1)
        assert sink.types()[-2:] == ["response.done", "rate_limits.updated"], "after the response, as upstream"
    send(s, {**text, "event_id": "r3"})
    assert len(sink.of_type("response.created")) == 3
    assert [u["rate_limits"] for u in sink.of_type("rate_limits.updated")] == [
        [{"name": "requests", "limit": 3, "remaining": r, "reset_seconds": 20.0 * (3 - r)}] for r in (2, 1, 0)]
    error = last_error(sink)
    assert (error["type"], error["code"], error["event_id"]) == ("requests", "rate_limit_exceeded", "r3")
    assert "Limit 3" in error["message"] and "try again in 20.0s" in error["message"]
    clock[0] += 20.0  # a minute refills all three; a third of one refills one
    send(s, text)
    assert len(sink.of_type("response.created")) == 4, "one request again after 20 s"
    await sink.wait_for("rate_limits.updated", 4)
    assert sink.of_type("rate_limits.updated")[-1]["rate_limits"][0]["remaining"] == 0
    send(s, text)
    assert last_error(sink)["code"] == "rate_limit_exceeded"
    s.close()


async def test_no_request_limit_when_it_is_zero() -> None:
    s, sink, _ = session(limits=SessionLimits(responses_per_minute=0, max_side_responses=8))
    for _ in range(5):
        send(s, {"type": "response.create", "response": {"conversation": "none", "output_modalities": ["text"]}})
    await sink.wait_for("response.done", 5)
    assert not sink.of_type("error") and not sink.of_type("rate_limits.updated")
    s.close()
