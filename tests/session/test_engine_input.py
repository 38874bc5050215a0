"""Engine-driven input: an engine session with a `Listener` detects the turns (no local VAD).

A recording listener stands in for the relay's upstream here (the relay itself is tested
against a second real Hearth in tests/realtime/test_relay.py); every event is checked
against the `openai` SDK's `RealtimeServerEvent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from hearth.server.protocol import client_events as ce
from hearth.server.session.interfaces import EngineSessionInfo, InputEvents
from hearth.server.session.session import RealtimeSession, SessionOptions
from hearth.server.session.testing import RecordingSink, ScriptedEngine, ScriptedEngineSession

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
RATE = 24_000


@dataclass
class RecordingListener:
    events: InputEvents | None = None
    config: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = field(default_factory=list)
    audio_ms: float = 0.0
    commits: list[str] = field(default_factory=list)
    clears: int = 0

    def listen(self, events: InputEvents, turn_detection: dict[str, Any] | None,
               transcription: dict[str, Any] | None) -> None:
        self.events = events
        self.config.append((turn_detection, transcription))

    def append(self, pcm: np.ndarray, rate: int) -> None:
        self.audio_ms += 1000 * len(pcm) / rate

    def commit(self, item_id: str) -> None:
        self.commits.append(item_id)

    def clear(self) -> None:
        self.clears += 1


class ListeningEngine(ScriptedEngine):
    """The scripted engine, with ears of its own instead of a VAD."""

    def __init__(self) -> None:
        super().__init__()
        self.listener = RecordingListener()

    def open(self, info: EngineSessionInfo) -> ScriptedEngineSession:
        session = super().open(info)
        session.vad = None  # type: ignore[assignment]
        session.transcriber = None
        session.listener = self.listener  # type: ignore[assignment]
        return session


@pytest.fixture
async def heard() -> tuple[RealtimeSession, RecordingSink, RecordingListener]:
    engine = ListeningEngine()
    sink = RecordingSink()
    session = RealtimeSession(engine, sink, SessionOptions())
    session.start()
    return session, sink, engine.listener


def speak(session: RealtimeSession, ms: int) -> None:
    for _ in range(ms // 40):
        session.append_pcm(np.full(RATE * 40 // 1000, 3000, dtype=np.int16), RATE)


async def test_the_engines_turn_becomes_the_sessions_own_events_and_is_answered(heard) -> None:
    session, sink, listener = heard
    session.submit(ce.SessionUpdate(type="session.update", session={
        "type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"},
                                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}}}))
    turn, transcription = listener.config[-1]
    assert turn is not None and turn["type"] == "server_vad" and turn["silence_duration_ms"] == 300
    assert transcription == {"model": "whisper-1"}
    assert session.input.detector is None
    speak(session, 2000)
    assert listener.audio_ms == pytest.approx(2000)
    events = listener.events
    assert events is not None
    item_id = events.speech_started(500)
    events.speech_stopped(1700)
    assert events.committed() == item_id
    await sink.wait_for("response.done")
    events.transcribed(item_id, "Hello there")
    for event in sink.events:
        SERVER_EVENT.validate_python(event)
    started, stopped, committed = (sink.of_type(k)[0] for k in (
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed"))
    assert (started["item_id"], started["audio_start_ms"]) == (item_id, 500)
    assert (stopped["item_id"], stopped["audio_end_ms"]) == (item_id, 1700)
    assert committed["item_id"] == item_id and listener.commits == []  # the engine committed it, not the session
    entry = session.conversation.get(item_id)
    assert entry is not None and entry.audio_ms == pytest.approx(1200, abs=5)  # the turn's audio, kept here
    (done,) = sink.of_type("conversation.item.input_audio_transcription.completed")
    assert done["item_id"] == item_id and done["transcript"] == "Hello there"
    assert entry.item["content"][0]["transcript"] == "Hello there"
    session.close()


async def test_the_sessions_own_commits_and_clears_go_to_the_listener(heard) -> None:
    session, sink, listener = heard
    session.submit(ce.SessionUpdate(type="session.update", session={
        "type": "realtime", "audio": {"input": {"turn_detection": None}}}))
    assert listener.config[-1][0] is None
    speak(session, 400)
    session.submit(ce.InputAudioBufferCommit(type="input_audio_buffer.commit"))
    (committed,) = sink.of_type("input_audio_buffer.committed")
    assert listener.commits == [committed["item_id"]]
    speak(session, 200)
    session.submit(ce.InputAudioBufferClear(type="input_audio_buffer.clear"))
    assert listener.clears == 1
    assert listener.events is not None and listener.events.speech_started(0) is None  # manual turns: no VAD turns
    session.close()


async def test_an_engine_that_loses_its_input_tells_the_client_and_drops_the_turn(heard) -> None:
    session, sink, listener = heard
    speak(session, 1000)
    assert listener.events is not None
    listener.events.speech_started(200)
    assert session.input.in_speech
    listener.events.failed("upstream_disconnected", "The connection to the upstream Realtime server was lost.")
    (error,) = sink.of_type("error")
    SERVER_EVENT.validate_python(error)
    assert error["error"]["code"] == "upstream_disconnected" and not session.input.in_speech
    assert listener.events.committed() is None and sink.of_type("input_audio_buffer.committed") == []
    session.close()


async def test_silence_is_not_kept_forever_while_the_engine_hears_no_speech(heard) -> None:
    session, _, listener = heard
    speak(session, 20_000)
    assert session.input.buffer.duration_ms <= 6_100
    assert listener.events is not None
    item_id = listener.events.speech_started(19_000)
    assert listener.events.committed() == item_id
    entry = session.conversation.get(item_id)
    assert entry is not None and entry.audio_ms == pytest.approx(1000, abs=5)
    session.close()
