"""The session port with the scripted engine: any-rate audio, end of input, playback reports.

These are the verbs media transports (MQTT satellites, WebRTC) use instead of Realtime JSON.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from hearth.server.protocol import client_events as ce
from hearth.server.session.interfaces import OutputAudio, OutputText, Playback, ReplyAudio
from hearth.server.session.session import RealtimeSession, SessionOptions
from hearth.server.session.testing import RecordingSink, ScriptedEngine

SERVER_EVENT = TypeAdapter(RealtimeServerEvent)


def tone(ms: int, rate: int, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * 220 * t) * amplitude * 32767).astype(np.int16)


def silence(ms: int, rate: int) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


@dataclass
class Media(RecordingSink):
    """A media transport: events and a reply track."""

    audio: list[ReplyAudio] = field(default_factory=list)

    def __post_init__(self) -> None:
        RecordingSink.__init__(self)

    def reply_audio(self, audio: ReplyAudio) -> None:
        self.audio.append(audio)


def media_session(engine: ScriptedEngine, rate: int = 16_000, **options) -> tuple[RealtimeSession, Media]:
    media = Media()
    session = RealtimeSession(engine, media, SessionOptions(media_rate=rate, **options), media=media)
    session.start()
    return session, media


def feed(session: RealtimeSession, pcm: np.ndarray, rate: int, chunk_ms: int = 20) -> None:
    step = rate * chunk_ms // 1000
    for offset in range(0, len(pcm), step):
        session.append_pcm(pcm[offset : offset + step], rate)


def valid(sink: RecordingSink) -> None:
    for event in sink.events:
        SERVER_EVENT.validate_python(event)


@pytest.mark.parametrize("rate", [8_000, 16_000, 24_000, 48_000])
async def test_any_rate_audio_ends_a_turn_at_the_same_place(rate: int) -> None:
    """PCM at any rate goes in; the VAD sees the same 16 kHz audio, so the turn is the same."""
    session, media = media_session(ScriptedEngine())
    feed(session, np.concatenate([silence(200, rate), tone(600, rate), silence(700, rate)]), rate)
    stopped = await media.wait_for("input_audio_buffer.speech_stopped")
    assert 800 + 450 <= stopped["audio_end_ms"] <= 800 + 600
    await media.wait_for("response.done")
    valid(media)
    session.close()


async def test_end_input_closes_the_turn_now_without_silence() -> None:
    engine = ScriptedEngine()
    session, media = media_session(engine)
    feed(session, np.concatenate([silence(200, 16_000), tone(600, 16_000)]), 16_000)
    await media.wait_for("input_audio_buffer.speech_started")
    assert "input_audio_buffer.speech_stopped" not in media.types()
    assert session.end_input() is True
    stopped = media.of_type("input_audio_buffer.speech_stopped")[0]
    assert 780 <= stopped["audio_end_ms"] <= 820  # where the audio ended, not after a silence
    assert media.of_type("input_audio_buffer.committed")
    await media.wait_for("response.done")
    assert engine.requests, "the committed turn was answered"
    valid(media)
    session.close()


async def test_end_input_with_nothing_heard_commits_nothing() -> None:
    session, media = media_session(ScriptedEngine())
    feed(session, silence(500, 16_000), 16_000)
    assert session.end_input() is False
    assert "input_audio_buffer.committed" not in media.types()
    session.close()


async def test_reply_audio_goes_to_the_media_track_at_its_rate_not_into_events() -> None:
    engine = ScriptedEngine(reply=[OutputText("Hello there."), OutputAudio(np.zeros(22_050, np.int16), 22_050)])
    session, media = media_session(engine, rate=16_000)
    session.submit(ce.ResponseCreate(type="response.create"))
    done = await media.wait_for("response.done")
    assert "response.output_audio.delta" not in media.types()
    assert media.audio and {a.rate for a in media.audio} == {16_000}
    assert {a.response_id for a in media.audio} == {done["response"]["id"]}
    total = sum(len(a.pcm) for a in media.audio)
    assert abs(total - 16_000) <= 16  # one second of speech, one resample 22.05 -> 16 kHz
    valid(media)
    session.close()


async def test_playback_report_truncates_what_was_not_heard() -> None:
    engine = ScriptedEngine(reply=[OutputText("One two three four. "), OutputAudio(np.zeros(16_000, np.int16), 16_000),
                                   OutputText("Five six seven eight."), OutputAudio(np.zeros(16_000, np.int16), 16_000)])
    session, media = media_session(engine, playback_events=True)
    session.submit(ce.ResponseCreate(type="response.create"))
    done = await media.wait_for("response.done")
    response_id = done["response"]["id"]
    item_id = done["response"]["output"][0]["id"]
    session.report_playback(Playback(response_id, played_ms=200, finished=False))
    assert media.of_type("output_audio_buffer.started")[0]["response_id"] == response_id
    session.report_playback(Playback(response_id, played_ms=1500, finished=True))
    truncated = media.of_type("conversation.item.truncated")[0]
    assert truncated == {**truncated, "item_id": item_id, "audio_end_ms": 1500}
    entry = session.conversation.get(item_id)
    assert entry.item["content"][0]["transcript"] == "One two three four. Five six"
    assert entry.audio_ms == pytest.approx(1500, abs=1)
    assert media.of_type("output_audio_buffer.stopped")[0]["response_id"] == response_id
    valid(media)
    session.close()


async def test_playback_that_heard_everything_truncates_nothing() -> None:
    session, media = media_session(ScriptedEngine(reply=[OutputText("Hi."), OutputAudio(np.zeros(8000, np.int16), 16_000)]))
    session.submit(ce.ResponseCreate(type="response.create"))
    done = await media.wait_for("response.done")
    session.report_playback(Playback(done["response"]["id"], played_ms=500, finished=True))
    assert "conversation.item.truncated" not in media.types()
    assert "output_audio_buffer.started" not in media.types()  # not asked for
    session.close()


async def test_playback_stopped_mid_reply_cancels_it_and_keeps_only_what_was_heard() -> None:
    """A barge-in on the media side: the listener stopped at 300 ms while the engine still spoke."""
    engine = ScriptedEngine(reply=[OutputText("One. "), OutputAudio(np.zeros(4800, np.int16), 16_000)] * 20,
                            chunk_delay=0.02)
    session, media = media_session(engine)
    session.submit(ce.ResponseCreate(type="response.create"))
    await media.wait_for("response.content_part.added")
    while not media.audio:
        await asyncio.sleep(0.01)
    response_id = media.audio[0].response_id
    session.report_playback(Playback(response_id, played_ms=150, finished=True))
    done = media.of_type("response.done")[0]
    assert done["response"]["status"] == "cancelled"
    truncated = media.of_type("conversation.item.truncated")[0]
    assert truncated["audio_end_ms"] == 150
    count = len(media.audio)
    await asyncio.sleep(0.1)
    assert len(media.audio) == count, "no audio after the listener stopped"
    valid(media)
    session.close()


async def test_engine_session_per_session_and_closed_with_it() -> None:
    engine = ScriptedEngine()
    one, _ = media_session(engine)
    two, _ = media_session(engine)
    assert [info.session_id for info in engine.opened] == [one.id, two.id]
    assert one.engine.vad is not two.engine.vad
    one.close()
    two.close()
    assert engine.closed_sessions == 2


async def test_an_engine_without_transcription_still_commits_turns() -> None:
    """Transcription is a capability: without it the turn is committed and answered, with no STT run."""
    engine = ScriptedEngine(needs_transcripts=False)
    session, media = media_session(engine)
    feed(session, np.concatenate([silence(200, 16_000), tone(600, 16_000), silence(700, 16_000)]), 16_000)
    await media.wait_for("response.done")
    assert engine.transcriptions == []
    session.close()
