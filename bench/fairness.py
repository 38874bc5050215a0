#!/usr/bin/env python3
"""Fairness between sessions: a victim's turn latency alone and beside each hostile load.

Starts the default Hearth server (cascade engine, real models) in this process and runs
one victim client over the Realtime WebSocket: text turns ("what time is it", output as
text: `response.create` sent -> `response.done`) and spoken turns (piper speech streamed in
real time with a noise floor, server VAD: end of speech -> the first
`response.output_audio.delta`). The victim's turns are measured alone, then while one
hostile client keeps up each load below, then alone again:

  oob_text      8 out-of-band text responses at a time, each on a 30,000-character message
  item_audio    20 `conversation.item.create` with 60 s of user audio each, again and again
  oob_flood     100 `response.create` with `conversation: "none"` at once, every second
  manual_pauses `turn_detection: null`, speech with pauses appended at 10x real time (5 min)
  big_append    a 15 MiB `input_audio_buffer.append` (5.5 min of audio) every 2 s
  enum_tool     a tool with 20,000 enum names, then text turns on that session

The hostile client runs in its own process (as an attacker's would), so its own JSON and
base64 work competes with the server for CPU cores, not for this process's GIL;
`--hostile-in-process` runs it on the victim's event loop instead, as the first version of
this benchmark did.

Prints p50/p95 per condition and the ratio of each p95 to the alone p95 (target: within
2x), and writes bench/out/fairness.png and .json.

    .venv/bin/python bench/fairness.py
    .venv/bin/python bench/fairness.py --text-turns 4 --spoken-turns 2 --only oob_text,big_append
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from latency import CHUNK, RATE, in_process_server, noise, synthesize  # noqa: E402

API_KEY = "bench-fairness"
SPOKEN = [("What time is it?", "time"), ("What's the date today?", "date")]
TURN_TIMEOUT_S = 60.0


@dataclass
class Condition:
    name: str
    text_ms: list[float] = field(default_factory=list)
    spoken_ms: list[float] = field(default_factory=list)
    failures: int = 0
    #: What the hostile client was told (error codes it received), for the record.
    hostile_errors: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- a raw Realtime client


class Client:
    """A minimal Realtime WebSocket client (aiohttp) that hands every event to `on_event`."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.waiters: list[tuple[Callable[[dict], bool], asyncio.Future[dict]]] = []
        self.errors: dict[str, int] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type.name != "TEXT":
                continue
            event = json.loads(msg.data)
            if event["type"] == "error":
                code = str(event["error"].get("code"))
                self.errors[code] = self.errors.get(code, 0) + 1
            for match, future in list(self.waiters):
                if not future.done() and match(event):
                    future.set_result(event)
                    self.waiters.remove((match, future))

    def expect(self, match: Callable[[dict], bool]) -> asyncio.Future[dict]:
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self.waiters.append((match, future))
        return future

    async def send(self, event: dict) -> None:
        await self.ws.send_str(json.dumps(event))

    async def close(self) -> None:
        self.reader.cancel()
        await self.ws.close()


@contextlib.asynccontextmanager
async def connect(http: Any, url: str):  # noqa: ANN201
    ws = await http.ws_connect(f"{url}?model=hearth", headers={"Authorization": f"Bearer {API_KEY}"},
                               max_msg_size=0)
    client = Client(ws)
    await client.expect(lambda e: e["type"] == "session.created")
    try:
        yield client
    finally:
        await client.close()


def b64(pcm: np.ndarray) -> str:
    return base64.b64encode(pcm.astype("<i2").tobytes()).decode()


def text_item(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


# --------------------------------------------------------------------------- the victim


async def text_turn(client: Client) -> float:
    await client.send({"type": "conversation.item.create", "item": text_item("What time is it?")})
    done = client.expect(lambda e: e["type"] == "response.done")
    started = time.monotonic()
    await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
    await asyncio.wait_for(done, TURN_TIMEOUT_S)
    return 1000 * (time.monotonic() - started)


async def spoken_turn(client: Client, pcm: np.ndarray, rng: np.random.Generator) -> float:
    first = client.expect(lambda e: e["type"] == "response.output_audio.delta")
    done = client.expect(lambda e: e["type"] == "response.done")
    start = time.monotonic()
    for index, offset in enumerate(range(0, len(pcm), CHUNK)):
        await asyncio.sleep(max(0.0, start + index * CHUNK / RATE - time.monotonic()))
        await client.send({"type": "input_audio_buffer.append", "audio": b64(pcm[offset : offset + CHUNK])})
    end_of_speech = time.monotonic()
    index = 0
    while not first.done() and time.monotonic() - end_of_speech < TURN_TIMEOUT_S:
        index += 1
        await asyncio.sleep(max(0.0, end_of_speech + index * CHUNK / RATE - time.monotonic()))
        await client.send({"type": "input_audio_buffer.append",
                           "audio": b64(np.round(noise(CHUNK, rng)).astype(np.int16))})
    await asyncio.wait_for(first, 1.0)
    latency = 1000 * (time.monotonic() - end_of_speech)
    await asyncio.wait_for(done, TURN_TIMEOUT_S)
    return latency


async def victim(http: Any, url: str, condition: Condition, text_turns: int, spoken_turns: int,
                 utterances: list[Any]) -> None:
    rng = np.random.default_rng(3)
    async with connect(http, url) as client:
        for _ in range(text_turns):
            try:
                condition.text_ms.append(await text_turn(client))
            except TimeoutError:
                condition.failures += 1
        for index in range(spoken_turns):
            try:
                condition.spoken_ms.append(await spoken_turn(client, utterances[index % len(utterances)].pcm, rng))
            except TimeoutError:
                condition.failures += 1
            await asyncio.sleep(0.3)


# --------------------------------------------------------------------------- hostile loads


Load = Callable[[Client, asyncio.Event], Awaitable[None]]


async def oob_text(client: Client, stop: asyncio.Event) -> None:
    message = text_item("turn on the kitchen light and then " * 850)  # ~30,000 characters
    while not stop.is_set():
        dones = [client.expect(lambda e: e["type"] == "response.done") for _ in range(8)]
        for _ in range(8):
            await client.send({"type": "response.create", "response": {
                "conversation": "none", "output_modalities": ["text"], "input": [message]}})
        await asyncio.wait(dones, timeout=10)


async def item_audio(client: Client, stop: asyncio.Event) -> None:
    rng = np.random.default_rng(5)
    minute = b64(np.round(noise(RATE * 60, rng) * 30).astype(np.int16))
    while not stop.is_set():
        completions = [client.expect(lambda e: e["type"].startswith("conversation.item.input_audio_transcription."))
                       for _ in range(20)]
        for _ in range(20):
            await client.send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_audio", "audio": minute}]}})
        await asyncio.wait(completions, timeout=30)


async def oob_flood(client: Client, stop: asyncio.Event) -> None:
    await client.send({"type": "conversation.item.create", "item": text_item("what time is it")})
    while not stop.is_set():
        for _ in range(100):
            await client.send({"type": "response.create", "response": {
                "conversation": "none", "output_modalities": ["audio"]}})
        await asyncio.sleep(1.0)


async def manual_pauses(client: Client, stop: asyncio.Event, utterances: list[Any]) -> None:
    rng = np.random.default_rng(9)
    await client.send({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"turn_detection": None}}}})
    pause = np.round(noise(RATE * 600 // 1000, rng)).astype(np.int16)
    speech = np.concatenate([np.concatenate([u.pcm, pause]) for u in utterances])
    while not stop.is_set():
        sent = 0.0
        while sent < 300 and not stop.is_set():
            for offset in range(0, len(speech), RATE // 5):  # 200 ms chunks at 10x real time
                await client.send({"type": "input_audio_buffer.append", "audio": b64(speech[offset : offset + RATE // 5])})
                await asyncio.sleep(0.02)
            sent += len(speech) / RATE
        await client.send({"type": "input_audio_buffer.clear"})


async def big_append(client: Client, stop: asyncio.Event) -> None:
    rng = np.random.default_rng(13)
    payload = b64(np.round(noise(15 * 1024 * 1024 * 3 // 8, rng) * 20).astype(np.int16))  # 15 MiB of base64
    while not stop.is_set():
        await client.send({"type": "input_audio_buffer.append", "audio": payload})
        await asyncio.sleep(2.0)
        await client.send({"type": "input_audio_buffer.clear"})


async def enum_tool(client: Client, stop: asyncio.Event) -> None:
    tool = {"type": "function", "name": "HassTurnOn", "description": "Turns on a device", "parameters": {
        "type": "object", "properties": {"name": {"type": "string", "enum": [f"Light {i}" for i in range(20_000)]}}}}
    await client.send({"type": "session.update", "session": {"type": "realtime", "tools": [tool],
                                                             "output_modalities": ["text"]}})
    while not stop.is_set():
        await client.send({"type": "conversation.item.create", "item": text_item("turn on light 19999")})
        done = client.expect(lambda e: e["type"] in ("response.done", "error"))
        await client.send({"type": "response.create"})
        await asyncio.wait([done], timeout=30)


# --------------------------------------------------------------------------- the hostile client's process


def hostile_loads(utterances: list[Any]) -> dict[str, Load]:
    return {
        "oob_text": oob_text, "item_audio": item_audio, "oob_flood": oob_flood,
        "manual_pauses": lambda c, s: manual_pauses(c, s, utterances), "big_append": big_append,
        "enum_tool": enum_tool,
    }


@contextlib.asynccontextmanager
async def hostile_in_process(http: Any, url: str, name: str, utterances: list[Any]):  # noqa: ANN201
    """Run load `name` on this event loop; yields a callable returning the error counts so far."""
    async with connect(http, url) as hostile:
        stop = asyncio.Event()
        load = asyncio.create_task(hostile_loads(utterances)[name](hostile, stop))
        try:
            yield lambda: dict(hostile.errors)
        finally:
            stop.set()
            load.cancel()
            with contextlib.suppress(BaseException):
                await load


def _hostile_child(url: str, name: str, utterances: list[Any], conn: Any) -> None:
    """The child process: connect, report "ready", run the load until told to stop, send back the errors."""
    import aiohttp

    async def main() -> None:
        async with aiohttp.ClientSession() as http, connect(http, url) as hostile:
            stop = asyncio.Event()
            load = asyncio.create_task(hostile_loads(utterances)[name](hostile, stop))
            conn.send("ready")
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            stop.set()
            load.cancel()
            with contextlib.suppress(BaseException):
                await load
            conn.send(dict(hostile.errors))

    asyncio.run(main())


@contextlib.asynccontextmanager
async def hostile_process(url: str, name: str, utterances: list[Any]):  # noqa: ANN201
    """Run load `name` in a child process; yields a callable returning its error counts (after the block)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_hostile_child, args=(url, name, utterances, theirs), daemon=True)
    child.start()
    loop = asyncio.get_running_loop()
    errors: dict[str, int] = {}
    try:
        ready = await asyncio.wait_for(loop.run_in_executor(None, ours.recv), 120)
        assert ready == "ready", ready
        yield lambda: errors
    finally:
        with contextlib.suppress(Exception):
            ours.send("stop")
            if await loop.run_in_executor(None, ours.poll, 30):
                errors.update(ours.recv())
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()


# --------------------------------------------------------------------------- the run


async def run(args: argparse.Namespace) -> list[Condition]:
    import aiohttp

    print("synthesizing the victim's utterances with piper ...", flush=True)
    utterances = synthesize(SPOKEN, ["piper:1.0"])  # piper joe at its own speed, as before
    loads = hostile_loads(utterances)
    chosen = [name for name in loads if not args.only or name in args.only.split(",")]
    results: list[Condition] = []
    with in_process_server(API_KEY) as (base_url, _described):
        url = base_url.replace("http://", "ws://").rstrip("/") + "/realtime"
        async with aiohttp.ClientSession() as http:
            await victim(http, url, Condition("warm-up"), 1, 1, utterances)
            for name in ["alone", *chosen, "alone (again)"]:
                condition = Condition(name)
                print(f"-- {name}", flush=True)
                if name.startswith("alone"):
                    await victim(http, url, condition, args.text_turns, args.spoken_turns, utterances)
                else:
                    hostile = hostile_in_process(http, url, name, utterances) if args.hostile_in_process \
                        else hostile_process(url, name, utterances)
                    async with hostile as errors:
                        await asyncio.sleep(args.ramp_s)
                        await victim(http, url, condition, args.text_turns, args.spoken_turns, utterances)
                    condition.hostile_errors = errors()
                results.append(condition)
                print(f"   text {summary(condition.text_ms)}   spoken {summary(condition.spoken_ms)}"
                      f"   failures {condition.failures}   hostile errors {condition.hostile_errors}", flush=True)
                await asyncio.sleep(1.0)
    return results


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(np.percentile(ordered, q))


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"p50 {pct(values, 50):7.0f} ms  p95 {pct(values, 95):7.0f} ms"


def report(results: list[Condition]) -> str:
    alone = [c for c in results if c.name.startswith("alone")]
    base_text = pct([v for c in alone for v in c.text_ms], 95) or 1.0
    base_spoken = pct([v for c in alone for v in c.spoken_ms], 95) or 1.0
    lines = ["", f"{'condition':16} {'text p50':>9} {'text p95':>9} {'x alone':>8}   {'spoken p50':>10} "
             f"{'spoken p95':>10} {'x alone':>8}  fail  hostile's errors"]
    for c in results:
        tp50, tp95 = pct(c.text_ms, 50), pct(c.text_ms, 95)
        sp50, sp95 = pct(c.spoken_ms, 50), pct(c.spoken_ms, 95)
        lines.append(
            f"{c.name:16} {fmt(tp50):>9} {fmt(tp95):>9} {ratio(tp95, base_text):>8}   {fmt(sp50):>10} {fmt(sp95):>10} "
            f"{ratio(sp95, base_spoken):>8}  {c.failures:4}  {c.hostile_errors or ''}")
    lines.append("target: every p95 within 2x of alone")
    return "\n".join(lines)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def ratio(value: float | None, base: float) -> str:
    return "-" if value is None else f"{value / base:.2f}x"


def plot(results: list[Condition], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, attr, title in ((axes[0], "text_ms", "text turn (response.create -> done)"),
                            (axes[1], "spoken_ms", "spoken turn (end of speech -> first audio)")):
        data = [getattr(c, attr) or [0.0] for c in results]
        ax.boxplot(data, tick_labels=[c.name for c in results], showfliers=True)
        ax.set_title(title)
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=35)
    fig.suptitle("Victim latency alone and beside each hostile load (bench/fairness.py)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-turns", type=int, default=8)
    parser.add_argument("--spoken-turns", type=int, default=4)
    parser.add_argument("--ramp-s", type=float, default=2.0, help="seconds a load runs before the victim starts")
    parser.add_argument("--only", help="comma-separated loads to run (default: all)")
    parser.add_argument("--hostile-in-process", action="store_true",
                        help="run the hostile client on this process's event loop (default: its own process)")
    parser.add_argument("--name", default="fairness", help="stem of the output files")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print(report(results))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps([asdict(c) for c in results], indent=1))
    plot(results, args.out / f"{args.name}.png")
    print(f"wrote {args.out / (args.name + '.png')} and {args.out / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
