"""Hostile payloads on every JSON decoder of the wire protocol: only ProtocolError comes out.

A decoder runs in paho's network thread on a satellite: any other exception (RecursionError
from a deeply nested payload, OverflowError from a 400-digit number) escapes into paho and
kills that thread, so the satellite never hears the server again.
"""

from __future__ import annotations

import json
import math
import random
import time

import pytest

from hearth.wire import (
    BargeIn,
    ProtocolError,
    WakeCandidate,
    decode_message,
    decode_satellite_command,
    decode_satellite_event,
    decode_satellite_status,
    decode_server_status,
)
from hearth.wire.message import MAX_JSON_DEPTH, parse_json_object, too_deep

SID = "0123456789abcdef0123456789abcdef"
DECODERS = [decode_message, decode_satellite_event, decode_satellite_command, decode_satellite_status,
            decode_server_status]


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def nested_objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def hostile_payloads() -> list[tuple[str, bytes]]:
    sixty_k = 30 * 1024
    return [
        ("60 kB of nested arrays", nested(sixty_k).encode()),
        ("60 kB of nested objects", nested_objects(sixty_k // 5).encode()),
        ("unclosed nesting", ("[" * 60000).encode()),
        ("nested inside a field", json.dumps({"type": "server-status", "server_id": "x"})[:-1].encode()
         + b', "name": ' + nested(20000).encode() + b"}"),
        ("nested in a known server status field", b'{"type":"server-status","server_id":"x","arbitration_window_ms":'
         + nested(5000).encode() + b"}"),
        ("deep error context", b'{"type":"error","code":"x","message":"y","context":' + nested_objects(3000).encode()
         + b"}"),
        ("NaN", b'{"type":"wake","session_id":"' + SID.encode() + b'","wake_word":"x","score":NaN}'),
        ("Infinity", b'{"type":"wake","session_id":"' + SID.encode() + b'","wake_word":"x","score":Infinity}'),
        ("1e999", b'{"type":"wake","session_id":"' + SID.encode() + b'","wake_word":"x","score":1e999}'),
        ("a 400-digit integer score", b'{"type":"wake","session_id":"' + SID.encode() + b'","wake_word":"x","score":'
         + b"9" * 400 + b"}"),
        ("a 5000-digit integer", b'{"type":"audio-stop","session_id":"' + SID.encode() + b'","last_seq":'
         + b"9" * 5000 + b"}"),
        ("1e308 score", b'{"type":"wake","session_id":"' + SID.encode() + b'","wake_word":"x","score":1e308}'),
        ("energy 1e308", b'{"type":"wake","session_id":"' + SID.encode() + b'","wake_word":"x","score":0.5,'
         b'"energy":1e308}'),
        ("huge", b'{"type":"server-status","server_id":"x","name":"' + b"a" * (200 * 1024) + b'"}'),
        ("wrong types everywhere", b'{"type":"server-status","server_id":5,"availability":[],"protocol":"1"}'),
        ("type is an object", b'{"type":{"type":"server-status"}}'),
        ("not UTF-8", b'{"type":"\xff"}'),
        ("a lone surrogate escape", b'{"type":"server-status","server_id":"\\ud800"}'),
        ("NUL bytes", b"\x00" * 100),
        ("a list", b"[]"),
        ("a number", b"12"),
    ]


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d.__name__)
@pytest.mark.parametrize(("name", "payload"), hostile_payloads(), ids=[n for n, _ in hostile_payloads()])
def test_every_decoder_refuses_hostile_json_with_a_protocol_error(decoder, name: str, payload: bytes) -> None:
    began = time.perf_counter()
    with pytest.raises(ProtocolError) as info:
        decoder(payload, topic="hearth/v1/server/x/status")
    # Bounds a blow-up only (quadratic digits or nesting would take minutes), not a speed claim.
    assert time.perf_counter() - began < 5.0, f"{name} took {time.perf_counter() - began:.2f} s"
    assert info.value.context.get("topic") == "hearth/v1/server/x/status"
    str(info.value)  # the message itself is printable (no recursion in its context)
    # and as text, not bytes
    with pytest.raises(ProtocolError):
        decoder(payload.decode("utf-8", "replace"))


def test_the_depth_limit_is_exact_and_ignores_brackets_in_strings() -> None:
    assert parse_json_object('{"a":' + nested(MAX_JSON_DEPTH - 1) + "}")["a"]
    with pytest.raises(ProtocolError, match="nested too deeply"):
        parse_json_object('{"a":' + nested(MAX_JSON_DEPTH) + "}")
    brackets = "[" * 1000 + "{" * 1000
    assert parse_json_object(json.dumps({"type": "x", "text": brackets}))["text"] == brackets
    # escaped quotes and backslashes do not end a string early
    tricky = '\\"[[[' * 100 + "\\\\"
    assert parse_json_object(json.dumps({"s": tricky, "t": "[" * 50}))["s"] == tricky
    assert not too_deep(json.dumps({"s": "\\" * 99 + '"' + "[" * 99}), 2)
    assert too_deep('{"s": "\\\\", "x": ' + nested(3) + "}", 2)


def test_a_family_may_allow_more() -> None:
    payload = '{"a":' + nested(40) + "}"
    with pytest.raises(ProtocolError):
        parse_json_object(payload)
    assert parse_json_object(payload, max_depth=64)
    with pytest.raises(ProtocolError, match="too large"):
        parse_json_object(b'{"a":"' + b"x" * 100 + b'"}', max_bytes=64)


@pytest.mark.parametrize("score", [1e308, -1e308, math.inf, -math.inf, math.nan, 1.5, -0.01])
def test_a_wake_score_outside_0_to_1_is_refused(score: float) -> None:
    with pytest.raises(ProtocolError, match="wake score"):
        WakeCandidate(SID, "hey_jarvis", score)
    with pytest.raises(ProtocolError, match="wake score"):
        BargeIn(SID, score=score)
    if math.isfinite(score):
        payload = json.dumps({"type": "wake", "session_id": SID, "wake_word": "x", "score": score}).encode()
        with pytest.raises(ProtocolError, match="wake score"):
            decode_satellite_event(payload, topic="hearth/v1/satellite/k/event")
    assert WakeCandidate(SID, "x", 0.0).score == 0.0 and WakeCandidate(SID, "x", 1).score == 1


@pytest.mark.parametrize("energy", [1e308, math.inf, -math.inf, math.nan, 3.0])
def test_an_energy_that_is_not_finite_dbfs_is_refused(energy: float) -> None:
    with pytest.raises(ProtocolError, match="energy"):
        WakeCandidate(SID, "hey_jarvis", 0.9, energy=energy)
    assert WakeCandidate(SID, "x", 0.9, energy=-96.0).energy == -96.0


def test_seeded_mutations_only_ever_raise_protocol_errors() -> None:
    """10,000 byte-level mutations of valid messages: each decodes or raises ProtocolError."""
    rng = random.Random(8)
    seeds = [
        WakeCandidate(SID, "hey_jarvis", 0.9, energy=-20.0, timestamp=1.5).to_json(),
        b'{"type":"server-status","server_id":"hearth","availability":"online","protocol":1,'
        b'"arbitration_window_ms":200}',
        b'{"type":"satellite-status","satellite_id":"k","capabilities":{"wake_words":["a","b"],"has_vad":true}}',
        b'{"type":"error","code":"protocol","message":"m","context":{"topic":"t"}}',
    ]
    tokens = [b"[", b"]", b"{", b"}", b'"', b"\\", b"NaN", b"1e999", b"-", b"9" * 50, b"null", b",", b":", b"\xff"]
    decoded = 0
    for _ in range(10_000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data) + 1)
            match rng.randrange(4):
                case 0:
                    data[at:at] = rng.choice(tokens) * rng.choice((1, 1, 2, 50, 3000))
                case 1:
                    del data[at:at + rng.randint(1, 8)]
                case 2:
                    if at < len(data):
                        data[at] = rng.randrange(256)
                case _:
                    data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        for decoder in DECODERS:
            try:
                decoder(bytes(data))
                decoded += 1
            except ProtocolError:
                pass
    assert decoded > 0  # some mutations stay valid: the fuzzer is not testing only the parser
