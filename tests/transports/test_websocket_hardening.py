"""Hostile clients and browsers against the real WebSocket transport (scripted engine: fast).

DNS rebinding, deep JSON, clean close reasons, client text in logs, keys in the access log,
and the session echo (validated against the `openai` SDK's session types, no unset nulls).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openai.types.realtime import (
    RealtimeServerEvent,
    RealtimeSessionCreateRequest,
    RealtimeTranscriptionSessionCreateRequest,
)
from pydantic import BaseModel, TypeAdapter

from hearth.server import log_escape
from hearth.server.app import create_app
from hearth.server.session.testing import ScriptedEngine
from hearth.server.transports.auth import RedactingAccessLogger, host_name, redact_url
from tests.server_harness import make_config

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)


async def start(tmp_path: Path, settings: dict[str, Any] | None = None, **runner: Any) -> TestClient:
    app = create_app(make_config(tmp_path, settings), engine_factory=lambda config, executor: ScriptedEngine())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(**runner)  # runner options (the access logger) go to its AppRunner
    client = TestClient(server)
    await client.start_server()
    return client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    client = await start(tmp_path)
    yield client
    await client.close()


async def next_event(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    event = await ws.receive_json(timeout=timeout)
    SERVER_EVENT.validate_python(event)
    return event


async def round_trip(ws: aiohttp.ClientWebSocketResponse, instructions: str = "Still here.") -> None:
    """The connection still works: a session.update comes back as session.updated."""
    await ws.send_json({"type": "session.update", "session": {"type": "realtime", "instructions": instructions}})
    event = await next_event(ws)
    assert event["type"] == "session.updated" and event["session"]["instructions"] == instructions, event


# ----------------------------------------------------------------------------- DNS rebinding


@pytest.mark.parametrize(("settings", "host", "origin", "status"), [
    # The attack: a page on rebind.example whose name now resolves to 127.0.0.1.
    ({}, "rebind.example:{port}", "http://rebind.example:{port}", 403),
    ({}, "rebind.example:{port}", None, 403),  # no Origin (a same-origin GET): Host alone decides
    ({}, "127.0.0.1:{port}", "http://127.0.0.1:{port}", 101),
    ({}, "localhost:{port}", "http://localhost:{port}", 101),
    ({}, "app.localhost:{port}", None, 101),
    ({}, "[::1]:{port}", None, 101),
    ({}, "192.168.1.20:{port}", None, 101),  # an IP address cannot be rebound
    ({"server": {"allowed_hosts": ["hearth.home.arpa"]}}, "hearth.home.arpa:{port}", None, 101),
    ({"server": {"allowed_hosts": [".home.arpa"]}}, "kitchen.home.arpa", None, 101),
    ({"server": {"allowed_hosts": ["hearth.home.arpa"]}}, "rebind.example", None, 403),
    ({"server": {"allowed_hosts": ["*"]}}, "rebind.example", None, 101),
    # With a key the page must present it; the Host does not matter.
    ({"server": {"api_key": "k"}}, "rebind.example:{port}", "http://rebind.example:{port}", 101),
])
async def test_dns_rebinding_is_refused(tmp_path: Path, settings: dict[str, Any], host: str, origin: str | None,
                                        status: int) -> None:
    client = await start(tmp_path, settings)
    port = client.port
    headers = {"Host": host.format(port=port), "Authorization": "Bearer k"}
    if origin:
        headers["Origin"] = origin.format(port=port)
    try:
        if status == 101:
            ws = await client.ws_connect("/v1/realtime?model=m", headers=headers)
            assert (await next_event(ws))["type"] == "session.created"
            await ws.close()
        else:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await client.ws_connect("/v1/realtime?model=m", headers=headers)
            assert err.value.status == 403
            response = await client.get("/v1/hearth/timings", headers=headers)
            assert response.status == 403
            body = await response.json()
            assert "DNS-rebinding" in body["error"]["message"]
    finally:
        await client.close()


async def test_timings_uses_the_same_key_check(tmp_path: Path) -> None:
    client = await start(tmp_path, {"server": {"api_key": "right"}})
    try:
        for headers, status in [({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                                ({"Authorization": "Bearer right"}, 200)]:
            response = await client.get("/v1/hearth/timings", headers=headers)
            assert response.status == status
            body = await response.json()
            if status == 401:
                assert set(body["error"]) == {"message", "type", "param", "code"}
            else:
                assert body == {"sessions": []}
    finally:
        await client.close()


def test_host_names() -> None:
    assert host_name("Example.ORG.:8000") == "example.org"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"


# ----------------------------------------------------------------------------- close reasons


async def test_missing_key_closes_with_a_clean_reason(tmp_path: Path) -> None:
    client = await start(tmp_path, {"server": {"api_key": "right"}})
    try:
        ws = await client.ws_connect("/v1/realtime?model=m")
        event = await next_event(ws)
        assert event["type"] == "error" and event["error"]["code"] is None
        assert event["event_id"].startswith("event_")
        closing = await ws.receive()
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 3000
        assert closing.extra == "invalid_request_error"
        ws = await client.ws_connect("/v1/realtime?model=m", headers={"Authorization": "Bearer wrong"})
        await next_event(ws)
        closing = await ws.receive()
        assert closing.extra == "invalid_request_error.invalid_api_key"
    finally:
        await client.close()


# ----------------------------------------------------------------------------- deep JSON


@pytest.mark.parametrize("depth", [65, 1_000, 50_000, 1_000_000])
async def test_deep_json_gets_an_error_and_the_connection_lives(client: TestClient, depth: int) -> None:
    ws = await client.ws_connect("/v1/realtime?model=m")
    assert (await next_event(ws))["type"] == "session.created"
    await ws.send_str('{"type":"session.update","event_id":"evt_deep","session":' + "[" * depth + "]" * depth + "}")
    event = await next_event(ws)
    assert event["type"] == "error" and event["error"]["code"] == "invalid_json", event
    assert set(event["error"]) == {"type", "code", "message", "param", "event_id"}
    await round_trip(ws)
    await ws.close()


async def test_deep_client_data_in_the_session_is_refused_not_kept(client: TestClient) -> None:
    """A 40-deep tracing.metadata used to be kept, and then every session.update failed."""
    ws = await client.ws_connect("/v1/realtime?model=m")
    await next_event(ws)
    deep: Any = "leaf"
    for _ in range(40):
        deep = {"k": deep}
    await ws.send_json({"type": "session.update", "event_id": "evt_meta",
                        "session": {"type": "realtime", "tracing": {"metadata": deep}}})
    event = await next_event(ws)
    assert event["type"] == "error" and event["error"]["param"] == "session.tracing.metadata", event
    assert event["error"]["event_id"] == "evt_meta"
    await round_trip(ws)
    await ws.send_json({"type": "session.update", "session": {"type": "realtime", "tracing": {"metadata": {"a": 1}}}})
    assert (await next_event(ws))["session"]["tracing"] == {"metadata": {"a": 1}}
    await round_trip(ws, "Again.")
    await ws.close()


async def test_bad_types_and_binary_frames(client: TestClient) -> None:
    ws = await client.ws_connect("/v1/realtime?model=m")
    await next_event(ws)
    await ws.send_json({"type": "session.update", "event_id": "e1", "session": {
        "type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "create_response": "0"}}}}})
    event = await next_event(ws)
    assert event["error"]["code"] == "invalid_type" and event["error"]["event_id"] == "e1"
    assert event["error"]["param"] == "session.audio.input.turn_detection.create_response"
    assert event["error"]["message"] == ("Invalid type for 'session.audio.input.turn_detection.create_response': "
                                         "expected a boolean, but got a string instead.")
    await ws.send_bytes(b"\x00\x01")
    assert (await next_event(ws))["error"]["code"] == "invalid_event"
    await round_trip(ws)
    await ws.close()


# ----------------------------------------------------------------------------- the session echo


def _nulls(value: Any, path: str = "session") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


def _unknown_fields(model: BaseModel, path: str = "session") -> list[str]:
    """Fields the SDK type does not declare (its models accept extras silently)."""
    found = [f"{path}.{k}" for k in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, BaseModel):
                found += _unknown_fields(item, f"{path}.{name}")
    return found


#: Fields the server owns that the SDK's request types do not list (upstream sends them too).
SERVER_FIELDS = {"session.id", "session.object", "session.expires_at"}


@pytest.mark.parametrize(("query", "update", "sdk_type"), [
    ("model=m", {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}},
     RealtimeSessionCreateRequest),
    ("intent=transcription", {"type": "transcription", "audio": {"input": {"transcription": {"model": "whisper-1"},
                                                                            "noise_reduction": None}}},
     RealtimeTranscriptionSessionCreateRequest),
])
async def test_session_echo_leaves_unset_fields_out(client: TestClient, query: str, update: dict[str, Any],
                                                    sdk_type: type[BaseModel]) -> None:
    ws = await client.ws_connect(f"/v1/realtime?{query}")
    created = await next_event(ws)
    await ws.send_json({"type": "session.update", "session": update})
    updated = await next_event(ws)
    assert updated["type"] == "session.updated"
    transcription = updated["session"]["audio"]["input"]["transcription"]
    assert transcription == {"model": "whisper-1"}  # no "language": null, no "prompt": null
    for event in (created, updated):
        session = event["session"]
        assert _nulls(session) == [], session
        assert set(_unknown_fields(sdk_type.model_validate(session))) <= SERVER_FIELDS
    # Manual turns: null is the value, not "unset", so it stays and round-trips.
    await ws.send_json({"type": "session.update", "session": {"type": update["type"],
                                                               "audio": {"input": {"turn_detection": None}}}})
    manual = await next_event(ws)
    assert _nulls(manual["session"]) == ["session.audio.input.turn_detection"]
    await ws.send_json({"type": "session.update", "session": {"type": update["type"]}})
    again = await next_event(ws)
    assert again["session"]["audio"]["input"]["turn_detection"] is None
    assert again["session"]["audio"]["input"]["transcription"] == {"model": "whisper-1"}
    await ws.close()


# ----------------------------------------------------------------------------- logs


async def test_client_text_cannot_forge_a_log_line(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ws = await client.ws_connect("/v1/realtime?model=m%0A2099-01-01 WARNING forged: model")
    await next_event(ws)
    await ws.send_json({"type": "bogus\n2099-01-01 00:00:00 WARNING hearth: forged line"})
    assert (await next_event(ws))["error"]["code"] == "invalid_value"
    await ws.send_json({"type": "response.create", "response": {"x\r\ny": 1}})
    assert (await next_event(ws))["error"]["code"] == "unknown_parameter"
    await ws.close()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("hearth")]
    assert any("forged" in m for m in messages), messages
    assert not [m for m in messages if "\n" in m or "\r" in m], messages


def test_the_log_filter_escapes_every_record() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "got %s", ("a\nb\u2028c",), None)
    assert log_escape.EscapeControlCharacters().filter(record)
    assert record.getMessage() == "got a\\nb\\u2028c"
    logger = logging.getLogger("hearth.test.escape")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        log_escape.install(logger)
        log_escape.install(logger)
        assert sum(isinstance(f, log_escape.EscapeControlCharacters) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)


async def test_keys_in_a_query_string_are_redacted_from_the_access_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    client = await start(tmp_path, access_log_class=RedactingAccessLogger)
    try:
        response = await client.get("/healthz?api_key=sk-secret-1&x=1&token=t0k3n",
                                    headers={"Referer": "http://a.example/?key=sk-secret-2"})
        assert response.status == 200
    finally:
        await client.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any("/healthz?api_key=REDACTED&x=1&token=REDACTED" in line for line in lines), lines
    assert not [line for line in lines if "secret" in line or "t0k3n" in line], lines


def test_the_cli_server_uses_the_redacting_access_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from hearth.server import main

    seen: dict[str, Any] = {}
    monkeypatch.setattr(main.web, "run_app", lambda app, **kwargs: seen.update(kwargs))
    main.run(make_config(tmp_path))
    assert seen["access_log_class"] is RedactingAccessLogger


def test_redact_url() -> None:
    assert redact_url("/v1/realtime?model=m&api_key=abc") == "/v1/realtime?model=m&api_key=REDACTED"
    assert redact_url("/v1/realtime?Authorization=Bearer%20x#f") == "/v1/realtime?Authorization=REDACTED#f"
    assert redact_url("/v1/realtime?model=m") == "/v1/realtime?model=m"
    assert redact_url("-") == "-"
