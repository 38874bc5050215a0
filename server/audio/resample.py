"""A streaming sample-rate converter for audio that arrives in chunks.

Resampling each chunk on its own restarts the filter at every boundary, which clicks; one
`soxr.ResampleStream` per stream keeps the filter state across chunks instead. Typical uses:
a client's 24 kHz (or 8 kHz G.711) input to the 16 kHz pipeline, piper's 22.05 kHz output to
the session's 24 kHz.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import soxr
from numpy.typing import NDArray

SampleType = Literal["int16", "float32"]
Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]


class StreamResampler:
    """Mono `in_rate` → `out_rate` for one continuous stream (int16 or float32 in and out)."""

    def __init__(
        self, in_rate: int, out_rate: int, *, dtype: SampleType = "int16", quality: Quality = "HQ"
    ) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} → {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.dtype = np.dtype(dtype)
        self.quality = quality
        self._stream = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream | None:
        # Matching rates pass chunks through untouched: no filter delay, no copy. A new
        # stream (~0.05 ms) rather than `clear()`, which keeps int16 dither state, so a
        # restarted stream gives exactly what a fresh one would.
        if self.in_rate == self.out_rate:
            return None
        return soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype=self.dtype.name, quality=self.quality)

    def process(self, chunk: NDArray, last: bool = False) -> NDArray:
        """Resample the next chunk; `last=True` flushes the filter's tail and starts a new stream.

        Output length varies per chunk (the filter holds a few samples back); across a whole
        stream it totals `len(input) * out_rate / in_rate`, give or take one sample.
        """
        chunk = np.asarray(chunk)
        if chunk.dtype != self.dtype or chunk.ndim != 1:
            raise TypeError(f"expected 1-D {self.dtype} samples, got {chunk.ndim}-D {chunk.dtype}")
        if self._stream is None:
            return chunk
        out = self._stream.resample_chunk(np.ascontiguousarray(chunk), last=bool(last))
        if last:
            self._stream = self._new_stream()  # soxr refuses input after `last`
        return out

    def reset(self) -> None:
        """Drop buffered input (e.g. on barge-in), so the next chunk starts a fresh stream."""
        self._stream = self._new_stream()
