"""The client-event decoder: every hostile frame is one RealtimeProtocolError, never anything else."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from hearth.server.protocol import json_limits
from hearth.server.protocol.client_events import MAX_EVENT_DEPTH, parse_client_event
from hearth.server.protocol.errors import RealtimeProtocolError, quote
from hearth.server.protocol.session_config import RealtimeSession
from pydantic import ValidationError


def refused(text: str | bytes) -> RealtimeProtocolError:
    with pytest.raises(RealtimeProtocolError) as err:
        parse_client_event(text)
    return err.value


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize("depth", [MAX_EVENT_DEPTH + 1, 900, 1_000, 100_000, 2_000_000])
def test_deep_nesting_is_invalid_json(depth: int) -> None:
    text = '{"type":"session.update","event_id":"evt_1","session":' + nested(depth - 1) + "}"
    err = refused(text)
    assert err.code == "invalid_json" and "nested more than" in err.message
    if depth < 900:  # parsed before the limit was checked: the event_id is known
        assert err.event_id == "evt_1"


def test_nesting_up_to_the_limit_decodes() -> None:
    text = '{"type":"session.update","session":{"x":' + nested(MAX_EVENT_DEPTH - 2) + "}}"
    event = parse_client_event(text)
    assert event.type == "session.update"
    assert json_limits.loads(nested(MAX_EVENT_DEPTH)) is not None
    with pytest.raises(json_limits.JsonLimitError):
        json_limits.loads(nested(MAX_EVENT_DEPTH + 1))


def test_deep_objects_as_well_as_arrays() -> None:
    depth = 500
    text = '{"type":"session.update","session":' + '{"a":' * depth + "1" + "}" * depth + "}"
    assert refused(text).code == "invalid_json"


@pytest.mark.parametrize(("text", "why"), [
    ('{"type":"input_audio_buffer.append","audio":NaN}', "NaN"),
    ('{"type":"input_audio_buffer.append","audio":-Infinity}', "Infinity"),
    ('{"type":"conversation.item.truncate","item_id":"a","content_index":0,"audio_end_ms":1e999}', "out of range"),
    ('{"type":"conversation.item.truncate","item_id":"a","content_index":0,"audio_end_ms":' + "9" * 5000 + "}",
     "digits"),
    ('{"type":"conversation.item.retrieve","item_id":"\\ud800"}', "surrogate"),
    ('{"type":"conversation.item.retrieve","item_id":"a","\\udfff":1}', "surrogate"),
])
def test_values_that_would_not_encode_again(text: str, why: str) -> None:
    err = refused(text)
    assert err.code == "invalid_json" and why in err.message


def test_surrogate_pairs_and_unicode_are_fine() -> None:
    event = parse_client_event('{"type":"conversation.item.retrieve","item_id":"\\ud83d\\ude00 ñ 中"}')
    assert event.item_id == "😀 ñ 中"  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "code"), [
    ("not json", "invalid_json"),
    ('{"type":', "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    ("[1, 2]", "invalid_event"),
    ('"session.update"', "invalid_event"),
    ("{}", "missing_required_parameter"),
    ('{"type": 5}', "invalid_type"),
    ('{"type": ["session.update"]}', "invalid_type"),
    ('{"type": "session.nope"}', "invalid_value"),
    ('{"type": "session.update"}', "missing_required_parameter"),
    ('{"type": "input_audio_buffer.append", "audio": 5}', "invalid_type"),
    ('{"type": "input_audio_buffer.commit", "event_id": 7}', "invalid_type"),
])
def test_malformed_frames(text: str | bytes, code: str) -> None:
    assert refused(text).code == code


def test_size_limit() -> None:
    from hearth.server.protocol.client_events import MAX_EVENT_CHARS

    text = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * MAX_EVENT_CHARS})
    assert refused(text).code == "invalid_json"


def test_a_15_mib_append_decodes_as_it_came() -> None:
    audio = "QUJD" * (15 * 1024 * 1024 // 4)
    text = json.dumps({"type": "input_audio_buffer.append", "audio": audio})
    started = time.perf_counter()
    event = parse_client_event(text)
    # Bounds a blow-up only (a per-character or quadratic path: seconds to minutes); ~50 ms here.
    assert time.perf_counter() - started < 5.0
    assert event.type == "input_audio_buffer.append" and event.audio == audio  # kept as base64: no decode at parse


# ----------------------------------------------------------------------------- strict types


@pytest.mark.parametrize(("event", "param", "expected", "got"), [
    ({"type": "response.create", "response": {"parallel_tool_calls": "true"}}, "response.parallel_tool_calls",
     "a boolean", "a string"),
    ({"type": "response.create", "response": {"parallel_tool_calls": 0}}, "response.parallel_tool_calls",
     "a boolean", "an integer"),
    ({"type": "conversation.item.truncate", "item_id": "a", "content_index": True, "audio_end_ms": 5},
     "content_index", "an integer", "a boolean"),
    ({"type": "conversation.item.truncate", "item_id": "a", "content_index": 0, "audio_end_ms": "5"},
     "audio_end_ms", "an integer", "a string"),
    ({"type": "conversation.item.truncate", "item_id": "a", "content_index": 0, "audio_end_ms": 5.5},
     "audio_end_ms", "an integer", "a decimal number"),
    ({"type": "response.create", "response": {"max_output_tokens": True}}, "response.max_output_tokens",
     None, None),
    ({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": "hi"}},
     "item.content", "an array", "a string"),
])
def test_strict_types_answer_invalid_type(event: dict[str, Any], param: str, expected: str | None,
                                          got: str | None) -> None:
    err = refused(json.dumps(event))
    assert err.param == param
    assert err.code in ("invalid_type", "invalid_value")
    if expected is not None:
        assert err.code == "invalid_type"
        assert err.message == f"Invalid type for '{param}': expected {expected}, but got {got} instead."


def test_an_integral_float_is_an_integer() -> None:
    event = parse_client_event(json.dumps(
        {"type": "conversation.item.truncate", "item_id": "a", "content_index": 0, "audio_end_ms": 1500.0}))
    assert event.audio_end_ms == 1500 and isinstance(event.audio_end_ms, int)  # type: ignore[union-attr]


@pytest.mark.parametrize(("session", "param"), [
    ({"audio": {"input": {"turn_detection": {"type": "server_vad", "create_response": "true"}}}},
     "audio.input.turn_detection.create_response"),
    ({"audio": {"input": {"turn_detection": {"type": "server_vad", "interrupt_response": 1}}}},
     "audio.input.turn_detection.interrupt_response"),
    ({"audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": True}}}},
     "audio.input.turn_detection.silence_duration_ms"),
    ({"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": "0.5"}}}},
     "audio.input.turn_detection.threshold"),
    ({"audio": {"output": {"speed": True}}}, "audio.output.speed"),
    ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": "24000"}}}}, "audio.input.format.rate"),
])
def test_session_fields_are_strict(session: dict[str, Any], param: str) -> None:
    with pytest.raises(ValidationError) as err:
        RealtimeSession.model_validate({"type": "realtime", **session})
    first = err.value.errors()[0]
    assert ".".join(str(p) for p in first["loc"] if not str(p).startswith(("server_vad", "audio/pcm"))) == param
    assert first["type"].endswith("_type")


@pytest.mark.parametrize("field", ["tracing", "prompt", "tools"])
def test_client_data_fields_always_serialise(field: str) -> None:
    deep: Any = 1
    for _ in range(40):
        deep = {"a": deep}
    value = {"tracing": {"metadata": deep}, "prompt": {"id": "p", "variables": {"v": deep}},
             "tools": [{"type": "function", "name": "f", "parameters": deep}]}[field]
    with pytest.raises(ValidationError) as err:
        RealtimeSession.model_validate({"type": "realtime", field: value})
    assert "nested more than" in str(err.value)
    shallow = RealtimeSession.model_validate({"type": "realtime", "tracing": {"metadata": {"a": [1, None]}}})
    assert json.loads(json.dumps(shallow.wire()))["tracing"] == {"metadata": {"a": [1, None]}}


# ----------------------------------------------------------------------------- safe text


def test_client_text_in_messages_is_escaped_and_cut() -> None:
    err = refused(json.dumps({"type": "bogus\nINFO hearth: forged\r\u2028" + "x" * 500}))
    assert err.code == "invalid_value"
    assert "\n" not in err.message and "\r" not in err.message and "\u2028" not in err.message
    assert "bogus\\nINFO hearth: forged\\r\\u2028" in err.message and "…" in err.message
    unknown = json.dumps({"type": "response.create", "response": {"bad\nkey": 1}})
    assert "\n" not in refused(unknown).message
    assert quote("a\x00b\x1bc") == "a\\x00b\\x1bc"


def _real_depth(value: Any) -> int:
    if isinstance(value, dict | list):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((_real_depth(c) for c in children), default=0)
    return 0


def test_the_text_depth_count_matches_the_decoded_value() -> None:
    """The limit is checked on the text (fast); brackets, quotes and escapes in strings do not count."""
    import random

    rng = random.Random(7)

    def value(depth: int) -> Any:
        if depth > 10 or rng.random() < 0.3:
            return rng.choice([1, None, 'a\\"[{', 'x"]}', "\\", '\\\\"{', "ü[", "😀{", ""])
        if rng.random() < 0.5:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {f"k{i}[{{\\": value(depth + 1) for i in range(rng.randint(0, 3))}

    for _ in range(500):
        data = value(0)
        for text in (json.dumps(data), json.dumps(data, ensure_ascii=False)):
            assert json_limits._depth(text, 100) == _real_depth(data), text


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"type": "session.update", "session": {"instructions": "[{" * 500 + '\\"]}' * 10}})
    assert parse_client_event(text).type == "session.update"
