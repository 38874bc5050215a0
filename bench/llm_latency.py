#!/usr/bin/env python3
"""First-audio latency of the llm brain as a function of the upstream's time to first token.

Starts a real Hearth server in this process (tests/server_harness.run_server) with
`engine.brain.type: llm` pointed at the scripted Chat Completions endpoint
(tests/support/fake_chat_server.py, the exact SSE wire format) running in a thread of this
process, so both share one `time.monotonic()` clock. The endpoint waits `delay` ms before
its first chunk (0, 200, 500 by default), then streams the reply a word per chunk with no
further delay, so whatever time is left above `delay` is Hearth's own.

Per turn, on the client's `time.monotonic()`, through the real `openai` package's
Realtime client: a user text item is created (and acknowledged), then

  first audio = `response.create` sent -> first `response.output_audio.delta` received
  overhead    = first audio - delay

with its two parts, taken from the endpoint's own record of the request:

  to upstream = `response.create` sent -> the chat request arrives at the endpoint
  after token = the endpoint's first chunk sent -> first audio received (sentence
                splitting, piper's first chunk of the first sentence, the WebSocket)
  tts         = the server's marks first_sentence -> tts_first_audio (GET /v1/hearth/timings):
                piper synthesizing the first piece, which any brain pays
  overhead without tts = overhead - tts: what the llm path itself adds

Turns alternate between a reply with a common opener ("Sure,"), which piper's short-piece
cache replays once it has been said, and one with an opener new to the turn ("Joke 7,"),
which piper synthesizes; the overhead is also printed for each kind.

Prints p50/p95/min/max per delay, checks the issue's target (overhead p50 < 100 ms), writes
<out>/llm_latency.png and .json (default bench/out/).

    .venv/bin/python bench/llm_latency.py                 # 20 turns per delay
    .venv/bin/python bench/llm_latency.py --turns 40 --delays 0 100 200 500 1000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server_harness import make_config, run_server  # noqa: E402
from tests.support.fake_chat_server import Reply, ThreadedFakeChatServer  # noqa: E402

API_KEY = "bench-key"
#: The model's reply: an opening clause (what the first audio speaks), then more. Turns
#: alternate between a common opener, which piper's short-piece cache replays after its
#: first use, and one new to every turn ("Joke 7,"), which piper must synthesize.
JOKE = "Why did the scarecrow win an award? Because he was outstanding in his field."
REPLY = f"Sure, here's a quick one. {JOKE}"


_FRESH = itertools.count(1)


def reply_for(turn: int) -> tuple[str, bool]:
    """The scripted reply of a turn, and whether its opener is the common (cacheable) one.

    The other opener is new to the whole run ("Joke 7,", a number never used before).
    """
    if turn % 2 == 0:
        return REPLY, True
    return f"Joke {next(_FRESH)}, coming right up. {JOKE}", False
PROMPTS = ["Tell me a joke.", "Say something funny.", "Make me laugh.", "Another one, please."]
TARGET_OVERHEAD_MS = 100.0
METRICS = ("first_audio_ms", "overhead_ms", "to_upstream_ms", "after_token_ms", "tts_ms", "overhead_without_tts_ms")


def stats(values: list[float]) -> dict[str, float]:
    data = np.asarray(values, dtype=float)
    return {"n": int(len(data)), "p50": float(np.percentile(data, 50)), "p95": float(np.percentile(data, 95)),
            "min": float(data.min()), "max": float(data.max())}


async def measure(base_url: str, fake: Any, delay_ms: float, turns: int, warmup: int) -> list[dict[str, float]]:
    from openai import AsyncOpenAI

    current = {"text": REPLY}
    fake.script = lambda _request: Reply(text=current["text"], first_token_delay=delay_ms / 1000)
    client = AsyncOpenAI(base_url=base_url, api_key=API_KEY)
    rows: list[dict[str, float]] = []
    async with client.realtime.connect(model="hearth") as conn:
        events: asyncio.Queue[Any] = asyncio.Queue()

        async def read() -> None:
            async for event in conn:
                events.put_nowait((time.monotonic(), event))

        reader = asyncio.create_task(read())

        async def until(kind: str) -> tuple[float, Any]:
            while True:
                at, event = await asyncio.wait_for(events.get(), 30)
                if event.type == "error":
                    raise RuntimeError(f"server error: {event.error.message}")
                if event.type == kind:
                    return at, event

        await until("session.created")
        for turn in range(warmup + turns):
            await conn.conversation.item.create(item={
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": PROMPTS[turn % len(PROMPTS)]}]})
            await until("conversation.item.done")
            current["text"], common = reply_for(turn)
            before = len(fake.requests)
            sent = time.monotonic()
            await conn.response.create()
            _, created = await until("response.created")
            first_audio = (await until("response.output_audio.delta"))[0] - sent
            await until("response.done")
            request = fake.requests[before]
            if turn < warmup:
                continue
            first_chunk = request.first_chunk_at or request.received_at
            rows.append({
                "response_id": created.response.id,
                "first_audio_ms": first_audio * 1000,
                "overhead_ms": first_audio * 1000 - delay_ms,
                "to_upstream_ms": (request.received_at - sent) * 1000,
                "after_token_ms": (sent + first_audio - first_chunk) * 1000,
                "common_opener": common,
            })
            await asyncio.sleep(0.1)
        marks = await server_marks(base_url)
        for row in rows:
            turn_marks = marks.get(row.pop("response_id"), {})
            if "first_sentence" in turn_marks and "tts_first_audio" in turn_marks:
                row["tts_ms"] = (turn_marks["tts_first_audio"] - turn_marks["first_sentence"]) * 1000
                row["overhead_without_tts_ms"] = row["overhead_ms"] - row["tts_ms"]
        reader.cancel()
    await client.close()
    return rows


async def server_marks(base_url: str) -> dict[str, dict[str, float]]:
    """GET /v1/hearth/timings: response id -> the server's stage marks (same monotonic clock)."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(
            f"{base_url}/hearth/timings", headers={"Authorization": f"Bearer {API_KEY}"}) as resp:
        resp.raise_for_status()
        data = await resp.json()
    return {t["response_id"]: t["marks"] for s in data["sessions"] for t in s["turns"] if t.get("response_id")}


def plot(results: dict[float, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    delays = sorted(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for delay in delays:
        values = [r["first_audio_ms"] for r in results[delay]]
        left.scatter([delay] * len(values), values, s=10, alpha=0.4, color="tab:blue")
    p50 = [np.percentile([r["first_audio_ms"] for r in results[d]], 50) for d in delays]
    p95 = [np.percentile([r["first_audio_ms"] for r in results[d]], 95) for d in delays]
    left.plot(delays, p50, "o-", color="tab:blue", label="first audio p50")
    left.plot(delays, p95, "s--", color="tab:orange", label="first audio p95")
    left.plot(delays, delays, ":", color="gray", label="upstream's own delay")
    left.plot(delays, [d + TARGET_OVERHEAD_MS for d in delays], "-", color="tab:red", lw=0.8,
              label=f"delay + {TARGET_OVERHEAD_MS:.0f} ms target")
    left.set_xlabel("upstream time to first token (ms)")
    left.set_ylabel("response.create -> first audio (ms)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    width = 0.35 * (delays[1] - delays[0] if len(delays) > 1 else 100)
    def p50(key: str, delay: float) -> float:
        values = [r[key] for r in results[delay] if key in r]
        return float(np.percentile(values, 50)) if values else 0.0

    to_up = np.array([p50("to_upstream_ms", d) for d in delays])
    tts = np.array([p50("tts_ms", d) for d in delays])
    rest = np.array([max(p50("after_token_ms", d) - p50("tts_ms", d), 0.0) for d in delays])
    right.bar(delays, to_up, width, label="response.create -> request at upstream")
    right.bar(delays, rest, width, bottom=to_up, label="first token -> first piece, audio to client")
    right.bar(delays, tts, width, bottom=to_up + rest, label="piper: first piece (any brain)")
    right.axhline(TARGET_OVERHEAD_MS, color="tab:red", lw=0.8, label="target")
    right.set_xlabel("upstream time to first token (ms)")
    right.set_ylabel("Hearth's overhead, p50 parts (ms)")
    right.legend(fontsize=8)
    right.grid(alpha=0.3, axis="y")
    fig.suptitle("llm brain: first audio vs the upstream's time to first token")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20, help="measured turns per delay")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured turns per delay")
    parser.add_argument("--delays", type=float, nargs="+", default=[0, 200, 500], help="upstream delays, ms")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    results: dict[float, list[dict[str, float]]] = {}
    with ThreadedFakeChatServer() as fake, tempfile.TemporaryDirectory() as tmp:
        config = make_config(Path(tmp), {
            "server": {"api_key": API_KEY},
            "engine": {"brain": {"type": "llm", "llm": {"base_url": fake.base_url, "model": "fake-model"}}},
        })
        with run_server(config) as server:
            for delay in args.delays:
                results[delay] = asyncio.run(measure(server.base_url, fake, delay, args.turns, args.warmup))

    lines = [f"llm brain first audio, {args.turns} turns per delay ({platform.processor() or platform.machine()})",
             f"{'delay':>6} {'metric (ms)':24} {'p50':>7} {'p95':>7} {'min':>7} {'max':>7}"]
    summary: dict[str, Any] = {}
    ok = ok_brain = True
    for delay, rows in results.items():
        summary[str(delay)] = {}
        for key in METRICS:
            values = [r[key] for r in rows if key in r]
            if not values:
                continue
            st = stats(values)
            summary[str(delay)][key] = st
            lines.append(f"{delay:6.0f} {key:24} {st['p50']:7.1f} {st['p95']:7.1f} {st['min']:7.1f} {st['max']:7.1f}")
        for label, common in (("common opener", True), ("new opener", False)):
            values = [r["overhead_ms"] for r in rows if r["common_opener"] is common]
            if values:
                st = stats(values)
                summary[str(delay)][f"overhead_ms ({label})"] = st
                lines.append(f"{delay:6.0f} {'  overhead, ' + label:24} {st['p50']:7.1f} {st['p95']:7.1f} "
                             f"{st['min']:7.1f} {st['max']:7.1f}")
        ok &= summary[str(delay)]["overhead_ms"]["p50"] < TARGET_OVERHEAD_MS
        if "overhead_without_tts_ms" in summary[str(delay)]:
            ok_brain &= summary[str(delay)]["overhead_without_tts_ms"]["p50"] < TARGET_OVERHEAD_MS
    delays = sorted(results)
    growth = [summary[str(d)]["first_audio_ms"]["p50"] - summary[str(delays[0])]["first_audio_ms"]["p50"] - (d - delays[0])
              for d in delays[1:]]
    lines.append(f"target: overhead p50 < {TARGET_OVERHEAD_MS:.0f} ms at every delay: {'met' if ok else 'MISSED'}")
    lines.append(f"         without piper's first piece: {'met' if ok_brain else 'MISSED'}")
    lines.append("first audio p50 growth beyond the added upstream delay: "
                 + ", ".join(f"{d:.0f} ms: {g:+.0f} ms" for d, g in zip(delays[1:], growth)))
    print("\n".join(lines))
    (args.out / "llm_latency.json").write_text(json.dumps(
        {"summary": summary, "turns": {str(d): r for d, r in results.items()}, "reply": REPLY, "reply_new_opener": f"Joke N, coming right up. {JOKE}"}, indent=2))
    plot(results, args.out / "llm_latency.png")
    print(f"wrote {args.out / 'llm_latency.png'} and {args.out / 'llm_latency.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
