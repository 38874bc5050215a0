"""The console's page and endpoints over HTTP: served offline, sign-in by pairing code, keys only for the paired."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hearth.server.app import create_app
from hearth.server.console import COOKIE, MAX_FAILURES_PER_MINUTE, ConsoleAuth
from hearth.server.session.testing import ScriptedEngine
from tests.server_harness import make_config


async def _client(tmp_path: Path, settings: dict) -> TestClient:
    app = create_app(make_config(tmp_path, settings), engine_factory=lambda c, e: ScriptedEngine())
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


async def test_page_is_self_contained(tmp_path: Path) -> None:
    client = await _client(tmp_path, {})
    try:
        page = await (await client.get("/")).text()
        assert "Content-Security-Policy" in (await client.get("/")).headers
        # Everything the page loads comes from the server itself (it works offline).
        refs = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert len(refs) == 3
        for ref in refs:
            assert ref.startswith("/console/"), ref
            body = await client.get(ref)
            assert body.status == 200, ref
            text = (await body.text()).replace("http://www.w3.org/2000/svg", "").replace("over https://", "")
            assert "://" not in text, ref  # nothing fetched from elsewhere
        assert (await client.get("/console/secrets.txt")).status == 404
        # A keyless server's console is not reachable through a rebound DNS name.
        assert (await client.get("/", headers={"Host": "rebind.example"})).status == 403
        assert (await client.post("/console/api/client-secret", json={},
                                  headers={"Host": "rebind.example"})).status == 403
        status = await (await client.get("/console/api/status")).json()
        assert status["sign_in_required"] is False and status["signed_in"] is True
        # No key configured: the page gets an ephemeral key with its settings bound.
        secret = await (await client.post("/console/api/client-secret", json={"session": {
            "type": "realtime", "instructions": "Hi", "audio": {"output": {"voice": "ash"}}}})).json()
        assert secret["value"].startswith("ek_") and secret["session"]["instructions"] == "Hi"
        bad = await client.post("/console/api/client-secret", json={"session": {"type": "realtime", "x": 1}})
        assert bad.status == 400 and (await bad.json())["error"]["param"] == "session.x"
    finally:
        await client.close()


async def test_keyed_server_pairs_browsers_with_the_logged_code(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="hearth.server.console")
    client = await _client(tmp_path, {"server": {"api_key": "k"}})
    try:
        code = client.server.app[ConsoleAuth.KEY].code
        assert code and re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", code)
        assert code in caplog.text  # printed in the server log at start
        status = await (await client.get("/console/api/status")).json()
        assert status == {**status, "sign_in_required": True, "signed_in": False}
        refused = await client.post("/console/api/client-secret", json={})
        assert refused.status == 401 and (await refused.json())["error"]["code"] == "console_sign_in_required"
        # Another site's page cannot sign in or mint keys with the browser's cookie.
        foreign = await client.post("/console/api/sign-in", json={"code": code},
                                    headers={"Origin": "https://evil.example"})
        assert foreign.status == 403
        wrong = await client.post("/console/api/sign-in", json={"code": "AAAA-AAAA"})
        assert wrong.status == 401 and COOKIE not in wrong.cookies
        paired = await client.post("/console/api/sign-in", json={"code": code.lower().replace("-", "")})
        assert paired.status == 200
        cookie = paired.cookies[COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        assert (await (await client.get("/console/api/status")).json())["signed_in"] is True
        secret = await client.post("/console/api/client-secret", json={})
        assert secret.status == 200 and (await secret.json())["value"].startswith("ek_")
        assert (await client.post("/console/api/client-secret", json={},
                                  headers={"Origin": "https://evil.example"})).status == 403
    finally:
        await client.close()


async def test_pairing_tries_are_limited(tmp_path: Path) -> None:
    client = await _client(tmp_path, {"server": {"api_key": "k"}})
    try:
        code = client.server.app[ConsoleAuth.KEY].code
        for _ in range(MAX_FAILURES_PER_MINUTE):
            assert (await client.post("/console/api/sign-in", json={"code": "WRONG-CODE"})).status == 401
        # Now even the right code waits a minute: guessing gets nowhere.
        assert (await client.post("/console/api/sign-in", json={"code": code})).status == 401
    finally:
        await client.close()
