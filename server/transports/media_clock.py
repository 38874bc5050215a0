"""Real-time pacing and frames for WebRTC audio tracks (aiortc pulls a track's frames as fast as it can).

Hearth's reply track, the tests' microphone and the benchmark's client all hand aiortc
20 ms mono s16 frames; the first two must also pace them on the wall clock, because
aiortc's sender asks for the next frame as soon as the last one is encoded.
"""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np

#: Opus works at 48 kHz; 20 ms frames, as browsers send.
MEDIA_RATE = 48_000
FRAME_SAMPLES = 960
#: A clock this far behind (the event loop stalled) starts again from now rather than burst to catch up.
MAX_LAG_S = 0.2


class FrameClock:
    """The pts of each frame of a real-time track, released when that frame is due.

    The first frame is due at once; frame n is due n frame lengths later. A loop stall
    longer than MAX_LAG_S moves the schedule instead of sending the missed frames in a burst.
    """

    def __init__(self, rate: int = MEDIA_RATE, samples: int = FRAME_SAMPLES) -> None:
        self.rate = rate
        self.samples = samples
        self.time_base = fractions.Fraction(1, rate)
        self._start: float | None = None
        self._pts = -samples

    @property
    def pts(self) -> int:
        """The pts of the frame last released (-samples before the first)."""
        return self._pts

    async def next(self) -> int:
        """Wait until the next frame is due; its pts."""
        self._pts += self.samples
        now = time.monotonic()
        if self._start is None:
            self._start = now
            return self._pts
        wait = self._start + self._pts / self.rate - now
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -MAX_LAG_S:
            self._start = now - self._pts / self.rate
        return self._pts


def audio_frame(samples: np.ndarray, pts: int, rate: int = MEDIA_RATE) -> av.AudioFrame:
    """A mono s16 frame for aiortc's sender, numbered in samples."""
    frame = av.AudioFrame.from_ndarray(np.asarray(samples, dtype=np.int16).reshape(1, -1), format="s16",
                                       layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, rate)
    return frame
