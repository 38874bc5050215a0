"""The 20 ms frame clock shared by the reply track, the tests' microphone and the benchmark."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from hearth.server.transports.media_clock import FRAME_SAMPLES, MAX_LAG_S, MEDIA_RATE, FrameClock, audio_frame


async def test_frames_are_released_on_the_wall_clock() -> None:
    clock = FrameClock()
    assert clock.pts == -FRAME_SAMPLES
    started = time.monotonic()
    assert await clock.next() == 0  # the first frame is due at once
    assert time.monotonic() - started < 0.01
    for n in range(1, 6):
        assert await clock.next() == n * FRAME_SAMPLES
    elapsed = time.monotonic() - started
    assert 0.095 <= elapsed < 0.3, elapsed  # five more frames: 100 ms, not a burst (slack for a loaded machine)


async def test_a_stalled_loop_moves_the_schedule_instead_of_bursting() -> None:
    clock = FrameClock()
    await clock.next()
    time.sleep(MAX_LAG_S + 0.1)  # the event loop was blocked
    late = time.monotonic()
    await clock.next()  # overdue: released at once
    await clock.next()  # the schedule starts again from the stall: one frame later, not at once
    assert time.monotonic() - late >= 0.018
    assert clock.pts == 2 * FRAME_SAMPLES  # no frame was skipped


def test_audio_frame_is_mono_s16_numbered_in_samples() -> None:
    frame = audio_frame(np.arange(FRAME_SAMPLES, dtype=np.int16), 4 * FRAME_SAMPLES)
    assert (frame.format.name, frame.layout.name, frame.sample_rate) == ("s16", "mono", MEDIA_RATE)
    assert frame.pts == 4 * FRAME_SAMPLES and frame.time_base == Fraction(1, MEDIA_RATE)
    assert frame.to_ndarray().reshape(-1)[5] == 5
