"""The streaming resampler: chunking must not change the result (no clicks at boundaries)."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from hearth.server.audio.resample import StreamResampler


def sine(rate: int, seconds: float = 1.0, hz: float = 440.0, amplitude: float = 10_000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * hz * t)


def in_chunks(resampler: StreamResampler, samples: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, start, i = [], 0, 0
    while start < len(samples):
        end = min(start + sizes[i % len(sizes)], len(samples))
        out.append(resampler.process(samples[start:end], last=end == len(samples)))
        start, i = end, i + 1
    return np.concatenate(out)


@pytest.mark.parametrize(("rate_in", "rate_out"), [(24_000, 16_000), (8_000, 16_000), (22_050, 24_000), (16_000, 8_000)])
def test_chunked_output_equals_one_shot(rate_in: int, rate_out: int) -> None:
    x = sine(rate_in).astype(np.int16)
    sizes = list(np.random.default_rng(0).integers(1, 900, size=64))
    y = in_chunks(StreamResampler(rate_in, rate_out), x, sizes)
    reference = soxr.resample(x, rate_in, rate_out)
    assert y.dtype == np.int16
    assert abs(len(y) - len(x) * rate_out / rate_in) <= 1
    n = min(len(y), len(reference))
    assert np.abs(y[:n].astype(int) - reference[:n]).max() <= 2  # int16 rounding only


def test_no_clicks_at_chunk_boundaries() -> None:
    """20 ms chunks of a 440 Hz tone come out as the tone; resampling each chunk alone would not."""
    x = sine(24_000).astype(np.int16)
    y = in_chunks(StreamResampler(24_000, 16_000), x, [480])
    ideal = sine(16_000)
    inner = slice(200, -200)  # the filter's ramp at the very start and end
    assert np.abs(y[inner] - ideal[inner]).max() < 5
    naive = np.concatenate([soxr.resample(x[i : i + 480], 24_000, 16_000) for i in range(0, len(x), 480)])
    assert np.abs(naive[inner] - ideal[inner]).max() > 500  # what the stream avoids


def test_float32_stream() -> None:
    x = (sine(22_050) / 32768).astype(np.float32)
    y = in_chunks(StreamResampler(22_050, 24_000, dtype="float32"), x, [1024])
    assert y.dtype == np.float32
    reference = soxr.resample(x, 22_050, 24_000)
    n = min(len(y), len(reference))
    np.testing.assert_allclose(y[:n], reference[:n], atol=1e-5)


def test_matching_rates_pass_through() -> None:
    resampler = StreamResampler(24_000, 24_000)
    chunk = np.arange(100, dtype=np.int16)
    assert resampler.process(chunk) is chunk
    assert resampler.process(chunk, last=True) is chunk


def test_last_flushes_and_the_next_call_starts_a_new_stream() -> None:
    x = sine(24_000, 0.2).astype(np.int16)
    resampler = StreamResampler(24_000, 16_000)
    first = resampler.process(x, last=True)
    second = resampler.process(x, last=True)
    assert len(first) == len(x) * 2 // 3
    assert np.array_equal(first, second)


def test_reset_forgets_buffered_input() -> None:
    x = sine(24_000, 0.2).astype(np.int16)
    resampler = StreamResampler(24_000, 16_000)
    resampler.process(np.full(4800, 20_000, dtype=np.int16))  # a barge-in leaves this behind
    resampler.reset()
    assert np.array_equal(resampler.process(x, last=True), StreamResampler(24_000, 16_000).process(x, last=True))


def test_empty_chunks_are_fine() -> None:
    resampler = StreamResampler(24_000, 16_000)
    assert resampler.process(np.zeros(0, dtype=np.int16)).size == 0


def test_wrong_input_is_refused() -> None:
    resampler = StreamResampler(24_000, 16_000)
    with pytest.raises(TypeError, match="int16"):
        resampler.process(np.zeros(10, dtype=np.float32))
    with pytest.raises(TypeError, match="1-D"):
        resampler.process(np.zeros((10, 2), dtype=np.int16))
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 16_000)
