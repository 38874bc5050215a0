"""Piper's short-piece cache: replies that open with "Okay." or "Sure," start with no model run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from hearth.server.engines.cascade import tts
from hearth.server.engines.cascade.tts import PiperSynthesizer


@pytest.fixture
def fresh(executor: ThreadPoolExecutor) -> PiperSynthesizer:
    """A synthesizer with an empty cache (the shared one's cache depends on the tests before)."""
    synth = PiperSynthesizer(executor=executor)
    synth.load("alloy")
    return synth


async def collect(synth: PiperSynthesizer, text: str, voice: str = "alloy", speed: float = 1.0) -> list[np.ndarray]:
    return [chunk async for chunk in synth.synthesize(text, voice, speed)]


async def test_a_short_piece_is_synthesized_once_then_replayed(fresh: PiperSynthesizer) -> None:
    first = await collect(fresh, "Sure,")
    again = await collect(fresh, " Sure, ")  # the same piece as the splitter hands it out
    assert fresh.short_piece_counts == {"hits": 1, "misses": 1}
    assert len(first) == len(again) == 1
    assert np.array_equal(first[0], again[0])


async def test_voice_and_speed_are_part_of_the_key(fresh: PiperSynthesizer) -> None:
    normal = await collect(fresh, "Okay.")
    slow = await collect(fresh, "Okay.", speed=0.5)
    assert fresh.short_piece_counts == {"hits": 0, "misses": 2}
    assert slow[0].size > normal[0].size * 1.5


async def test_longer_pieces_are_not_cached(fresh: PiperSynthesizer) -> None:
    text = "The kitchen light is on now."
    assert len(text) > tts.SHORT_PIECE_CHARS
    await collect(fresh, text)
    await collect(fresh, text)
    assert fresh.short_piece_counts == {"hits": 0, "misses": 0}
    assert not fresh._short


async def test_an_abandoned_synthesis_is_not_cached(fresh: PiperSynthesizer) -> None:
    stream = fresh.synthesize("Okay. Sure.", "alloy", 1.0)
    await anext(stream)
    await stream.aclose()  # stopped after its first sentence: not the whole piece
    await collect(fresh, "Okay. Sure.")
    assert fresh.short_piece_counts == {"hits": 0, "misses": 2}


async def test_the_cache_keeps_the_most_recently_used(fresh: PiperSynthesizer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts, "SHORT_PIECE_CACHE", 2)
    for text in ("One.", "Two.", "One.", "Three."):  # "Two." is the least recently used when "Three." comes
        await collect(fresh, text)
    assert [key[2] for key in fresh._short] == ["One.", "Three."]
