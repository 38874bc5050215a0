"""Ephemeral client secrets: minted with the API key by the `openai` SDK, used on the WebSocket, refused when stale."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openai import AsyncOpenAI, AuthenticationError, BadRequestError

from hearth.server.app import create_app
from hearth.server.session.testing import ScriptedEngine
from hearth.server.transports.client_secrets import ClientSecretStore
from tests.server_harness import make_config

KEY = "house-key"


@pytest.fixture
async def client(tmp_path: Path):
    app = create_app(make_config(tmp_path, {"server": {"api_key": KEY}}),
                     engine_factory=lambda config, executor: ScriptedEngine())
    test_client = TestClient(TestServer(app, host="127.0.0.1"))
    await test_client.start_server()
    yield test_client
    await test_client.close()


def _sdk(client: TestClient, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=key, max_retries=0)


async def _first_event(client: TestClient, path: str, **kwargs) -> tuple[dict, aiohttp.ClientWebSocketResponse]:
    ws = await client.ws_connect(path, **kwargs)
    return await ws.receive_json(), ws


async def test_sdk_mints_a_key_whose_session_opens_on_the_websocket(client: TestClient) -> None:
    sdk = _sdk(client)
    secret = await sdk.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 600},
        session={"type": "realtime", "instructions": "Answer like a pirate.",
                 "audio": {"output": {"voice": "ash"}}},
    )
    assert secret.value.startswith("ek_")
    assert abs(secret.expires_at - (time.time() + 600)) < 5
    assert secret.session.type == "realtime" and secret.session.id.startswith("sess_")
    assert secret.session.instructions == "Answer like a pirate."
    # Both ways a client presents it: the browser's subprotocol (no model: it is bound) and a bearer header.
    for kwargs in ({"protocols": ("realtime", f"openai-insecure-api-key.{secret.value}")},
                   {"headers": {"Authorization": f"Bearer {secret.value}"}}):
        event, ws = await _first_event(client, "/v1/realtime", **kwargs)
        assert event["type"] == "session.created", event
        assert event["session"]["instructions"] == "Answer like a pirate."
        assert event["session"]["audio"]["output"]["voice"] == "ash"
        await ws.close()
    await sdk.close()


async def test_transcription_secret_opens_a_transcription_session(client: TestClient) -> None:
    sdk = _sdk(client)
    secret = await sdk.realtime.client_secrets.create(session={"type": "transcription"})
    assert secret.session.type == "transcription"
    event, ws = await _first_event(client, "/v1/realtime", headers={"Authorization": f"Bearer {secret.value}"})
    assert event["type"] == "session.created" and event["session"]["type"] == "transcription"
    await ws.close()
    await sdk.close()


async def test_minting_needs_the_api_key(client: TestClient) -> None:
    with pytest.raises(AuthenticationError) as err:
        await _sdk(client, "wrong").realtime.client_secrets.create()
    assert err.value.status_code == 401
    assert err.value.body["code"] == "invalid_api_key"
    secret = await _sdk(client).realtime.client_secrets.create()
    # An ephemeral key cannot mint another one.
    with pytest.raises(AuthenticationError):
        await _sdk(client, secret.value).realtime.client_secrets.create()
    response = await client.post("/v1/realtime/client_secrets", json={})
    assert response.status == 401
    assert (await response.json())["error"]["message"].startswith("Missing bearer")


@pytest.mark.parametrize(("body", "param"), [
    ({"expires_after": {"anchor": "created_at", "seconds": 5}}, "expires_after.seconds"),
    ({"session": {"type": "realtime", "voice_typo": "x"}}, "session.voice_typo"),
    ({"session": {"type": "realtime", "output_modalities": ["video"]}}, "session.output_modalities[0]"),
    ({"session": {"instructions": "no type"}}, "session.type"),
])
async def test_bad_requests_get_upstream_errors(client: TestClient, body: dict, param: str) -> None:
    response = await client.post("/v1/realtime/client_secrets", json=body,
                                 headers={"Authorization": f"Bearer {KEY}"})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error
    with pytest.raises(BadRequestError):
        await _sdk(client).realtime.client_secrets.create(**body)


async def test_expired_and_unknown_keys_are_refused_on_the_websocket(client: TestClient) -> None:
    secret = await _sdk(client).realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 10})
    store = client.server.app[ClientSecretStore.KEY]
    store._clock = lambda: time.time() + 11  # noqa: SLF001 - the key's lifetime passes
    for key in (secret.value, "ek_never_minted_by_this_server"):
        event, ws = await _first_event(client, "/v1/realtime", headers={"Authorization": f"Bearer {key}"})
        assert event["type"] == "error" and event["error"]["code"] == "invalid_api_key", event
        closing = await ws.receive()
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 3000
        await ws.close()
    assert "expired" in (await _first_event(client, "/v1/realtime", headers={
        "Authorization": f"Bearer {secret.value}"}))[0]["error"]["message"]


async def test_stale_keys_are_refused_on_calls(client: TestClient) -> None:
    secret = await _sdk(client).realtime.client_secrets.create(expires_after={"anchor": "created_at", "seconds": 10})
    offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    client.server.app[ClientSecretStore.KEY]._clock = lambda: time.time() + 11  # noqa: SLF001
    for key in (secret.value, "ek_unknown", "wrong"):
        with pytest.raises(AuthenticationError) as err:
            await _sdk(client, key).realtime.calls.create(sdp=offer)
        assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key", key
