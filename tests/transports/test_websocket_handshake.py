"""WebSocket handshake rules, with the scripted engine (fast; the real engine is covered in tests/realtime)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hearth.server.app import create_app
from hearth.server.session.testing import ScriptedEngine
from tests.server_harness import make_config


async def _client(tmp_path: Path, settings: dict | None = None) -> TestClient:
    app = create_app(make_config(tmp_path, settings), engine_factory=lambda config, executor: ScriptedEngine())
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.mark.parametrize(
    ("settings", "origin", "allowed"),
    [
        ({}, None, True),  # not a browser
        ({}, "http://localhost:3000", True),
        ({}, "https://evil.example", False),  # open loopback server: foreign pages are refused
        ({"server": {"cors_origins": ["https://ha.example.org"]}}, "https://ha.example.org", True),
        ({"server": {"api_key": "k"}}, "https://evil.example", True),  # ... but must present the key
    ],
)
async def test_origin_policy(tmp_path: Path, settings: dict, origin: str | None, allowed: bool) -> None:
    client = await _client(tmp_path, settings)
    headers = {"Authorization": "Bearer k"}
    if origin:
        headers["Origin"] = origin
    try:
        if allowed:
            ws = await client.ws_connect("/v1/realtime?model=m", headers=headers, protocols=("realtime",))
            first = await ws.receive_json()
            assert first["type"] == "session.created"
            assert ws.protocol == "realtime"
            await ws.close()
        else:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await client.ws_connect("/v1/realtime?model=m", headers=headers)
            assert err.value.status == 403
    finally:
        await client.close()


async def test_handshake_errors_close_with_upstream_codes(tmp_path: Path) -> None:
    client = await _client(tmp_path, {"server": {"api_key": "right"}})
    cases = [
        ("/v1/realtime?model=m", {"Authorization": "Bearer wrong"}, 3000, "invalid_api_key"),
        ("/v1/realtime?model=m", {}, 3000, None),
        ("/realtime", {"Authorization": "Bearer right"}, 4000, "missing_model"),
        ("/v1/realtime?intent=transcription&model=m", {"Authorization": "Bearer right"}, 4000, "invalid_model"),
        ("/v1/realtime?model=m", {"Authorization": "Bearer right", "OpenAI-Beta": "realtime=v1"}, 4000,
         "beta_api_shape_disabled"),
    ]
    try:
        for path, headers, code, error_code in cases:
            ws = await client.ws_connect(path, headers=headers)
            event = await ws.receive_json()
            assert event["type"] == "error" and event["error"]["code"] == error_code, path
            closing = await ws.receive()
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == code, path
            await ws.close()
        ws = await client.ws_connect("/v1/realtime?model=m", protocols=("realtime", "openai-insecure-api-key.right"))
        assert (await ws.receive_json())["type"] == "session.created"
        assert ws.protocol == "realtime"
        await ws.close()
    finally:
        await client.close()
