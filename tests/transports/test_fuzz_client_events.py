"""A seeded fuzzer: 10,000+ hostile client messages against the real server over a real WebSocket.

Every message is invalid by construction (a mutation of a valid event of each of the eleven
client event types, or a frame that is not an event at all). Each must be answered with
exactly one `error` event, valid against the `openai` SDK's `RealtimeServerEvent`, carrying
the message's `event_id` where one could be read, and nothing else; afterwards the same
connection still completes a `session.update` and a response, and a new one still opens.

The engine is the scripted one (the protocol is under test, not the models). Set
HEARTH_FUZZ_SEED to replay another run; the seed is in every failure message.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from hearth.server.protocol.client_events import CLIENT_EVENT_TYPES
from hearth.server.session.testing import ScriptedEngine
from tests.server_harness import make_config, run_server

SEED = int(os.environ.get("HEARTH_FUZZ_SEED", "8008"))
COUNT = 10_000
BUDGET_S = 60.0
SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)

#: A valid event of each type (the session has no items, no audio and no responses, so the
#: item ids below do not exist: retrieve/delete/truncate of them are errors too).
TEMPLATES: dict[str, dict[str, Any]] = {
    "session.update": {"type": "session.update", "session": {
        "type": "realtime", "instructions": "Be brief.", "output_modalities": ["text"],
        "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 0.5, "create_response": True}},
                  "output": {"voice": "alloy", "speed": 1.0}},
        "tools": [{"type": "function", "name": "HassTurnOn", "parameters": {"type": "object", "properties": {}}}],
        "tracing": {"workflow_name": "w", "metadata": {"k": "v"}}}},
    "input_audio_buffer.append": {"type": "input_audio_buffer.append", "audio": "AAAA"},
    "input_audio_buffer.commit": {"type": "input_audio_buffer.commit"},
    "input_audio_buffer.clear": {"type": "input_audio_buffer.clear"},
    "conversation.item.create": {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}},
    "conversation.item.retrieve": {"type": "conversation.item.retrieve", "item_id": "item_nope"},
    "conversation.item.truncate": {"type": "conversation.item.truncate", "item_id": "item_nope",
                                   "content_index": 0, "audio_end_ms": 10},
    "conversation.item.delete": {"type": "conversation.item.delete", "item_id": "item_nope"},
    "response.create": {"type": "response.create", "response": {
        "output_modalities": ["text"], "instructions": "x", "metadata": {"a": "b"}, "max_output_tokens": 10}},
    "response.cancel": {"type": "response.cancel"},
    "output_audio_buffer.clear": {"type": "output_audio_buffer.clear"},
}
#: Templates that are errors as they stand, in this state (unknown item, nothing to commit/cancel/clear).
STATE_ERRORS = ("conversation.item.retrieve", "conversation.item.truncate", "conversation.item.delete",
                "input_audio_buffer.commit", "response.cancel", "output_audio_buffer.clear")
#: Required fields, per type.
REQUIRED = {"session.update": ["session"], "input_audio_buffer.append": ["audio"],
            "conversation.item.create": ["item"], "conversation.item.retrieve": ["item_id"],
            "conversation.item.truncate": ["item_id", "content_index", "audio_end_ms"],
            "conversation.item.delete": ["item_id"]}
#: Paths to typed leaves, with the JSON types they accept (null only where listed).
TYPED: dict[str, list[tuple[tuple[Any, ...], set[str]]]] = {
    "session.update": [(("session",), {"object"}),
                       (("session", "instructions"), {"string"}),
                       (("session", "output_modalities"), {"array"}),
                       (("session", "audio", "input", "turn_detection", "threshold"), {"number", "integer"}),
                       (("session", "audio", "input", "turn_detection", "create_response"), {"boolean"}),
                       (("session", "audio", "input", "turn_detection"), {"object", "null"}),
                       (("session", "audio", "output", "speed"), {"number", "integer"}),
                       (("session", "tools"), {"array"}),
                       (("session", "tools", 0, "name"), {"string"}),
                       (("session", "tools", 0, "parameters"), {"object", "null"}),
                       (("session", "tracing", "workflow_name"), {"string", "null"})],
    "input_audio_buffer.append": [(("audio",), {"string"})],
    "conversation.item.create": [(("item",), {"object"}), (("item", "content"), {"array"}),
                                 (("item", "content", 0, "text"), {"string"}), (("item", "role"), {"string"})],
    "conversation.item.retrieve": [(("item_id",), {"string"})],
    "conversation.item.truncate": [(("item_id",), {"string"}), (("content_index",), {"integer"}),
                                   (("audio_end_ms",), {"integer"})],
    "conversation.item.delete": [(("item_id",), {"string"})],
    "response.create": [(("response",), {"object", "null"}), (("response", "instructions"), {"string", "null"}),
                        (("response", "max_output_tokens"), {"integer", "null"}),
                        (("response", "metadata"), {"object", "null"}),
                        (("response", "output_modalities"), {"array", "null"})],
    "response.cancel": [(("response_id",), {"string", "null"})],
}
#: Nested objects that reject unknown fields (the event itself ignores them, as upstream's clients expect).
STRICT_OBJECTS = {"session.update": [("session",), ("session", "audio"), ("session", "audio", "input")],
                  "conversation.item.create": [("item",), ("item", "content", 0)],
                  "response.create": [("response",)]}
JUNK = ["\n", "\r\n", "\x00", "\x1b[31m", "\u202e", "\u2028", "\ufeff", "😀", "中文", "\\", '"', "%s",
        "${jndi:x}", "' OR 1=1 --", "\t", "\x7f", "Ω" * 3]


def sample_of(kind: str, rng: random.Random) -> Any:
    return {"string": lambda: rng.choice(["", "x", "0", "true", "null", rng.choice(JUNK)]),
            "integer": lambda: rng.choice([0, -1, 7, 2**62]),
            "number": lambda: rng.choice([0.5, -2.25]),
            "boolean": lambda: rng.choice([True, False]),
            "null": lambda: None,
            "array": lambda: rng.choice([[], [1, "a"], [[None]]]),
            "object": lambda: rng.choice([{}, {"x": 1}])}[kind]()


def wrong_value(accepted: set[str], rng: random.Random) -> Any:
    kinds = {"string", "integer", "number", "boolean", "null", "array", "object"} - accepted
    if "number" in accepted:
        kinds.discard("integer")  # an integer is a number
    return sample_of(rng.choice(sorted(kinds)), rng)


def set_path(event: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = event
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def get_path(event: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = event
    for part in path:
        node = node[part]
    return node


@dataclass
class Message:
    text: str
    kind: str  # the event type it came from, or "frame"
    mutation: str
    event_id: str | None  # the event_id the error must carry; None = cannot be read


def mutate(kind: str, index: int, rng: random.Random) -> Message:
    event = copy.deepcopy(TEMPLATES[kind])
    event_id = f"fz_{index}"
    event["event_id"] = event_id
    choices: list[str] = ["deep", "bad_number", "event_id_type", "unicode_type"]
    if kind in REQUIRED:
        choices += ["drop_required"] * 2
    if kind in TYPED:
        choices += ["wrong_type"] * 3
    if kind in STRICT_OBJECTS:
        choices += ["unknown_field"] * 2
    if kind in STATE_ERRORS:
        choices += ["as_is", "unknown_top_level_field"]
    if kind == "input_audio_buffer.append":
        choices += ["bad_base64"] * 3
    if kind in ("conversation.item.create", "response.create", "session.update"):
        choices += ["too_long"]
    if kind == "conversation.item.truncate":
        choices += ["negative"]
    mutation = rng.choice(choices)
    expected: str | None = event_id

    if mutation == "as_is":
        pass
    elif mutation == "unknown_top_level_field":  # ignored, so the state error still comes
        event[rng.choice(["foo", "x" * 200, "😀"])] = rng.choice([1, None, {"a": []}])
    elif mutation == "drop_required":
        del event[rng.choice(REQUIRED[kind])]
    elif mutation == "wrong_type":
        path, accepted = rng.choice(TYPED[kind])
        set_path(event, path, wrong_value(accepted, rng))
    elif mutation == "unknown_field":
        set_path(event, (*rng.choice(STRICT_OBJECTS[kind]), rng.choice(["voice", "temperature", "x\ny", "ünï"])),
                 rng.choice([1, "a", None, [], {}]))
    elif mutation == "bad_base64":
        event["audio"] = rng.choice(["!!!!", "AAA", "A", "AAAA=", "AAAA" * rng.randint(1, 50) + "*",
                                     base64.b64encode(b"odd").decode(), "😀😀😀😀", "AA\nAA"])
    elif mutation == "too_long":
        n = rng.choice([65, 513, 5000, 200_000])
        if kind == "conversation.item.create":
            event["item"]["id"] = "i" * max(n, 65)
        elif kind == "response.create":
            event["response"]["metadata"] = {"k": "v" * max(n, 513)}
        else:
            event["session"]["tools"][0]["name"] = "n" * max(n, 65)
    elif mutation == "negative":
        event[rng.choice(["content_index", "audio_end_ms"])] = rng.choice([-1, -(2**40)])
    elif mutation == "event_id_type":
        event["event_id"] = wrong_value({"string", "null"}, rng)
        expected = None
    elif mutation == "unicode_type":
        junk = "".join(rng.choice(JUNK) for _ in range(rng.randint(1, 6)))
        event["type"] = rng.choice([kind + junk, junk, kind.upper(), " " + kind, junk * 2000])
    elif mutation == "deep":
        depth = rng.choice([65, 100, 700, 3000, 100_000])
        holder = rng.choice(["session", "item", "response", "zz"])
        text = json.dumps(event)[:-1] + f', "{holder}x": ' + "[" * depth + "]" * depth + "}"
        return Message(text, kind, mutation, event_id if depth < 500 else None)
    elif mutation == "bad_number":
        literal = rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000])
        text = json.dumps(event)[:-1] + f', "n": {literal}' + "}"
        return Message(text, kind, mutation, None)
    else:
        raise AssertionError(mutation)
    return Message(json.dumps(event, ensure_ascii=rng.random() < 0.5), kind, mutation, expected)


def not_an_event(rng: random.Random) -> Message:
    choice = rng.randrange(9)
    if choice == 0:
        text = "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randint(1, 200)))
        if text.lstrip().startswith(("{", "[", '"')) or text.strip() in ("", "null", "true", "false"):
            text = "x" + text
        return Message(text, "frame", "garbage", None)
    if choice == 1:
        event = json.dumps(TEMPLATES[rng.choice(CLIENT_EVENT_TYPES)])
        return Message(event[: rng.randint(1, len(event) - 1)], "frame", "truncated", None)
    if choice == 2:
        return Message(rng.choice(["[]", "null", "1", '"session.update"', "true", "[{}]"]), "frame", "not_object",
                       None)
    if choice == 3:
        return Message(json.dumps({"event_id": "fz_missing", "session": {}}), "frame", "missing_type", "fz_missing")
    if choice == 4:
        return Message(rng.choice(["", " ", "\n", "{", "}", "{}}", '{"type"}', "{'type': 'x'}"]), "frame",
                       "empty_or_broken", None)
    if choice == 5:
        return Message(json.dumps({"type": rng.choice([1, 1.5, True, None, [], {}])}), "frame", "type_type", None)
    if choice == 6:
        return Message("[" * rng.choice([1_000, 20_000, 500_000]), "frame", "deep_unclosed", None)
    if choice == 7:
        return Message('{"type": "' + "\\ud800" * rng.randint(1, 3) + '"}', "frame", "surrogate", None)
    return Message(json.dumps({"type": "transcription_session.update", "session": {}}), "frame", "beta_type",
                   None)


def messages(seed: int, count: int) -> list[Message]:
    rng = random.Random(seed)
    out = []
    for index in range(count):
        if rng.random() < 0.15:
            out.append(not_an_event(rng))
        else:
            out.append(mutate(CLIENT_EVENT_TYPES[index % len(CLIENT_EVENT_TYPES)], index, rng))
    return out


async def test_hostile_client_messages_each_get_an_error(tmp_path: Path) -> None:
    batch = messages(SEED, COUNT)
    kinds = Counter(m.kind for m in batch)
    assert set(CLIENT_EVENT_TYPES) <= set(kinds), kinds
    assert len(batch) >= 10_000
    engine = ScriptedEngine()
    config = make_config(tmp_path)
    started = time.perf_counter()
    with run_server(config, engine_factory=lambda _config, _executor: engine) as server:
        async with aiohttp.ClientSession() as http, http.ws_connect(
                server.ws_url + "?model=fuzz", max_msg_size=0) as ws:
            created = await ws.receive_json(timeout=10)
            assert created["type"] == "session.created"
            received: list[dict[str, Any]] = []

            async def read(until: Callable[[], bool]) -> None:
                while not until():
                    message = await ws.receive(timeout=30)
                    assert message.type == aiohttp.WSMsgType.TEXT, (
                        f"seed {SEED}: connection ended after {len(received)} replies: {message}")
                    received.append(json.loads(message.data))

            reader = asyncio.create_task(read(lambda: len(received) >= len(batch)))
            for message in batch:
                await ws.send_str(message.text)
            await asyncio.wait_for(reader, BUDGET_S)
            fuzz_s = time.perf_counter() - started

            problems = []
            for message, reply in zip(batch, received, strict=True):
                where = f"seed {SEED}, {message.kind}/{message.mutation}: {message.text[:160]!r} -> {reply}"
                if reply.get("type") != "error":
                    problems.append(f"not an error: {where}")
                    continue
                SERVER_EVENT.validate_python(reply)
                error = reply["error"]
                if set(error) != {"type", "code", "message", "param", "event_id"} or not error["message"]:
                    problems.append(f"incomplete error: {where}")
                if error["type"] != "invalid_request_error":
                    problems.append(f"not a client error: {where}")
                if message.event_id is not None and error["event_id"] != message.event_id:
                    problems.append(f"event_id not echoed: {where}")
                if "\n" in error["message"] or "\r" in error["message"]:
                    problems.append(f"raw control characters in the message: {where}")
            assert not problems, f"{len(problems)} problems, first 5:\n" + "\n".join(problems[:5])

            # The same connection still works: a session round trip and a response.
            await ws.send_json({"type": "session.update", "session": {"type": "realtime", "instructions": "OK.",
                                                                      "output_modalities": ["text"]}})
            updated = await ws.receive_json(timeout=10)
            assert updated["type"] == "session.updated" and updated["session"]["instructions"] == "OK.", updated
            await ws.send_json({"type": "response.create"})
            while (event := await ws.receive_json(timeout=10))["type"] != "response.done":
                assert event["type"] != "error", event
            assert event["response"]["status"] == "completed"
        # And the server still takes new connections.
        async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url + "?model=fuzz") as ws:
            assert (await ws.receive_json(timeout=10))["type"] == "session.created"
    mutations = Counter(m.mutation for m in batch)
    print(f"fuzz seed {SEED}: {len(batch)} messages in {fuzz_s:.1f} s; {dict(kinds)}; {dict(mutations)}")
    assert fuzz_s < BUDGET_S
