"""Piper TTS with the bundled joe voice, streamed sentence by sentence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from tests.engines.conftest import PiperRuns

from hearth.server.engines.cascade.errors import ModelNotAvailableError
from hearth.server.engines.cascade.tts import (
    OPENAI_VOICES,
    PiperConfig,
    PiperSynthesizer,
    bundled_voice_path,
    length_scale_for,
)

THREE_SENTENCES = "The kitchen light is on. The hall lamp is off. The door is locked."
MANY_SENTENCES = " ".join(f"This is sentence number {n} of a long reply." for n in range(1, 9))


async def collect(synth: PiperSynthesizer, text: str, voice: str = "alloy", speed: float = 1.0) -> list[np.ndarray]:
    return [chunk async for chunk in synth.synthesize(text, voice, speed)]


async def test_streams_one_int16_chunk_per_sentence(synthesizer: PiperSynthesizer) -> None:
    chunks = await collect(synthesizer, THREE_SENTENCES)
    assert len(chunks) == 3
    assert all(c.dtype == np.int16 and c.ndim == 1 and c.size > 0 for c in chunks)
    assert synthesizer.sample_rate_for("alloy") == 22050
    seconds = sum(c.size for c in chunks) / 22050
    assert 3.0 < seconds < 10.0


async def first_sentence_with_the_second_held(
    synthesizer: PiperSynthesizer, gate: PiperRuns
) -> tuple[AsyncIterator[np.ndarray], np.ndarray]:
    """Start MANY_SENTENCES; return the stream and its first chunk once piper is held on sentence 2."""
    gate.hold = 2
    stream = synthesizer.synthesize(MANY_SENTENCES, "alloy", 1.0)
    first = await asyncio.wait_for(anext(stream), 30)
    assert first.size > 0
    assert await asyncio.to_thread(gate.held.wait, 30), "the worker went on to sentence 2"
    return stream, first


async def test_first_chunk_arrives_before_synthesis_finishes(
    synthesizer: PiperSynthesizer, piper_runs: PiperRuns
) -> None:
    # Sentence 2 is held: the first sentence's audio is handed over while synthesis is still going.
    stream, _first = await first_sentence_with_the_second_held(synthesizer, piper_runs)
    assert piper_runs.runs == 2
    piper_runs.release.set()
    rest = [chunk async for chunk in stream]
    assert len(rest) == 7 and piper_runs.runs == 8


async def test_closing_the_stream_stops_synthesis_after_the_current_sentence(
    synthesizer: PiperSynthesizer, piper_runs: PiperRuns
) -> None:
    stream, _first = await first_sentence_with_the_second_held(synthesizer, piper_runs)
    # The worker is on sentence 2 (held there). Close the stream while it is in progress:
    # the close's first step sets the stop flag, then waits for the worker.
    closing = asyncio.create_task(stream.aclose())
    await asyncio.sleep(0)
    assert not closing.done() and synthesizer.active_streams == 1, "the close waits for the worker"
    piper_runs.release.set()
    await asyncio.wait_for(closing, 30)  # returns once the worker has let go
    assert synthesizer.active_streams == 0
    runs = piper_runs.runs
    assert runs == 2, f"the sentence in progress finishes, none after it starts (of 8): {runs} ran"


async def test_speed_changes_duration(synthesizer: PiperSynthesizer) -> None:
    text = "Okay, I turned on the kitchen light."

    def seconds(chunks: list[np.ndarray]) -> float:
        return sum(c.size for c in chunks) / 22050

    normal = seconds(await collect(synthesizer, text, speed=1.0))
    fast = seconds(await collect(synthesizer, text, speed=1.5))
    slow = seconds(await collect(synthesizer, text, speed=0.5))
    # Not exactly 1/speed: piper's noise varies durations and pauses scale less.
    assert 0.55 < fast / normal < 0.85
    assert 1.5 < slow / normal < 2.3


def test_speed_maps_to_a_clamped_length_scale() -> None:
    assert length_scale_for(1.0, 1.0) == 1.0
    assert length_scale_for(1.0, 2.0) == pytest.approx(1 / 1.5)
    assert length_scale_for(1.0, 0.1) == pytest.approx(4.0)
    assert length_scale_for(1.2, 0.5) == pytest.approx(2.4)


def test_every_voice_name_maps_to_the_default_voice_unless_configured(tmp_path: Path) -> None:
    default = bundled_voice_path()
    plain = PiperSynthesizer(PiperConfig())
    for name in (*OPENAI_VOICES, "my-custom-voice", ""):
        assert plain.voice_path(name) == default

    custom = str(tmp_path / "custom.onnx")
    configured = PiperSynthesizer(PiperConfig(voices={"echo": custom}))
    assert configured.voice_path("echo") == Path(custom)
    assert configured.voice_path("alloy") == default

    by_name = PiperSynthesizer(PiperConfig(voices={"house": custom}, default_voice="house"))
    assert by_name.voice_path("shimmer") == Path(custom)
    assert by_name.voice_path("house") == Path(custom)


def test_a_missing_voice_file_is_a_clear_error(tmp_path: Path) -> None:
    synth = PiperSynthesizer(PiperConfig(voices={"echo": str(tmp_path / "gone.onnx")}))
    with pytest.raises(ModelNotAvailableError, match="gone.onnx"):
        synth.sample_rate_for("echo")
    with pytest.raises(ModelNotAvailableError, match="gone.onnx"):
        synth.load("echo")
    assert synth.sample_rate_for("alloy") == 22050


async def test_a_configured_voice_is_loaded_from_its_path(executor) -> None:
    synth = PiperSynthesizer(
        PiperConfig(voices={"cedar": str(bundled_voice_path())}, threads=1), executor=executor
    )
    await synth.warm_up()
    chunks = await collect(synth, "Hello there.", voice="cedar")
    assert len(chunks) == 1 and chunks[0].size > 10_000


async def test_bulk_work_speaks_on_its_own_session_with_fewer_threads(executor) -> None:
    """An out-of-band response (bulk) must not run piper on every core: its own ONNX session, `bulk_threads`."""
    from hearth.server.session.work import WORK_OWNER, WorkOwner

    synth = PiperSynthesizer(PiperConfig(threads=2, bulk_threads=1), executor=executor)
    live = await collect(synth, "Hello there, this is a longer piece.")
    token = WORK_OWNER.set(WorkOwner("sess_bulk", "bulk"))
    try:
        bulk = await collect(synth, "Hello there, this is a longer piece.")
    finally:
        WORK_OWNER.reset(token)
    threads = {key[1]: voice.session.get_session_options().intra_op_num_threads for key, voice in synth._voices.items()}
    assert threads == {2: 2, 1: 1}, "live on the configured threads, bulk on one, two sessions"
    a, b = np.concatenate(live).astype(float), np.concatenate(bulk).astype(float)
    assert len(a) == len(b) and np.mean(np.abs(a - b)) < 0.01 * np.mean(np.abs(a)), "the same speech either way"
    same = PiperSynthesizer(PiperConfig(threads=2, bulk_threads=None), executor=executor)
    token = WORK_OWNER.set(WorkOwner("sess_bulk", "bulk"))
    try:
        await collect(same, "Hello there, this is a longer piece.")
    finally:
        WORK_OWNER.reset(token)
    assert [key[1] for key in same._voices] == [2], "bulk_threads null: the live session"
