"""WebRTC calls with an aiortc client: both request forms, the data channel, the tracks, hangup, sideband."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aioice.ice
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openai import AsyncOpenAI, AuthenticationError

from hearth.server.app import create_app
from hearth.server.session.interfaces import OutputAudio, OutputText
from hearth.server.session.testing import ScriptedEngine
from hearth.server.transports.webrtc import CallRegistry
from tests.server_harness import make_config
from tests.webrtc.rtc import RtcClient, silence, tone

KEY = "house-key"
REPLY_S = 3.0


def _reply_tone() -> np.ndarray:
    t = np.arange(int(REPLY_S * 24000)) / 24000
    return (np.sin(2 * np.pi * 330 * t) * 0.4 * 32767).astype(np.int16)


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client gathers on loopback only (the server does so by itself when bound to loopback)."""
    real = aioice.ice.get_host_addresses
    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else real(False, use_ipv6))


@pytest.fixture
async def server(tmp_path: Path):
    engine = ScriptedEngine(reply=[OutputText("Hello from Hearth."), OutputAudio(_reply_tone(), 24000)])
    app = create_app(make_config(tmp_path, {"server": {"api_key": KEY}}), engine_factory=lambda c, e: engine)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    client.engine = engine  # type: ignore[attr-defined]
    yield client
    await client.close()


def _sdk(server: TestClient, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=key, max_retries=0)


async def _call(server: TestClient, *, session: dict | None = None, key: str = KEY) -> tuple[RtcClient, str]:
    rtc = RtcClient.create()
    sdp = await rtc.offer()
    sdk = _sdk(server, key)
    if session is None:
        response = await sdk.realtime.calls.create(sdp=sdp)
    else:
        response = await sdk.realtime.calls.create(sdp=sdp, session=session)
    assert response.response.status_code == 201
    assert response.response.headers["content-type"].startswith("application/sdp")
    location = response.response.headers["location"]
    assert location.startswith("/v1/realtime/calls/rtc_")
    await rtc.answer(response.text)
    await asyncio.wait_for(rtc.opened.wait(), 10)
    return rtc, location.rsplit("/", 1)[-1]


async def test_multipart_call_speaks_a_turn(server: TestClient) -> None:
    rtc, call_id = await _call(server, session={
        "type": "realtime", "instructions": "Be brief.",
        "audio": {"input": {"transcription": {"model": "whisper-1"}}}})
    try:
        created = await rtc.wait_for("session.created")
        assert created["session"]["instructions"] == "Be brief."
        assert created["session"]["audio"]["input"]["transcription"]["model"] == "whisper-1"
        rtc.mic.say(np.concatenate([tone(0.8), silence(1.0)]))
        await rtc.wait_for("input_audio_buffer.speech_started")
        await rtc.wait_for("input_audio_buffer.speech_stopped")
        transcript = await rtc.wait_for("conversation.item.input_audio_transcription.completed")
        assert transcript["transcript"] == "hello"
        done = await rtc.wait_for("response.done")
        assert done["response"]["status"] == "completed"
        kinds = {e["type"] for e in rtc.log}
        assert "response.output_audio.delta" not in kinds  # the audio goes over RTP
        assert "response.output_audio_transcript.done" in kinds
        began = time.monotonic()
        playing = await rtc.wait_for("output_audio_buffer.started")
        assert playing["response_id"] == done["response"]["id"]
        stopped = await rtc.wait_for("output_audio_buffer.stopped", timeout=REPLY_S + 3)
        assert stopped["response_id"] == done["response"]["id"]
        # The reply track carried the reply: about REPLY_S of sound, not silence.
        assert rtc.loud_since(began - REPLY_S) > 0.8 * REPLY_S, rtc.heard[-5:]
        assert "conversation.item.truncated" not in {e["type"] for e in rtc.log}  # all of it was heard
        # The engine heard the microphone at 16 kHz after one downmix and one resample.
        audio = server.engine.transcriptions[-1].audio  # type: ignore[attr-defined]
        assert 0.5 < len(audio) / 16000 < 2.5
        spectrum = np.abs(np.fft.rfft(audio[: 8000]))
        assert abs(np.argmax(spectrum) * 16000 / 8000 - 440) < 10
    finally:
        await rtc.close()


async def test_barge_in_truncates_at_the_played_position(server: TestClient) -> None:
    rtc, call_id = await _call(server, session={"type": "realtime"})
    try:
        await rtc.wait_for("session.created")
        rtc.mic.say(np.concatenate([tone(0.6), silence(0.8)]))
        started = await rtc.wait_for("output_audio_buffer.started")
        t_started = time.monotonic()
        await asyncio.sleep(1.2)
        rtc.mic.say(tone(0.6, freq=550))  # the user talks over the reply
        await rtc.wait_for("input_audio_buffer.speech_started")
        t_barge = time.monotonic()
        # The reply was generated long ago (the engine is faster than real time); it was still
        # playing, so the server clears the output buffer itself.
        cleared = await rtc.wait_for("output_audio_buffer.cleared")
        assert cleared["response_id"] == started["response_id"]
        truncated = await rtc.wait_for("conversation.item.truncated")
        assert not [e for e in rtc.log if e["type"] == "output_audio_buffer.stopped"
                    and e["response_id"] == started["response_id"]]
        # Cut where the track was when the user spoke: about 1.2 s plus the VAD's reaction, far
        # short of the 3 s that had been generated.
        # (This client's clock sees both events one data-channel hop late, and a loaded machine
        # may burst the track's frames to catch up: a tolerance of a few hundred ms.)
        heard_ms = (t_barge - t_started) * 1000
        assert abs(truncated["audio_end_ms"] - heard_ms) < 450, (truncated, heard_ms)
        assert truncated["audio_end_ms"] < REPLY_S * 1000 - 1000
        await asyncio.sleep(0.6)
        # The track went quiet at once (a jitter buffer's worth later), though audio was left.
        assert rtc.loud_since(t_barge + 0.3) < 0.1, rtc.heard[-10:]
        item = await _retrieve(rtc, truncated["item_id"])
        assert item["content"][0]["transcript"] != "Hello from Hearth."  # the unheard words are gone
    finally:
        await rtc.close()


async def _retrieve(rtc: RtcClient, item_id: str) -> dict:
    rtc.send({"type": "conversation.item.retrieve", "item_id": item_id})
    return (await rtc.wait_for("conversation.item.retrieved"))["item"]


async def test_client_clear_stops_the_reply(server: TestClient) -> None:
    rtc, call_id = await _call(server, session={"type": "realtime"})
    try:
        await rtc.wait_for("session.created")
        rtc.mic.say(np.concatenate([tone(0.6), silence(0.8)]))
        started = await rtc.wait_for("output_audio_buffer.started")
        await asyncio.sleep(0.8)
        # What agents-js's interrupt() sends over WebRTC.
        rtc.send({"type": "response.cancel"})
        rtc.send({"type": "output_audio_buffer.clear"})
        cleared = await rtc.wait_for("output_audio_buffer.cleared")
        assert cleared["response_id"] == started["response_id"]
        t_clear = time.monotonic()
        await asyncio.sleep(0.8)
        assert rtc.loud_since(t_clear + 0.3) < 0.1
    finally:
        await rtc.close()


async def test_plain_sdp_call_and_data_channel_errors(server: TestClient) -> None:
    rtc, call_id = await _call(server)
    try:
        created = await rtc.wait_for("session.created")
        assert created["session"]["type"] == "realtime"
        rtc.send({"type": "session.update", "event_id": "e1", "session": {"type": "realtime", "instructions": "Hi"}})
        updated = await rtc.wait_for("session.updated")
        assert updated["session"]["instructions"] == "Hi"
        rtc.channel.send("{not json")
        error = await rtc.wait_for("error")
        assert error["error"]["code"] == "invalid_json"
        rtc.send({"type": "nope"})
        assert (await rtc.wait_for("error"))["error"]["param"] == "type"
    finally:
        await rtc.close()


async def test_ephemeral_call_hangup_revokes_the_key(server: TestClient) -> None:
    secret = await _sdk(server).realtime.client_secrets.create(
        session={"type": "realtime", "instructions": "Ephemeral."})
    rtc, call_id = await _call(server, key=secret.value)
    registry = server.server.app[CallRegistry.KEY]
    try:
        assert (await rtc.wait_for("session.created"))["session"]["instructions"] == "Ephemeral."
        assert call_id in registry.calls
        await _sdk(server, secret.value).realtime.calls.hangup(call_id)
        assert call_id not in registry.calls
        for _ in range(50):
            if rtc.pc.connectionState == "closed" or rtc.channel.readyState == "closed":
                break
            await asyncio.sleep(0.1)
        assert rtc.channel.readyState == "closed"
        # The key that opened the call opens no more.
        with pytest.raises(AuthenticationError) as err:
            await _call(server, key=secret.value)
        assert "ended" in err.value.body["message"]
        response = await server.post(f"/v1/realtime/calls/{call_id}/hangup", headers={"Authorization": f"Bearer {KEY}"})
        assert response.status == 404 and (await response.json())["error"]["code"] == "call_not_found"
    finally:
        await rtc.close()


async def test_sideband_controls_the_call(server: TestClient) -> None:
    rtc, call_id = await _call(server)
    try:
        await rtc.wait_for("session.created")
        ws = await server.ws_connect(f"/v1/realtime?call_id={call_id}", headers={"Authorization": f"Bearer {KEY}"})
        first = await ws.receive_json()
        assert first["type"] == "session.created"
        await ws.send_json({"type": "session.update", "session": {"type": "realtime", "instructions": "From the backend."}})
        from_backend = await ws.receive_json()
        assert from_backend["type"] == "session.updated"
        # The browser's channel sees the same session change.
        on_channel = await rtc.wait_for("session.updated")
        assert on_channel["session"]["instructions"] == "From the backend."
        await ws.close()
        # An unknown call is refused as a request-shape error.
        ws = await server.ws_connect("/v1/realtime?call_id=rtc_nope", headers={"Authorization": f"Bearer {KEY}"})
        assert (await ws.receive_json())["error"]["code"] == "call_not_found"
        await ws.close()
    finally:
        await rtc.close()


async def test_bad_offers_are_refused(server: TestClient) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    for body, content_type, code in [
        ("hello", "application/sdp", 400),
        ("", "application/sdp", 400),
        ('{"sdp": "x"}', "application/json", 400),
    ]:
        response = await server.post("/v1/realtime/calls", data=body, headers={**headers, "Content-Type": content_type})
        assert response.status == code, body
        assert "message" in (await response.json())["error"]
    response = await server.post("/v1/realtime/calls", data="v=0", headers={"Content-Type": "application/sdp"})
    assert response.status == 401
    rtc = RtcClient.create()
    with pytest.raises(Exception) as err:
        await _sdk(server).realtime.calls.create(sdp=await rtc.offer(), session={"type": "realtime", "bogus": 1})
    assert getattr(err.value, "status_code", None) == 400
    await rtc.close()


async def test_shutdown_closes_every_call(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path, {}), engine_factory=lambda c, e: ScriptedEngine())
    server = TestClient(TestServer(app, host="127.0.0.1"))
    await server.start_server()
    rtc, call_id = await _call(server)
    registry = app[CallRegistry.KEY]
    session = registry.calls[call_id].session
    await server.close()
    assert not registry.calls and session.closed
    for _ in range(50):
        if rtc.channel.readyState == "closed":
            break
        await asyncio.sleep(0.1)
    assert rtc.channel.readyState == "closed"
    await rtc.close()


async def test_loopback_server_offers_only_a_loopback_candidate(server: TestClient,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice leaves 127.0.0.1 out; a server bound to loopback offers exactly that candidate itself."""
    monkeypatch.undo()  # the server's own gathering, not the fixture's
    rtc = RtcClient.create()
    # As a browser that posts before gathering: no candidates yet (and so no traffic to any address).
    offer = "\r\n".join(line for line in (await rtc.offer()).split("\r\n")
                        if not line.startswith(("a=candidate", "a=end-of-candidates")))
    response = await server.post("/v1/realtime/calls", data=offer, headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/sdp"})
    assert response.status == 201
    answer = await response.text()
    candidates = [line for line in answer.split("\r\n") if line.startswith("a=candidate")]
    assert candidates and all(" 127.0.0.1 " in c and "typ host" in c for c in candidates), answer
    assert "a=sctp-port" in answer and "opus/48000/2" in answer
    call_id = response.headers["Location"].rsplit("/", 1)[-1]
    for action in ("accept", "reject", "refer"):
        refused = await server.post(f"/v1/realtime/calls/{call_id}/{action}", json={},
                                    headers={"Authorization": f"Bearer {KEY}"})
        assert refused.status == 400 and "SIP" in (await refused.json())["error"]["message"]
    hangup = await server.post(f"/v1/realtime/calls/{call_id}/hangup", headers={"Authorization": f"Bearer {KEY}"})
    assert hangup.status == 200
    await rtc.close()


def test_packet_per_frame_buffer_keeps_order() -> None:
    from types import SimpleNamespace

    from hearth.server.transports.webrtc import PacketPerFrameBuffer

    buffer = PacketPerFrameBuffer()

    def add(seq: int) -> bytes | None:
        packet = SimpleNamespace(sequence_number=seq, timestamp=seq * 960, _data=bytes([seq % 256]))
        frame = buffer.add(packet)[1]
        return None if frame is None else frame.data

    assert add(65534) == b"\xfe"  # each packet at once
    assert add(65535) == b"\xff"
    assert add(65535) is None  # a repeat
    assert add(1) == b"\x01"  # across the wrap, one lost (0) is skipped
    assert add(0) is None  # late: dropped, not played out of order
    assert add(2) == b"\x02"
