"""Runs inside a network namespace: the spoken loop with everything real.

Mosquitto, a real `hass` 2025.4.4 (template lights, its MQTT integration, the Hearth
integration through its real config flows), the real Hearth server (cascade engine, real
models) on that broker, and the real satellite process in file mode with piper's "Hey Jarvis.
Turn on the kitchen light." Each turn: the kitchen light is switched off over REST, the
satellite runs once, then the light's state and the reply WAV are checked. Prints one JSON
line of results. Started by tests/ha/test_live_home_assistant.py (one turn) and
bench/voice_to_light.py (ten or more).

Measured per turn:

* tool round trip: `HomeAssistantTools.call` from sending the `tool-call` to the
  `tool-result` (wrapped on the server's loop);
* voice to light: the end of speech (the server's VAD: the turn's `silence_began` mark) to
  Home Assistant's own `last_changed` of `light.kitchen` (both on this machine's clock).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import wave
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402

from hearth.server.context import ServerContext  # noqa: E402
from hearth.server.mqtt.client import MqttClient  # noqa: E402
from hearth.server.session.interfaces import TranscriptionRequest  # noqa: E402
from hearth.server.session.timings import TurnTimings  # noqa: E402
from hearth.server.tools.home_assistant import HomeAssistantTools  # noqa: E402
from hearth.wire import topics  # noqa: E402
from hearth.server.tools.registry import ToolScope  # noqa: E402
from tests.ha.live_driver import (  # noqa: E402
    add_entries, entity_state, kitchen_status, launch, onboard, until_home_assistant_answers)
from tests.satellite.conftest import Speech, write_wav  # noqa: E402
from tests.server_harness import make_config, run_server  # noqa: E402

SATELLITE_CONFIG = """\
mqtt: {reconnect_min: 0.2, reconnect_max: 1.0, keepalive: 5}
session: {error_hold: 0.2, accept_timeout: 5, reply_timeout: 30}
vad: {no_speech_timeout: 3}
"""


def _wall(monotonic: float) -> float:
    return time.time() - (time.monotonic() - monotonic)


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


async def main(workdir: Path, hass_bin: str, mosquitto_bin: str, turns: int) -> dict[str, Any]:
    speech = Speech()
    request = write_wav(workdir / "request.wav",
                        speech.clip(0.8, "Hey Jarvis.", 0.6, "Turn on the kitchen light.", 1.2))
    (workdir / "satellite.yaml").write_text(SATELLITE_CONFIG)
    home = launch(workdir, hass_bin, mosquitto_bin)
    try:
        (workdir / "server").mkdir()
        config = make_config(workdir / "server", {
            "mqtt": {"url": f"mqtt://127.0.0.1:{home.mqtt_port}", "server_id": "hearth", "reconnect_min_s": 0.2,
                     "stream_timeout_s": 3.0}})
        started = time.monotonic()
        with run_server(config) as server:  # loads the real models (blocking is fine here)
            server_start_s = time.monotonic() - started
            ctx = server.app[ServerContext.KEY]
            round_trips: list[dict[str, Any]] = []
            speech_ends: list[float] = []

            def instrument() -> HomeAssistantTools:
                provider = next(p for p in ctx.tools.providers if isinstance(p, HomeAssistantTools))
                original = provider.call

                async def timed(scope, call):  # noqa: ANN001, ANN202
                    sent, t0 = time.time(), time.perf_counter()
                    result = await original(scope, call)
                    round_trips.append({"name": call.name, "arguments": call.arguments, "error": result.error,
                                        "ms": (time.perf_counter() - t0) * 1000, "sent": sent})
                    return result

                provider.call = timed  # type: ignore[method-assign]

                def observe(session_id: str, timings: TurnTimings) -> None:
                    if "silence_began" in timings.marks:
                        speech_ends.append(timings.marks["silence_began"])

                ctx.sessions.subscribe(observe)
                return provider

            provider = server.call(instrument)
            async with aiohttp.ClientSession() as http:
                auth = await onboard(http, home)
                await add_entries(http, home, auth)
                # The satellite's device appears in Home Assistant from its retained status; wait for its catalog.
                client: MqttClient = server.app[MqttClient.KEY]
                client.publish(topics.satellite_status("kitchen"), kitchen_status().to_json(), 1, True)
                deadline = time.monotonic() + 30
                while not server.call(lambda: "kitchen" in provider.catalogs):
                    assert time.monotonic() < deadline, "no catalog for the kitchen satellite"
                    await asyncio.sleep(0.05)
                tools = server.call(lambda: sorted(t.name for t in provider.catalogs["kitchen"].tools))
                ready = asyncio.run_coroutine_threadsafe(
                    until_home_assistant_answers(provider, ToolScope("satellite", "kitchen")), server.loop)
                await asyncio.wrap_future(ready)
                round_trips.clear()  # the warm-up calls are not turns

                results = []
                for turn in range(turns):
                    async with http.post(f"{home.base}/api/services/light/turn_off", headers=auth,
                                         json={"entity_id": "light.kitchen"}) as r:
                        assert r.status == 200, await r.text()
                    while (await entity_state(http, home, auth, "light.kitchen"))["state"] != "off":
                        await asyncio.sleep(0.02)
                    calls_before, ends_before = len(round_trips), len(speech_ends)
                    out = workdir / f"reply-{turn}.wav"
                    process = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "hearth.satellite", "--config", str(workdir / "satellite.yaml"),
                        "--id", "kitchen", "--mqtt-url", f"mqtt://127.0.0.1:{home.mqtt_port}",
                        "--input-wav", str(request), "--fast", "--output-wav", str(out), "--log-level", "info",
                        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
                    _, stderr = await asyncio.wait_for(process.communicate(), 120)
                    assert process.returncode == 0, stderr.decode(errors="replace")[-3000:]
                    state = await entity_state(http, home, auth, "light.kitchen")
                    changed = datetime.fromisoformat(state["last_changed"]).timestamp()
                    calls = round_trips[calls_before:]
                    ends = speech_ends[ends_before:]
                    speech_end = _wall(ends[0]) if ends else None
                    result: dict[str, Any] = {
                        "light": state["state"],
                        "calls": [(c["name"], c["arguments"], c["error"]) for c in calls],
                        "round_trip_ms": round(calls[0]["ms"], 1) if calls else None,
                        "voice_to_light_ms": round((changed - speech_end) * 1000)
                        if speech_end is not None and state["state"] == "on" else None,
                        # where the time goes: end of speech -> tool call sent (VAD silence, STT, brain)
                        "voice_to_call_ms": round((calls[0]["sent"] - speech_end) * 1000)
                        if speech_end is not None and calls else None,
                    }
                    if turn == 0:  # what the satellite played, heard by the server's own Whisper
                        pcm = _read_wav(out)
                        audio = pcm.astype(np.float32) / 32768.0
                        transcript = asyncio.run_coroutine_threadsafe(
                            ctx.engine.transcribe(TranscriptionRequest(audio, language="en")), server.loop).result(120)
                        result["reply_transcript"] = transcript.text.strip()
                        result["reply_ms"] = round(len(pcm) / 16)
                    results.append(result)
        trips = [r["round_trip_ms"] for r in results if r["round_trip_ms"] is not None]
        v2l = [r["voice_to_light_ms"] for r in results if r["voice_to_light_ms"] is not None]
        return {
            "turns": results,
            "tools": tools,
            "server_start_s": round(server_start_s, 1),
            "round_trip_p50_ms": round(statistics.median(trips), 1) if trips else None,
            "voice_to_light_p50_ms": round(statistics.median(v2l)) if v2l else None,
        }
    finally:
        home.stop()


if __name__ == "__main__":
    workdir, hass_bin, mosquitto_bin = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    turns = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    print("RESULT " + json.dumps(asyncio.run(main(workdir, hass_bin, mosquitto_bin, turns))))
