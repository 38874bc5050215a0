"""The Realtime audio formats: bytes <-> int16 samples, sizes and durations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hearth.server.audio import codecs
from hearth.server.audio.formats import (
    PCM,
    PCMA,
    PCMU,
    AudioFormat,
    bytes_per_ms,
    decode,
    duration_ms,
    encode,
    format_for,
)

SAMPLES = np.array([0, 1, -1, 1000, -1000, 32767, -32768], dtype=np.int16)


def test_the_three_realtime_formats() -> None:
    assert (PCM.type, PCM.rate, PCM.bytes_per_sample) == ("audio/pcm", 24_000, 2)
    assert (PCMU.type, PCMU.rate, PCMU.bytes_per_sample) == ("audio/pcmu", 8_000, 1)
    assert (PCMA.type, PCMA.rate, PCMA.bytes_per_sample) == ("audio/pcma", 8_000, 1)
    assert [format_for(t) for t in ("audio/pcm", "audio/pcmu", "audio/pcma")] == [PCM, PCMU, PCMA]


def test_formats_are_frozen_values() -> None:
    assert AudioFormat("audio/pcm", 24_000) == PCM and hash(AudioFormat("audio/pcm", 24_000)) == hash(PCM)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PCM.rate = 16_000  # type: ignore[misc]


def test_unknown_formats_are_refused() -> None:
    with pytest.raises(ValueError, match="audio/opus"):
        format_for("audio/opus")
    with pytest.raises(ValueError, match="audio/opus"):
        AudioFormat("audio/opus", 48_000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        AudioFormat("audio/pcm", 0)


def test_pcm_is_pcm16_little_endian() -> None:
    data = encode(PCM, SAMPLES)
    assert data == SAMPLES.astype("<i2").tobytes()
    assert np.array_equal(decode(PCM, data), SAMPLES)
    with pytest.raises(ValueError):
        decode(PCM, data[:-1])


@pytest.mark.parametrize(("fmt", "law"), [(PCMU, "ulaw"), (PCMA, "alaw")])
def test_g711_formats_use_the_g711_codecs(fmt: AudioFormat, law: str) -> None:
    data = encode(fmt, SAMPLES)
    assert len(data) == len(SAMPLES)
    assert data == getattr(codecs, f"{law}_encode")(SAMPLES)
    assert np.array_equal(decode(fmt, data), getattr(codecs, f"{law}_decode")(data))
    assert decode(fmt, data).dtype == np.int16


@pytest.mark.parametrize("fmt", [PCM, PCMU, PCMA])
def test_sizes_and_durations(fmt: AudioFormat) -> None:
    twenty_ms = encode(fmt, np.zeros(fmt.rate // 50, dtype=np.int16))
    assert duration_ms(fmt, len(twenty_ms)) == 20
    assert bytes_per_ms(fmt) * 20 == len(twenty_ms)


def test_known_sizes() -> None:
    assert (bytes_per_ms(PCM), bytes_per_ms(PCMU), bytes_per_ms(PCMA)) == (48, 8, 8)
    assert duration_ms(PCM, 4800) == 100
    assert duration_ms(PCMU, 160) == 20
    assert duration_ms(PCM, 0) == 0
