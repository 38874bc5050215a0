"""The real server, driven by the real `openai` SDK over a real socket, with the real cascade.

Every test connects with `AsyncOpenAI(...).realtime.connect(...)` (or, where the SDK
cannot express the frame, `websockets` with the same headers); every server event is
validated as raw JSON against the SDK's `RealtimeServerEvent` (see conftest.Realtime).
Speech is synthesized in the test with piper and streamed in 40 ms appends, faster
than real time, with trailing silence so server VAD closes the turn.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
import soxr
import websockets
from openai import AsyncOpenAI
from websockets.exceptions import ConnectionClosed

from hearth.server.audio.formats import PCMA, PCMU, decode, encode
from hearth.server.engines.cascade.brain_intents_replies import DIDNT_CATCH
from tests.conftest import API_KEY
from tests.server_harness import RunningServer

from .conftest import (
    AUDIO_MESSAGE_ORDER,
    FUNCTION_CALL_ORDER,
    RATE,
    SERVER_EVENT,
    TEXT_MESSAGE_ORDER,
    Realtime,
    Speech,
    connect,
    decode_pcm16,
    deltas_inside_part,
    ha_output,
    hass_turn_on,
    rms,
    silence,
    skeleton,
    words,
)

pytestmark = pytest.mark.slow

NAMES = ["Kitchen Light", "Porch Light"]
TIME_RE = re.compile(r"\b(\d{1,2}):(\d{2}) (AM|PM)\b")
LONG_SPEECH = (
    "Turned on the porch light. The porch light is now shining over the front steps and the driveway. "
    "It will stay on until you ask me to turn it off again, or until the schedule ends at midnight. "
    "The kitchen light is still on as well, and the bedroom is dark. "
    "If you want, I can dim the porch light to half brightness to save some energy tonight. "
    "I can also remind you to turn everything off before you go to bed."
)


def user_text(text: str, item_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    if item_id:
        item["id"] = item_id
    return item


def assert_says_time(transcript: str, before: datetime, after: datetime) -> None:
    """The transcript names the wall-clock time (the server runs in this process)."""
    match = TIME_RE.search(transcript)
    assert match, f"no time in {transcript!r}"
    said = (int(match[1]), int(match[2]), match[3])
    allowed = set()
    moment = before.replace(second=0, microsecond=0)
    while moment <= after:
        allowed.add((moment.hour % 12 or 12, moment.minute, "AM" if moment.hour < 12 else "PM"))
        moment += timedelta(minutes=1)
    assert said in allowed, f"{transcript!r} is not the time between {before:%H:%M} and {after:%H:%M}"


def check_audio_response(rt: Realtime, response: dict[str, Any],
                         fmt_decode: Callable[[bytes], np.ndarray] | None = None,
                         rate: int = RATE) -> tuple[str, np.ndarray]:
    """Checks one completed assistant audio message (§5.1 order and fields); returns (transcript, samples)."""
    rid = response["id"]
    events = rt.response_events(rid)
    assert skeleton(events) == AUDIO_MESSAGE_ORDER
    created = events[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert created["output_modalities"] == ["audio"]
    assert created["conversation_id"].startswith("conv_")
    item_id = events[1]["item"]["id"]
    assert events[1]["item"] == {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                                 "status": "in_progress", "content": []}
    assert events[1]["output_index"] == 0
    assert events[3]["part"] == {"type": "audio", "transcript": ""}
    for event in events[1:-1]:
        if event["type"].startswith("response."):
            assert event["response_id"] == rid
        if "content_index" in event:
            assert (event["item_id"], event["output_index"], event["content_index"]) == (item_id, 0, 0)

    transcript_deltas = deltas_inside_part(events, "response.output_audio_transcript.delta",
                                           "response.output_audio_transcript.done")
    audio_deltas = deltas_inside_part(events, "response.output_audio.delta", "response.output_audio.done")
    by_type = {e["type"]: e for e in events}
    transcript = by_type["response.output_audio_transcript.done"]["transcript"]
    assert transcript and "".join(e["delta"] for e in transcript_deltas) == transcript
    assert by_type["response.content_part.done"]["part"] == {"type": "audio", "transcript": transcript}
    final_item = {**events[1]["item"], "status": "completed",
                  "content": [{"type": "output_audio", "transcript": transcript}]}
    assert by_type["conversation.item.done"]["item"] == final_item
    assert by_type["response.output_item.done"]["item"] == final_item
    assert response["status"] == "completed" and response["status_details"] is None
    assert response["output"] == [final_item]  # items in events never carry audio bytes

    if fmt_decode is None:
        samples = decode_pcm16([e["delta"] for e in audio_deltas])
    else:
        samples = fmt_decode(b"".join(base64.b64decode(e["delta"]) for e in audio_deltas))
    audio_ms = 1000 * len(samples) / rate
    words_spoken = len(transcript.split())
    assert 150 * words_spoken < audio_ms < 1000 * words_spoken + 1500, f"{audio_ms} ms for {transcript!r}"
    assert rms(samples) > 500, "the reply must be audible"
    usage = response["usage"]
    assert usage["output_token_details"]["audio_tokens"] == math.ceil(audio_ms / 50)
    assert usage["output_tokens"] == usage["output_token_details"]["text_tokens"] + \
        usage["output_token_details"]["audio_tokens"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens"] > 0
    return transcript, samples


def check_vad_prefix(rt: Realtime, since: int, speech: Speech) -> str:
    """§5.1 up to response.created for a server-VAD turn; returns the user item id."""
    session = [e for e in rt.events[:since] if e["type"] in ("session.created", "session.updated")][-1]["session"]
    vad = session["audio"]["input"]["turn_detection"]
    silence_ms, prefix_ms = vad["silence_duration_ms"], vad["prefix_padding_ms"]
    wanted = {"input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
              "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done",
              "response.created"}
    seq = [e for e in rt.events[since:] if e["type"] in wanted]
    assert [e["type"] for e in seq[:6]] == [
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
        "conversation.item.added", "conversation.item.done", "response.created"]
    started, stopped, committed, added, done = seq[:5]
    item_id = started["item_id"]
    assert item_id.startswith("item_")
    assert stopped["item_id"] == committed["item_id"] == item_id
    # audio_start_ms includes the prefix padding; audio_end_ms includes the silence waited.
    assert abs(started["audio_start_ms"] - (speech.voiced_start_ms - prefix_ms)) < 200, started
    assert -150 < stopped["audio_end_ms"] - (speech.voiced_end_ms + silence_ms) < 400, stopped
    user_item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                 "content": [{"type": "input_audio", "transcript": None}]}
    assert added["item"] == done["item"] == user_item
    assert added["previous_item_id"] == done["previous_item_id"] == committed["previous_item_id"]
    return item_id


# ================================================================================ 1. text turns


async def test_text_turn_gets_a_spoken_answer(server: RunningServer) -> None:
    async with connect(server) as rt:
        session = rt.events[0]["session"]
        assert session["type"] == "realtime" and session["model"] == "gpt-realtime"
        assert session["id"].startswith("sess_")
        before = datetime.now()
        mark = rt.mark()
        await rt.conn.conversation.item.create(item=user_text("what time is it"))
        await rt.conn.response.create()
        response = await rt.response(mark)
        after = datetime.now()

        added, done = rt.events[mark], rt.events[mark + 1]
        assert (added["type"], done["type"]) == ("conversation.item.added", "conversation.item.done")
        assert added["previous_item_id"] is None and added["item"] == done["item"]
        user_id = added["item"]["id"]
        assert added["item"] == {"id": user_id, "object": "realtime.item", "type": "message", "role": "user",
                                 "status": "completed", "content": [{"type": "input_text", "text": "what time is it"}]}
        assert rt.events[mark + 2]["type"] == "response.created"
        transcript, _ = check_audio_response(rt, response)
        assert_says_time(transcript, before, after)
        assistant_added = rt.response_events(response["id"])[2]
        assert assistant_added["previous_item_id"] == user_id


async def test_text_only_output_modalities(server: RunningServer) -> None:
    async with connect(server) as rt:
        before = datetime.now()
        await rt.conn.conversation.item.create(item=user_text("what time is it"))
        for how in ("response", "session"):
            mark = rt.mark()
            if how == "response":
                await rt.conn.response.create(response={"output_modalities": ["text"]})
            else:
                await rt.conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
                await rt.conn.response.create()
            response = await rt.response(mark)
            after = datetime.now()
            events = rt.response_events(response["id"])
            assert skeleton(events) == TEXT_MESSAGE_ORDER
            assert not [e for e in rt.events[mark:] if "audio" in e["type"]]
            assert events[0]["response"]["output_modalities"] == ["text"]
            assert events[3]["part"] == {"type": "text", "text": ""}
            text = next(e for e in events if e["type"] == "response.output_text.done")["text"]
            deltas = deltas_inside_part(events, "response.output_text.delta", "response.output_text.done")
            assert "".join(d["delta"] for d in deltas) == text
            assert_says_time(text, before, after)
            item = {**events[1]["item"], "status": "completed", "content": [{"type": "output_text", "text": text}]}
            assert response["output"] == [item] and response["status"] == "completed"
            assert response["usage"]["output_token_details"]["audio_tokens"] == 0


# ================================================================================ 2. audio turns


async def test_audio_turn_calls_the_tool(server: RunningServer, speak: Callable[[str], Speech]) -> None:
    speech = speak("Turn on the porch light.")
    async with connect(server, session={"type": "realtime", "tools": [hass_turn_on(NAMES)]}) as rt:
        mark = await rt.say(speech)
        response = await rt.response(mark)
        user_id = check_vad_prefix(rt, mark, speech)
        events = rt.response_events(response["id"])
        assert skeleton(events) == FUNCTION_CALL_ORDER
        call = events[1]["item"]
        assert call["type"] == "function_call" and call["status"] == "in_progress" and call["arguments"] == ""
        assert call["name"] == "HassTurnOn" and call["call_id"].startswith("call_")
        assert events[2]["previous_item_id"] == user_id
        done = events[4]
        assert (done["item_id"], done["call_id"], done["name"]) == (call["id"], call["call_id"], "HassTurnOn")
        assert json.loads(done["arguments"]) == {"name": "Porch Light"}
        assert "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta") == \
            done["arguments"]
        final = {**call, "status": "completed", "arguments": done["arguments"]}
        assert events[5]["item"] == events[6]["item"] == final
        assert response["status"] == "completed" and response["output"] == [final]
        # input audio is counted (1 token per 100 ms of user audio in the context)
        assert response["usage"]["input_token_details"]["audio_tokens"] > 5


async def test_audio_turn_spoken_answer(server: RunningServer, speak: Callable[[str], Speech]) -> None:
    speech = speak("What time is it?")
    async with connect(server) as rt:
        before = datetime.now()
        mark = await rt.say(speech)
        response = await rt.response(mark)
        after = datetime.now()
        user_id = check_vad_prefix(rt, mark, speech)
        transcript, samples = check_audio_response(rt, response)
        assert_says_time(transcript, before, after)
        assert rt.response_events(response["id"])[2]["previous_item_id"] == user_id
        # transcription is off: no transcription events
        assert not [e for e in rt.events if "input_audio_transcription" in e["type"]]


# ================================================================================ 3. transcription


async def test_input_audio_transcription(server: RunningServer, speak: Callable[[str], Speech]) -> None:
    speech = speak("What time is it?")
    session = {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
        "turn_detection": {"type": "server_vad", "create_response": False}}}}
    async with connect(server, session=session) as rt:
        updated = rt.find("session.updated")[-1]["session"]
        assert updated["audio"]["input"]["transcription"]["model"] == "gpt-4o-transcribe"
        mark = await rt.say(speech)
        committed = await rt.wait("input_audio_buffer.committed", mark)
        item_id = committed["item_id"]
        completed = await rt.wait("conversation.item.input_audio_transcription.completed", mark, item_id=item_id)
        deltas = rt.find("conversation.item.input_audio_transcription.delta", mark, item_id=item_id)
        assert deltas and rt.index(deltas[-1]) < rt.index(completed) and rt.index(committed) < rt.index(deltas[0])
        assert all(d["content_index"] == 0 for d in deltas) and completed["content_index"] == 0
        assert "".join(d["delta"] for d in deltas) == completed["transcript"]
        assert words(completed["transcript"]) == "what time is it"
        assert completed["usage"]["type"] == "duration" and 0.5 < completed["usage"]["seconds"] < 5

        started = rt.find("input_audio_buffer.speech_started", mark)[0]
        stopped = rt.find("input_audio_buffer.speech_stopped", mark)[0]
        m = rt.mark()
        await rt.conn.conversation.item.retrieve(item_id=item_id)
        item = (await rt.wait("conversation.item.retrieved", m))["item"]
        part = item["content"][0]
        assert part["type"] == "input_audio" and part["transcript"] == completed["transcript"]
        audio_ms = len(base64.b64decode(part["audio"])) / 48
        assert abs(audio_ms - (stopped["audio_end_ms"] - started["audio_start_ms"])) < 50
        # create_response: false -> the turn is committed, nothing answers it
        await rt.quiet()
        assert not rt.find("response.created")


async def test_transcription_only_session(server: RunningServer, speak: Callable[[str], Speech]) -> None:
    speech = speak("Turn on the kitchen light.")
    async with connect(server, model=None, extra_query={"intent": "transcription"}) as rt:
        session = rt.events[0]["session"]
        assert session["type"] == "transcription" and "model" not in session
        mark = rt.mark()
        await rt.send({"type": "session.update", "session": {
            "type": "transcription",
            "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe", "language": "en"}}}}})
        updated = (await rt.wait("session.updated", mark))["session"]
        assert updated["audio"]["input"]["transcription"]["language"] == "en"
        mark = await rt.say(speech)
        committed = await rt.wait("input_audio_buffer.committed", mark)
        completed = await rt.wait("conversation.item.input_audio_transcription.completed", mark,
                                  item_id=committed["item_id"])
        assert words(completed["transcript"]) == "turn on the kitchen light"
        assert rt.types(mark)[:3] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                                      "input_audio_buffer.committed"]
        await rt.quiet()
        assert not [t for t in rt.types() if t.startswith("response.")]


# ================================================================================ 4. function-call round trip


async def test_function_call_round_trip(server: RunningServer) -> None:
    async with connect(server, session={"type": "realtime", "tools": [hass_turn_on(NAMES)]}) as rt:
        mark = rt.mark()
        await rt.conn.conversation.item.create(item=user_text("turn on the porch light"))
        await rt.conn.response.create()
        first = await rt.response(mark)
        assert skeleton(rt.response_events(first["id"])) == FUNCTION_CALL_ORDER
        [call] = first["output"]
        assert call["type"] == "function_call" and call["name"] == "HassTurnOn"
        assert json.loads(call["arguments"]) == {"name": "Porch Light"}

        mark = rt.mark()
        await rt.conn.conversation.item.create(item={
            "type": "function_call_output", "call_id": call["call_id"],
            "output": ha_output("Turned on the porch light")})
        added = await rt.wait("conversation.item.done", mark)
        assert rt.types(mark) == ["conversation.item.added", "conversation.item.done"]
        assert added["previous_item_id"] == call["id"]
        assert added["item"]["type"] == "function_call_output" and added["item"]["call_id"] == call["call_id"]
        await rt.quiet()
        assert not rt.find("response.created", mark), "tool output must not start a response by itself"

        mark = rt.mark()
        await rt.conn.response.create()
        second = await rt.response(mark)
        transcript, _ = check_audio_response(rt, second)
        assert words(transcript) == "turned on the porch light"
        assert rt.response_events(second["id"])[2]["previous_item_id"] == added["item"]["id"]


# ================================================================================ 5. barge-in


async def test_barge_in_cancels_then_client_truncates(server: RunningServer, speak: Callable[[str], Speech]) -> None:
    interruption = speak("What time is it?")
    async with connect(server, session={"type": "realtime", "tools": [hass_turn_on(NAMES)]}) as rt:
        mark = rt.mark()
        await rt.conn.conversation.item.create(item=user_text("turn on the porch light"))
        await rt.conn.response.create()
        [call] = (await rt.response(mark))["output"]
        await rt.conn.conversation.item.create(item={
            "type": "function_call_output", "call_id": call["call_id"], "output": ha_output(LONG_SPEECH)})
        mark = rt.mark()
        await rt.conn.response.create()
        created = await rt.wait("response.created", mark)
        rid = created["response"]["id"]
        await rt.wait("response.output_audio.delta", mark, response_id=rid)

        # the user talks over the long reply
        before = datetime.now()
        talk = await rt.say(interruption)
        started = await rt.wait("input_audio_buffer.speech_started", talk)
        done = await rt.wait("response.done", mark, response={"id": rid})
        cancelled = done["response"]
        assert cancelled["status"] == "cancelled"
        assert cancelled["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
        assert rt.index(started) < rt.index(done)
        # nothing but the closing events of R follows speech_started: no more deltas
        after_start = [e for e in rt.response_events(rid) if rt.index(e) > rt.index(started)]
        assert [e["type"] for e in after_start] == [
            "response.output_audio.done", "response.output_audio_transcript.done", "response.content_part.done",
            "conversation.item.done", "response.output_item.done", "response.done"]
        [message] = cancelled["output"]
        assert message["status"] == "incomplete"
        spoken = message["content"][0]["transcript"]
        assert spoken and words(LONG_SPEECH).startswith(words(spoken)) and len(spoken) < len(LONG_SPEECH) / 2
        received = decode_pcm16([e["delta"] for e in rt.find("response.output_audio.delta", mark, response_id=rid)])
        received_ms = 1000 * len(received) / RATE
        assert received_ms > 0

        # the client stops playback half-way through what it received and truncates
        played_ms = int(received_ms / 2)
        m = rt.mark()
        await rt.send({"type": "conversation.item.truncate", "event_id": "evt_truncate",
                       "item_id": message["id"], "content_index": 0, "audio_end_ms": played_ms})
        truncated = await rt.wait("conversation.item.truncated", m)
        assert {k: truncated[k] for k in ("item_id", "content_index", "audio_end_ms")} == {
            "item_id": message["id"], "content_index": 0, "audio_end_ms": played_ms}
        m = rt.mark()
        await rt.conn.conversation.item.retrieve(item_id=message["id"])
        item = (await rt.wait("conversation.item.retrieved", m))["item"]
        part = item["content"][0]
        assert part["type"] == "output_audio"
        assert len(decode_pcm16([part["audio"]])) == played_ms * RATE // 1000
        assert len(part["transcript"]) < len(spoken) and spoken.startswith(part["transcript"])

        # and the interrupting turn is answered
        response = await rt.response(rt.index(started))
        transcript, _ = check_audio_response(rt, response)
        assert_says_time(transcript, before, datetime.now())
        assert not [e for e in rt.events if e["type"] == "error"]


# ================================================================================ 6. truncate


async def test_truncate_completed_response(server: RunningServer) -> None:
    async with connect(server) as rt:
        mark = rt.mark()
        await rt.conn.conversation.item.create(item=user_text("what time is it"))
        await rt.conn.response.create()
        response = await rt.response(mark)
        user_id = rt.events[mark]["item"]["id"]
        transcript, samples = check_audio_response(rt, response)
        full_ms = 1000 * len(samples) / RATE
        item_id = response["output"][0]["id"]

        def truncate(event_id: str, item: str, end_ms: int) -> dict[str, Any]:
            return {"type": "conversation.item.truncate", "event_id": event_id, "item_id": item,
                    "content_index": 0, "audio_end_ms": end_ms}

        await rt.send(truncate("evt_long", item_id, int(full_ms) + 1000))
        error = await rt.error_for("evt_long")
        assert error["type"] == "invalid_request_error" and error["param"] == "audio_end_ms"
        await rt.send(truncate("evt_user", user_id, 100))
        error = await rt.error_for("evt_user")
        assert error["param"] == "item_id"

        m = rt.mark()
        await rt.send(truncate("evt_ok", item_id, 400))
        truncated = await rt.wait("conversation.item.truncated", m)
        assert (truncated["item_id"], truncated["content_index"], truncated["audio_end_ms"]) == (item_id, 0, 400)
        m = rt.mark()
        await rt.conn.conversation.item.retrieve(item_id=item_id)
        part = (await rt.wait("conversation.item.retrieved", m))["item"]["content"][0]
        audio = decode_pcm16([part["audio"]])
        assert len(audio) == 400 * RATE // 1000
        assert np.array_equal(audio, samples[: len(audio)]), "truncation keeps the start of the audio"
        assert len(part["transcript"]) < len(transcript) and transcript.startswith(part["transcript"])
        # the cut item is now 400 ms long
        await rt.send(truncate("evt_after", item_id, 401 + 1))
        assert (await rt.error_for("evt_after"))["param"] == "audio_end_ms"


# ================================================================================ 7. out-of-band


OVERVIEW = """You control a smart home. Static Context: An overview of the areas and the devices in this smart home:
- names: Desk Lamp
  domain: light
  areas: Office
"""


async def test_out_of_band_response_beside_default(server: RunningServer) -> None:
    async with connect(server) as rt:
        mark = rt.mark()
        await rt.conn.conversation.item.create(item=user_text("what time is it", "item_context_0001"))
        await rt.wait("conversation.item.done", mark)
        before = datetime.now()
        await rt.conn.response.create()
        await rt.send({"type": "response.create", "event_id": "evt_oob", "response": {
            "conversation": "none",
            "metadata": {"topic": "lights"},
            "input": [{"type": "item_reference", "id": "item_context_0001"},
                      user_text("turn on the desk lamp")],
            "instructions": OVERVIEW,
            "output_modalities": ["text"],
            "tools": [hass_turn_on()],
        }})
        await rt.send({"type": "response.create", "event_id": "evt_empty", "response": {
            "conversation": "none", "metadata": {"topic": "empty"}, "input": [], "output_modalities": ["text"]}})
        default = await rt.response(mark, response={"metadata": None})
        oob_created = await rt.wait("response.created", mark, response={"metadata": {"topic": "lights"}})
        oob = (await rt.wait("response.done", mark, response={"id": oob_created["response"]["id"]}))["response"]
        empty_created = await rt.wait("response.created", mark, response={"metadata": {"topic": "empty"}})
        empty = (await rt.wait("response.done", mark, response={"id": empty_created["response"]["id"]}))["response"]
        assert not rt.errors(), rt.errors()

        # the default response answered the default conversation
        assert default["conversation_id"] is not None and default["metadata"] is None
        transcript, _ = check_audio_response(rt, default)
        assert_says_time(transcript, before, datetime.now())

        # the out-of-band response: its own input, instructions, tools, modality, metadata
        created = oob_created["response"]
        assert created["conversation_id"] is None and created["metadata"] == {"topic": "lights"}
        assert created["output_modalities"] == ["text"]
        default_done = rt.find("response.done", mark, response={"id": default["id"]})[0]
        assert rt.index(oob_created) < rt.index(default_done), "it must run beside the default response"
        assert oob["status"] == "completed" and oob["metadata"] == {"topic": "lights"}
        [call] = oob["output"]
        assert call["name"] == "HassTurnOn" and json.loads(call["arguments"]) == {"name": "Desk Lamp"}
        assert skeleton(rt.response_events(oob["id"])) == [
            "response.created", "response.output_item.added", "response.function_call_arguments.delta",
            "response.function_call_arguments.done", "response.output_item.done", "response.done"]
        assert empty["metadata"] == {"topic": "empty"}
        assert empty["output"][0]["content"] == [{"type": "output_text", "text": DIDNT_CATCH}]

        # its items never enter the default conversation
        oob_items = {call["id"], empty["output"][0]["id"]}
        for event in rt.events:
            if event["type"].startswith("conversation.item."):
                assert event.get("item", {}).get("id") not in oob_items
        for n, item_id in enumerate(sorted(oob_items)):
            await rt.send({"type": "conversation.item.retrieve", "event_id": f"evt_get_{n}", "item_id": item_id})
            assert (await rt.error_for(f"evt_get_{n}"))["code"] == "item_retrieve_invalid_item_id"
        m = rt.mark()
        await rt.conn.conversation.item.retrieve(item_id=default["output"][0]["id"])
        assert (await rt.wait("conversation.item.retrieved", m))["item"]["id"] == default["output"][0]["id"]


# ================================================================================ 8. errors


async def expect_error(rt: Realtime, event: dict[str, Any], code: str | None,
                       param: str | None = None) -> dict[str, Any]:
    """Send `event` (raw JSON, exactly as written) and return its error, checked against `code`/`param`."""
    await rt.send_raw(json.dumps(event))
    error = await rt.error_for(event["event_id"])
    assert error["code"] == code, error
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error" and error["message"], error
    return error


async def test_request_errors_carry_code_param_and_event_id(server: RunningServer) -> None:
    async with connect(server, session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}) as rt:
        # input_audio_buffer_commit_empty: < 100 ms buffered
        await rt.append(silence(50))
        error = await expect_error(rt, {"type": "input_audio_buffer.commit", "event_id": "evt_commit"},
                                   "input_audio_buffer_commit_empty")
        assert "100ms" in error["message"] and "50" in error["message"]
        m = rt.mark()
        await rt.conn.input_audio_buffer.clear()
        await rt.wait("input_audio_buffer.cleared", m)

        # conversation_already_has_active_response, while the first one still runs
        m = rt.mark()
        await rt.conn.conversation.item.create(item=user_text("what time is it"))
        await rt.conn.response.create()
        error = await expect_error(rt, {"type": "response.create", "event_id": "evt_second"},
                                   "conversation_already_has_active_response")
        first = await rt.response(m)
        assert first["id"] in error["message"] and first["status"] == "completed"
        assert len(rt.find("response.created", m)) == 1

        await expect_error(rt, {"type": "response.cancel", "event_id": "evt_cancel"}, "response_cancel_not_active")
        await expect_error(rt, {"type": "conversation.item.truncate", "event_id": "evt_trunc", "item_id": "item_nope",
                                "content_index": 0, "audio_end_ms": 10}, "item_truncate_invalid_item_id", "item_id")
        await expect_error(rt, {"type": "conversation.item.retrieve", "event_id": "evt_get", "item_id": "item_nope"},
                           "item_retrieve_invalid_item_id", "item_id")
        await expect_error(rt, {"type": "conversation.item.delete", "event_id": "evt_del", "item_id": "item_nope"},
                           "item_delete_invalid_item_id", "item_id")
        m = rt.mark()
        await expect_error(rt, {"type": "conversation.item.create", "event_id": "evt_prev",
                                "previous_item_id": "item_nope", "item": user_text("hello", "item_orphan")},
                           "invalid_value", "previous_item_id")
        await rt.round_trip()
        assert not rt.find("conversation.item.added", m), "the item must not be added"

        # session.update: the whole update is rejected, with the offending path
        update_cases = [
            ({"type": "realtime", "instructions": "CHANGED", "voice": "alloy"}, "unknown_parameter", "session.voice"),
            ({"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcm", "bits": 16}}}},
             "unknown_parameter", "session.audio.output.format.bits"),
            ({"instructions": "CHANGED"}, "missing_required_parameter", "session.type"),
            ({"type": "transcription"}, "invalid_value", "session.type"),
            ({"type": "realtime", "output_modalities": ["video"]}, "invalid_value", "session.output_modalities[0]"),
            ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "now"}}}},
             "invalid_value", "session.audio.input.turn_detection.eagerness"),
            ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
             "integer_below_min_value", "session.audio.input.format.rate"),
            ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 1.5}}}},
             "decimal_above_max_value", "session.audio.input.turn_detection.threshold"),
            ({"type": "realtime", "max_output_tokens": 0}, "integer_below_min_value", "session.max_output_tokens"),
        ]
        for n, (session, code, param) in enumerate(update_cases):
            await expect_error(rt, {"type": "session.update", "event_id": f"evt_update_{n}", "session": session},
                               code, param)
        session = (await rt.round_trip())["session"]
        assert session["instructions"] != "CHANGED"
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["input"]["turn_detection"] is None
        assert session["output_modalities"] == ["audio"]
        # the successful update does not echo the client's event_id anywhere
        assert all(e["type"] == "error" for e in rt.events if "evt_" in json.dumps(e))


async def handshake_failure(**connect_kwargs: Any) -> tuple[list[dict[str, Any]], ConnectionClosed]:
    """Connect with the SDK and read until the server closes."""
    client = AsyncOpenAI(base_url=connect_kwargs.pop("base_url"), api_key=connect_kwargs.pop("api_key", API_KEY))
    events = []
    async with client.realtime.connect(**connect_kwargs) as conn:
        try:
            while True:
                events.append(json.loads(await asyncio.wait_for(conn.recv_bytes(), 10)))
        except ConnectionClosed as exc:
            closed = exc
    for event in events:
        SERVER_EVENT.validate_python(event)
    return events, closed


async def test_wrong_api_key_error_then_close_3000(server: RunningServer) -> None:
    events, closed = await handshake_failure(base_url=server.base_url, api_key="sk-wrong", model="gpt-realtime")
    [event] = events
    assert event["type"] == "error"
    assert event["error"]["code"] == "invalid_api_key" and event["error"]["type"] == "invalid_request_error"
    assert closed.rcvd is not None and closed.rcvd.code == 3000
    assert closed.rcvd.reason == "invalid_request_error.invalid_api_key"


async def test_missing_api_key_error_then_close_3000(server: RunningServer) -> None:
    async with websockets.connect(server.ws_url + "?model=gpt-realtime") as ws:
        event = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    SERVER_EVENT.validate_python(event)
    assert event["type"] == "error" and event["error"]["code"] is None
    assert event["error"]["type"] == "invalid_request_error"
    assert info.value.rcvd is not None and info.value.rcvd.code == 3000


@pytest.mark.parametrize(("kwargs", "code"), [
    ({}, "missing_model"),
    ({"model": "gpt-realtime", "extra_query": {"intent": "transcription"}}, "invalid_model"),
    ({"model": "gpt-realtime", "extra_headers": {"OpenAI-Beta": "realtime=v1"}}, "beta_api_shape_disabled"),
])
async def test_request_shape_errors_close_4000(server: RunningServer, kwargs: dict[str, Any], code: str) -> None:
    events, closed = await handshake_failure(base_url=server.base_url, **kwargs)
    [event] = events
    assert event["type"] == "error" and event["error"]["code"] == code
    assert closed.rcvd is not None and closed.rcvd.code == 4000
    assert closed.rcvd.reason == f"invalid_request_error.{code}"


async def test_session_expired_then_close_1001(extra_server: Any) -> None:
    with extra_server({"server": {"max_session_duration_s": 1}}) as short:
        started = time.time()
        async with connect(short, api_key="anything") as rt:
            expires_at = rt.events[0]["session"]["expires_at"]
            assert abs(expires_at - (started + 1)) <= 2
            closed = await rt.wait_closed(timeout=10)  # bounds a hang only
            assert time.time() - started >= 0.9, "closed on the session's maximum duration, not before"
            errors = rt.find("error")
            assert [e["error"]["code"] for e in errors] == ["session_expired"]
            assert errors[0]["error"]["event_id"] is None
            assert errors[0]["error"]["message"] == "Your session hit the maximum duration of 1 second."
            assert rt.events[-1] is errors[0], "the error is the last event"
            assert closed.rcvd is not None and closed.rcvd.code == 1001
            assert closed.rcvd.reason == "invalid_request_error.session_expired"


# ================================================================================ 9. bad frames


async def test_bad_frames_are_errors_and_the_connection_stays_usable(server: RunningServer) -> None:
    cases: list[tuple[str | bytes, str | None, str | None, str | None]] = [
        ("{not json", "invalid_json", None, None),
        (b"\x00\x01binary", "invalid_event", None, None),
        ('["a", "list"]', "invalid_event", None, None),
        (json.dumps({"type": "session.frobnicate", "event_id": "evt_unknown"}), "invalid_value", "type", "evt_unknown"),
        (json.dumps({"type": "transcription_session.update", "session": {}}), "invalid_value", "type", None),
        (json.dumps({"event_id": "evt_notype"}), "missing_required_parameter", "type", "evt_notype"),
        (json.dumps({"type": "input_audio_buffer.append", "event_id": "evt_noaudio"}), "missing_required_parameter",
         "audio", "evt_noaudio"),
        (json.dumps({"type": "input_audio_buffer.append", "event_id": "evt_b64", "audio": "%%%"}), "invalid_value",
         "audio", "evt_b64"),
    ]
    async with connect(server) as rt:
        for frame, code, param, event_id in cases:
            mark = rt.mark()
            await rt.send_raw(frame)
            error = (await rt.wait("error", mark))["error"]
            assert (error["code"], error["param"], error["event_id"]) == (code, param, event_id), (frame, error)
            assert error["type"] == "invalid_request_error" and error["message"]
            updated = await rt.round_trip()
            assert rt.types(mark) == ["error", "session.updated"], frame
            assert updated["session"]["type"] == "realtime"
        assert not rt.closed


# ================================================================================ 10. audio formats


async def test_g711_in_and_out(server: RunningServer, speak: Callable[[str], Speech]) -> None:
    speech = speak("What time is it?")
    narrow = soxr.resample(np.concatenate([speech.pcm, silence(1200)]).astype(np.float32) / 32768, RATE, 8000)
    ulaw = encode(PCMU, np.clip(np.rint(narrow * 32767), -32768, 32767).astype(np.int16))
    session = {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}},
                                             "output": {"format": {"type": "audio/pcma"}}}}
    async with connect(server, session=session) as rt:
        updated = rt.find("session.updated")[-1]["session"]
        assert updated["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        assert updated["audio"]["output"]["format"] == {"type": "audio/pcma"}
        before = datetime.now()
        mark = rt.mark()
        await rt.append(ulaw, bytes_per_ms=8)
        response = await rt.response(mark)
        user_id = check_vad_prefix(rt, mark, speech)
        assert rt.response_events(response["id"])[0]["response"]["audio"]["output"]["format"] == {"type": "audio/pcma"}
        transcript, samples = check_audio_response(rt, response, lambda data: decode(PCMA, data), rate=8000)
        assert_says_time(transcript, before, datetime.now())
        # A-law: the quiet edges of the speech decode as near-silence (mu-law bytes would not)
        assert np.percentile(np.abs(samples.astype(np.int32)), 5) < 64

        m = rt.mark()
        await rt.conn.conversation.item.retrieve(item_id=user_id)
        part = (await rt.wait("conversation.item.retrieved", m))["item"]["content"][0]
        started = rt.find("input_audio_buffer.speech_started", mark)[0]
        stopped = rt.find("input_audio_buffer.speech_stopped", mark)[0]
        retrieved_ms = len(base64.b64decode(part["audio"])) / 8  # mu-law: 8 bytes per ms
        assert abs(retrieved_ms - (stopped["audio_end_ms"] - started["audio_start_ms"])) < 50


# ================================================================================ 11. browser auth, open servers


async def test_browser_subprotocol_auth(server: RunningServer) -> None:
    url = server.ws_url + "?model=gpt-realtime"
    async with websockets.connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{API_KEY}"]) as ws:
        assert ws.subprotocol == "realtime"
        created = json.loads(await ws.recv())
        SERVER_EVENT.validate_python(created)
        assert created["type"] == "session.created" and created["session"]["model"] == "gpt-realtime"
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": "Hi."}}))
        updated = json.loads(await ws.recv())
        SERVER_EVENT.validate_python(updated)
        assert updated["type"] == "session.updated" and updated["session"]["instructions"] == "Hi."

    async with websockets.connect(url, subprotocols=["realtime", "openai-insecure-api-key.sk-wrong"]) as ws:
        assert ws.subprotocol == "realtime"
        error = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert error["type"] == "error" and error["error"]["code"] == "invalid_api_key"
    assert info.value.rcvd is not None and info.value.rcvd.code == 3000


async def test_loopback_server_without_key_is_open(extra_server: Any) -> None:
    with extra_server({}) as open_server:
        assert open_server.config.server.api_key is None
        async with websockets.connect(open_server.ws_url + "?model=m") as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
        async with connect(open_server, api_key="any-key-at-all") as rt:
            before = datetime.now()
            mark = rt.mark()
            await rt.conn.conversation.item.create(item=user_text("what time is it"))
            await rt.conn.response.create(response={"output_modalities": ["text"]})
            response = await rt.response(mark)
            assert_says_time(response["output"][0]["content"][0]["text"], before, datetime.now())


# ================================================================================ 12. concurrency, shutdown


async def test_two_sessions_talk_at_once(server: RunningServer, speak: Callable[[str], Speech]) -> None:
    time_speech, light_speech = speak("What time is it?"), speak("Turn on the kitchen light.")

    async def ask_time() -> str:
        async with connect(server) as rt:
            before = datetime.now()
            response = await rt.response(await rt.say(time_speech), timeout=60)
            transcript, _ = check_audio_response(rt, response)
            assert_says_time(transcript, before, datetime.now())
            return rt.events[0]["session"]["id"]

    async def turn_on() -> str:
        async with connect(server, session={"type": "realtime", "tools": [hass_turn_on(NAMES)]}) as rt:
            response = await rt.response(await rt.say(light_speech), timeout=60)
            [call] = response["output"]
            assert (call["type"], call.get("name")) == ("function_call", "HassTurnOn"), call
            assert json.loads(call["arguments"]) == {"name": "Kitchen Light"}
            return rt.events[0]["session"]["id"]

    first, second = await asyncio.wait_for(asyncio.gather(ask_time(), turn_on()), 90)
    assert first != second


async def test_graceful_shutdown_closes_sockets_with_1001(extra_server: Any) -> None:
    context = extra_server({})
    running = context.__enter__()
    try:
        async with connect(running) as rt:
            await rt.round_trip()
            await asyncio.to_thread(context.__exit__, None, None, None)
            context = None
            closed = await rt.wait_closed(timeout=10)
            assert closed.rcvd is not None and closed.rcvd.code == 1001
    finally:
        if context is not None:
            context.__exit__(None, None, None)
