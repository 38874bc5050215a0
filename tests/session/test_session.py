"""The session state machine, driven with the scripted engine (no models, no sockets)."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from hearth.server.session.interfaces import OutputAudio, OutputFunctionCall, OutputText
from hearth.server.session.session import RealtimeSession, SessionOptions, heard_text, sounds_complete
from hearth.server.session.testing import RecordingSink, ScriptedEngine

SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
RATE = 24000


def tone(ms: int, amplitude: float = 0.3) -> bytes:
    t = np.arange(RATE * ms // 1000) / RATE
    return (np.sin(2 * np.pi * 220 * t) * amplitude * 32767).astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    return np.zeros(RATE * ms // 1000, dtype="<i2").tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Client:
    def __init__(self, engine: ScriptedEngine | None = None, **options) -> None:
        self.engine = engine or ScriptedEngine()
        self.sink = RecordingSink()
        self.session = RealtimeSession(self.engine, self.sink, SessionOptions(**options))
        self.session.start()

    def send(self, event: dict) -> None:
        self.session.handle_text(json.dumps(event))

    def append(self, pcm: bytes, chunk_ms: int = 40) -> None:
        step = RATE * 2 * chunk_ms // 1000
        for offset in range(0, len(pcm), step):
            self.send({"type": "input_audio_buffer.append", "audio": b64(pcm[offset : offset + step])})

    def validate_all(self) -> None:
        for event in self.sink.events:
            SERVER_EVENT.validate_python(event)


@pytest.fixture
async def manual() -> Client:
    client = Client()
    client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}})
    return client


async def test_session_created_first_and_valid() -> None:
    client = Client(model="my-model")
    first = client.sink.events[0]
    assert first["type"] == "session.created"
    assert first["session"]["model"] == "my-model"
    assert first["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    client.validate_all()


async def test_session_update_partial_merge_and_errors() -> None:
    client = Client()
    client.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief.",
                                                        "audio": {"output": {"voice": "marin"}}}})
    updated = client.sink.of_type("session.updated")[-1]["session"]
    assert updated["instructions"] == "Be brief."
    assert updated["audio"]["output"]["voice"] == "marin"
    assert updated["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}

    cases = [
        ({"type": "realtime", "voice": "ash"}, "unknown_parameter", "session.voice"),
        ({"instructions": "x"}, "missing_required_parameter", "session.type"),
        ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
         "integer_below_min_value", "session.audio.input.format.rate"),
        ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}}},
         "decimal_above_max_value", "session.audio.input.turn_detection.threshold"),
        ({"type": "realtime", "output_modalities": ["video"]}, "invalid_value", "session.output_modalities[0]"),
    ]
    for update, code, param in cases:
        client.send({"type": "session.update", "event_id": "evt_1", "session": update})
        error = client.sink.events[-1]
        assert error["type"] == "error", update
        assert (error["error"]["code"], error["error"]["param"], error["error"]["event_id"]) == (code, param, "evt_1")
    # a rejected update changes nothing
    client.send({"type": "session.update", "session": {"type": "realtime", "instructions": "y", "bogus": 1}})
    client.send({"type": "session.update", "session": {"type": "realtime"}})
    assert client.sink.of_type("session.updated")[-1]["session"]["instructions"] == "Be brief."
    client.validate_all()


async def test_manual_commit_and_text_turn(manual: Client) -> None:
    manual.send({"type": "input_audio_buffer.commit", "event_id": "c1"})
    error = manual.sink.events[-1]
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"
    manual.append(silence(50))
    manual.send({"type": "input_audio_buffer.commit"})
    assert manual.sink.events[-1]["error"]["code"] == "input_audio_buffer_commit_empty"
    manual.append(tone(300))
    manual.send({"type": "input_audio_buffer.commit"})
    kinds = manual.sink.types()[-3:]
    assert kinds == ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    manual.send({"type": "response.create"})
    done = await manual.sink.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    assert manual.engine.requests[0].items[-1].text == "hello"
    usage = done["response"]["usage"]
    assert usage["input_token_details"]["audio_tokens"] == 4  # 50 + 300 ms at one token per 100 ms
    assert usage["output_token_details"]["audio_tokens"] == 2  # 100 ms at one token per 50 ms
    manual.validate_all()


async def test_event_order_of_audio_response(manual: Client) -> None:
    manual.send({"type": "conversation.item.create",
                 "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
    manual.send({"type": "response.create"})
    await manual.sink.wait_for("rate_limits.updated")
    kinds = manual.sink.types()
    start = kinds.index("response.created")
    assert kinds[start:] == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
        "rate_limits.updated",  # after response.done, as upstream (a response.create is rate limited)
    ]
    manual.validate_all()


async def test_text_only_response() -> None:
    client = Client()
    client.send({"type": "conversation.item.create",
                 "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
    client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
    done = await client.sink.wait_for("response.done")
    kinds = client.sink.types()
    assert "response.output_text.delta" in kinds and "response.output_text.done" in kinds
    assert not any(k.startswith("response.output_audio") for k in kinds)
    assert done["response"]["output"][0]["content"] == [{"type": "output_text", "text": "Hello there."}]


async def test_server_vad_turn_creates_response() -> None:
    client = Client()
    client.append(silence(200) + tone(600) + silence(700))
    committed = await client.sink.wait_for("input_audio_buffer.committed")
    await client.sink.wait_for("response.done")
    kinds = client.sink.types()
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index("input_audio_buffer.speech_stopped")
    started = client.sink.of_type("input_audio_buffer.speech_started")[0]
    assert started["item_id"] == committed["item_id"]
    assert 0 <= started["audio_start_ms"] <= 200
    stopped = client.sink.of_type("input_audio_buffer.speech_stopped")[0]
    assert 800 + 450 <= stopped["audio_end_ms"] <= 800 + 600
    # speculative transcription: exactly one STT run, started at the first silence
    assert len(client.engine.transcriptions) == 1
    client.validate_all()


async def test_barge_in_cancels_and_no_more_audio() -> None:
    engine = ScriptedEngine(reply=[OutputText("One. "), OutputAudio(np.zeros(4800, np.int16), 24000)] * 20,
                            chunk_delay=0.02)
    client = Client(engine)
    client.append(tone(400) + silence(600))
    await client.sink.wait_for("response.output_audio.delta")
    client.append(tone(200))
    done = await client.sink.wait_for("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "turn_detected"
    assert done["response"]["output"][0]["status"] == "incomplete"
    kinds = client.sink.types()
    barge = [i for i, k in enumerate(kinds) if k == "input_audio_buffer.speech_started"][1]
    await asyncio.sleep(0.1)
    assert "response.output_audio.delta" not in client.sink.types()[barge:]
    client.validate_all()


async def test_response_cancel_and_not_active(manual: Client) -> None:
    manual.engine.chunk_delay = 0.05
    manual.send({"type": "response.cancel", "event_id": "x"})
    assert manual.sink.events[-1]["error"]["code"] == "response_cancel_not_active"
    manual.send({"type": "response.create"})
    manual.send({"type": "response.create", "event_id": "second"})
    error = manual.sink.events[-1]
    assert error["error"]["code"] == "conversation_already_has_active_response"
    assert error["error"]["event_id"] == "second"
    manual.send({"type": "response.cancel"})
    done, limits = manual.sink.events[-2:]  # at once, and the rate limits right after it
    assert done["type"] == "response.done" and done["response"]["status_details"]["reason"] == "client_cancelled"
    assert limits["type"] == "rate_limits.updated"
    manual.send({"type": "response.create"})  # allowed right away
    await manual.sink.wait_for("response.done", 2)
    manual.validate_all()


async def test_out_of_band_response_runs_beside_default(manual: Client) -> None:
    manual.engine.chunk_delay = 0.02
    manual.send({"type": "conversation.item.create", "item": {"id": "item_a", "type": "message", "role": "user",
                                                               "content": [{"type": "input_text", "text": "hello"}]}})
    manual.send({"type": "response.create"})
    manual.send({"type": "response.create", "response": {
        "conversation": "none", "metadata": {"topic": "summary"}, "output_modalities": ["text"],
        "instructions": "Summarize.", "input": [{"type": "item_reference", "id": "item_a"},
                                                 {"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "extra"}]}]}})
    await manual.sink.wait_for("response.done", 2)
    dones = manual.sink.of_type("response.done")
    side = next(d for d in dones if d["response"]["metadata"])
    assert side["response"]["metadata"] == {"topic": "summary"}
    assert side["response"]["conversation_id"] is None
    side_request = next(r for r in manual.engine.requests if r.instructions == "Summarize.")
    assert [i.text for i in side_request.items] == ["hello", "extra"]
    conversation_ids = [e.id for e in manual.session.conversation.entries()]
    assert side["response"]["output"][0]["id"] not in conversation_ids
    manual.send({"type": "response.create", "response": {"conversation": "none",
                                                          "input": [{"type": "item_reference", "id": "nope"}]}})
    assert manual.sink.events[-1]["error"]["param"] == "response.input[0].id"
    manual.validate_all()


async def test_function_call_round_trip(manual: Client) -> None:
    manual.engine.reply = lambda req: (
        [OutputFunctionCall("HassTurnOn", '{"name": "Kitchen Light"}')]
        if req.items[-1].type == "message" else [OutputText("Turned on the light.")])
    manual.send({"type": "conversation.item.create",
                 "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "light"}]}})
    manual.send({"type": "response.create", "response": {"tools": [
        {"type": "function", "name": "HassTurnOn", "parameters": {"type": "object"}}]}})
    done = await manual.sink.wait_for("response.done")
    call = done["response"]["output"][0]
    assert call["type"] == "function_call" and call["status"] == "completed"
    args_done = manual.sink.of_type("response.function_call_arguments.done")[0]
    assert args_done["call_id"] == call["call_id"] and args_done["arguments"] == '{"name": "Kitchen Light"}'
    assert manual.engine.requests[0].tools[0]["name"] == "HassTurnOn"
    manual.send({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call["call_id"], "output": '{"success": true}'}})
    manual.send({"type": "response.create"})
    second = await manual.sink.wait_for("response.done", 2)
    assert second["response"]["output"][0]["content"][0]["transcript"] == "Turned on the light."
    assert manual.engine.requests[1].items[-1].output == '{"success": true}'
    manual.validate_all()


async def test_item_create_positions_retrieve_delete(manual: Client) -> None:
    def create(item_id: str, previous: str | None = None) -> dict:
        event = {"type": "conversation.item.create",
                 "item": {"id": item_id, "type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": item_id}]}}
        if previous:
            event["previous_item_id"] = previous
        manual.send(event)
        return manual.sink.events[-1]

    assert create("item_b")["previous_item_id"] is None
    assert create("item_a", "root")["previous_item_id"] is None
    assert create("item_c", "item_b")["previous_item_id"] == "item_b"
    assert create("item_x", "item_missing")["type"] == "error"
    assert [e.id for e in manual.session.conversation.entries()] == ["item_a", "item_b", "item_c"]
    manual.send({"type": "conversation.item.retrieve", "item_id": "item_c"})
    assert manual.sink.events[-1]["item"]["content"][0]["text"] == "item_c"
    manual.send({"type": "conversation.item.delete", "item_id": "item_a"})
    assert manual.sink.events[-1] == {**manual.sink.events[-1], "type": "conversation.item.deleted", "item_id": "item_a"}
    for kind in ("retrieve", "delete"):
        manual.send({"type": f"conversation.item.{kind}", "item_id": "item_a", "event_id": "e9"})
        assert manual.sink.events[-1]["type"] == "error" and manual.sink.events[-1]["error"]["event_id"] == "e9"
    manual.validate_all()


async def test_retrieve_user_audio_returns_audio(manual: Client) -> None:
    pcm = tone(200)
    manual.append(pcm)
    manual.send({"type": "input_audio_buffer.commit"})
    item_id = manual.sink.of_type("input_audio_buffer.committed")[0]["item_id"]
    manual.send({"type": "conversation.item.retrieve", "item_id": item_id})
    item = manual.sink.events[-1]["item"]
    assert base64.b64decode(item["content"][0]["audio"]) == pcm


async def test_truncate_cuts_audio_and_unheard_text(manual: Client) -> None:
    manual.engine.reply = [OutputText("First sentence. "), OutputAudio(np.zeros(24000, np.int16), 24000),
                           OutputText("Second sentence here."), OutputAudio(np.zeros(24000, np.int16), 24000)]
    manual.send({"type": "response.create"})
    done = await manual.sink.wait_for("response.done")
    item_id = done["response"]["output"][0]["id"]
    manual.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 5000})
    assert manual.sink.events[-1]["error"]["param"] == "audio_end_ms"
    manual.send({"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0, "audio_end_ms": 1})
    assert manual.sink.events[-1]["error"]["code"] == "item_truncate_invalid_item_id"
    manual.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 1500})
    assert manual.sink.events[-1]["type"] == "conversation.item.truncated"
    manual.send({"type": "conversation.item.retrieve", "item_id": item_id})
    part = manual.sink.events[-1]["item"]["content"][0]
    assert part["transcript"] == "First sentence. Second"
    assert len(base64.b64decode(part["audio"])) == 24000 * 2 * 1500 // 1000
    manual.validate_all()


async def test_malformed_input_keeps_session_usable(manual: Client) -> None:
    manual.session.handle_text("{not json")
    assert manual.sink.events[-1]["error"]["code"] == "invalid_json"
    manual.send({"type": "what.is.this", "event_id": "u1"})
    error = manual.sink.events[-1]["error"]
    assert (error["code"], error["param"], error["event_id"]) == ("invalid_value", "type", "u1")
    manual.send({"type": "input_audio_buffer.append", "audio": "!!!"})
    assert manual.sink.events[-1]["error"]["param"] == "audio"
    manual.send({"type": "input_audio_buffer.clear"})
    assert manual.sink.events[-1]["type"] == "input_audio_buffer.cleared"
    manual.validate_all()


async def test_g711_input_and_output() -> None:
    client = Client()
    client.send({"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"format": {"type": "audio/pcmu"}, "turn_detection": None},
        "output": {"format": {"type": "audio/pcma"}}}}})
    client.send({"type": "input_audio_buffer.append", "audio": b64(bytes([0xFF]) * 800)})  # 100 ms of μ-law silence
    client.send({"type": "input_audio_buffer.commit"})
    assert client.sink.events[-1]["type"] == "conversation.item.done"
    client.send({"type": "response.create"})
    await client.sink.wait_for("response.done")
    audio = b"".join(base64.b64decode(e["delta"]) for e in client.sink.of_type("response.output_audio.delta"))
    assert abs(len(audio) - 800) <= 16  # 100 ms at 8 kHz, one byte per sample
    client.validate_all()


async def test_semantic_vad_ends_turn_on_complete_phrase() -> None:
    engine = ScriptedEngine(transcript="Turn on the kitchen light.")
    client = Client(engine)
    client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}}})
    client.append(tone(500) + silence(400))
    stopped = await client.sink.wait_for("input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] <= 500 + 400
    assert sounds_complete("Turn on the light.") and not sounds_complete("Turn on the")


async def test_transcription_events_when_enabled(manual: Client) -> None:
    manual.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-1"}}}}})
    manual.append(tone(300))
    manual.send({"type": "input_audio_buffer.commit"})
    completed = await manual.sink.wait_for("conversation.item.input_audio_transcription.completed")
    assert completed["transcript"] == "hello"
    assert completed["usage"]["type"] == "duration"
    manual.validate_all()


async def test_transcription_session() -> None:
    client = Client(kind="transcription")
    assert client.sink.events[0]["session"]["type"] == "transcription"
    client.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "transcription": {"model": "gpt-4o-transcribe", "language": "en"}}}}})
    client.append(tone(400) + silence(700))
    await client.sink.wait_for("conversation.item.input_audio_transcription.completed")
    client.send({"type": "response.create"})
    assert client.sink.events[-1]["type"] == "error"
    client.validate_all()


async def test_session_expires() -> None:
    client = Client(max_duration_s=0.05)
    await asyncio.sleep(0.1)
    assert client.sink.of_type("error")[-1]["error"]["code"] == "session_expired"
    assert client.sink.closed[0] == 1001


async def test_idle_timeout_triggers_response() -> None:
    client = Client()
    client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "idle_timeout_ms": 1000}}}}})
    client.send({"type": "conversation.item.create",
                 "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
    client.send({"type": "response.create"})
    await client.sink.wait_for("response.done")
    await client.sink.wait_for("input_audio_buffer.timeout_triggered", timeout=3)
    await client.sink.wait_for("response.done", 2)
    client.validate_all()


def test_heard_text_proportional() -> None:
    from hearth.server.session.conversation import Entry, SpokenSpan

    entry = Entry(item={"id": "x"}, spans=[SpokenSpan("One two. ", 0, 1000), SpokenSpan("three four five six", 1000, 2000)])
    assert heard_text(entry, 999) == "One"
    assert heard_text(entry, 1000) == "One two."
    assert heard_text(entry, 1500) == "One two. three four"


async def test_created_user_audio_item_is_transcribed_for_the_brain(manual: Client) -> None:
    manual.send({"type": "conversation.item.create", "item": {
        "id": "item_u", "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "note:"}, {"type": "input_audio", "audio": b64(tone(200))}]}})
    added = manual.sink.of_type("conversation.item.added")[-1]["item"]
    assert "audio" not in added["content"][1]  # echoed items omit audio bytes
    manual.send({"type": "response.create"})
    await manual.sink.wait_for("response.done")
    assert manual.engine.requests[-1].items[-1].text == "note: hello"
    manual.send({"type": "conversation.item.retrieve", "item_id": "item_u"})
    part = manual.sink.events[-1]["item"]["content"][1]
    assert part["transcript"] == "hello" and base64.b64decode(part["audio"]) == tone(200)


async def test_short_dip_inside_speech_does_not_start_a_transcription() -> None:
    client = Client()
    client.append(tone(400) + silence(40) + tone(400) + silence(700))
    await client.sink.wait_for("response.done")
    assert len(client.sink.of_type("input_audio_buffer.speech_started")) == 1
    assert len(client.engine.transcriptions) == 1  # the 40 ms dip never reached Whisper
