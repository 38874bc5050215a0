"""The input audio buffer, kept twice: as sent (for retrieve) and at 16 kHz (for VAD/STT)."""

from __future__ import annotations

import numpy as np

from .interfaces import PIPELINE_RATE


class InputBuffer:
    """Audio appended since the last commit or clear.

    Positions are 16 kHz sample offsets from the start of the session's input
    audio, the same clock the turn detector uses, so a VAD position can cut
    the buffer directly.
    """

    def __init__(self, wire_rate: int) -> None:
        self.wire_rate = wire_rate
        self.start = 0
        self._wire: list[np.ndarray] = []
        self._pipe: list[np.ndarray] = []
        self._pipe_len = 0

    @property
    def end(self) -> int:
        return self.start + self._pipe_len

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self._pipe_len / PIPELINE_RATE

    @property
    def wire_duration_ms(self) -> float:
        """Duration as sent; the 16 kHz copy lags it by the resampler's few-ms delay."""
        return 1000.0 * sum(len(chunk) for chunk in self._wire) / self.wire_rate

    def append(self, wire: np.ndarray, pipe: np.ndarray) -> None:
        self._wire.append(wire)
        self._pipe.append(pipe)
        self._pipe_len += len(pipe)

    def _joined(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self._pipe) > 1:
            self._wire = [np.concatenate(self._wire)]
            self._pipe = [np.concatenate(self._pipe)]
        wire = self._wire[0] if self._wire else np.zeros(0, dtype=np.int16)
        pipe = self._pipe[0] if self._pipe else np.zeros(0, dtype=np.float32)
        return wire, pipe

    def _wire_index(self, position: int, wire_len: int) -> int:
        offset = position - self.start
        if offset >= self._pipe_len:
            return wire_len
        return min(wire_len, max(0, round(offset * self.wire_rate / PIPELINE_RATE)))

    def slice(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Audio between two positions: (int16 at the wire rate, float32 at 16 kHz)."""
        wire, pipe = self._joined()
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return np.zeros(0, dtype=np.int16), np.zeros(0, dtype=np.float32)
        return (
            wire[self._wire_index(start, len(wire)) : self._wire_index(end, len(wire))],
            pipe[start - self.start : end - self.start],
        )

    def drop_until(self, position: int) -> None:
        """Forget audio before `position` (committed, or silence older than the prefix padding)."""
        if position <= self.start:
            return
        wire, pipe = self._joined()
        cut_wire = self._wire_index(position, len(wire))
        cut = min(position - self.start, self._pipe_len)
        # Copies, not views: a view would keep the dropped audio's memory alive.
        self._wire = [wire[cut_wire:].copy()]
        self._pipe = [pipe[cut:].copy()]
        self._pipe_len -= cut
        self.start += cut

    def clear(self) -> None:
        self.start = self.end
        self._wire, self._pipe, self._pipe_len = [], [], 0
