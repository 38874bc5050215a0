"""The Realtime API's audio formats and the conversions between their bytes and samples.

All are mono. `audio/pcm` is PCM16 little-endian at 24 kHz (the only PCM rate upstream
accepts); `audio/pcmu` and `audio/pcma` are G.711 at 8 kHz. Everything past the wire works
on int16 arrays at the format's own rate; resampling is `resample.StreamResampler`'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from hearth.server.audio import codecs

FormatType = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]

Decoder = Callable[[bytes], NDArray[np.int16]]
Encoder = Callable[[NDArray[np.int16]], bytes]

_CODECS: dict[str, tuple[Decoder, Encoder]] = {
    "audio/pcm": (codecs.pcm16_to_int16, codecs.int16_to_pcm16),
    "audio/pcmu": (codecs.ulaw_decode, codecs.ulaw_encode),
    "audio/pcma": (codecs.alaw_decode, codecs.alaw_encode),
}


@dataclass(frozen=True)
class AudioFormat:
    type: FormatType
    rate: int

    def __post_init__(self) -> None:
        if self.type not in _CODECS:
            raise ValueError(f"unknown audio format {self.type!r}; expected one of {', '.join(_CODECS)}")
        if self.rate <= 0:
            raise ValueError(f"sample rate must be positive, got {self.rate}")

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.type == "audio/pcm" else 1


PCM = AudioFormat("audio/pcm", 24_000)
PCMU = AudioFormat("audio/pcmu", 8_000)
PCMA = AudioFormat("audio/pcma", 8_000)

_BY_TYPE = {fmt.type: fmt for fmt in (PCM, PCMU, PCMA)}


def format_for(type_: str) -> AudioFormat:
    """The Realtime format named `type_` (e.g. from `session.audio.input.format.type`)."""
    try:
        return _BY_TYPE[type_]
    except KeyError:
        raise ValueError(f"unknown audio format {type_!r}; expected one of {', '.join(_BY_TYPE)}") from None


def decode(fmt: AudioFormat, data: bytes | bytearray | memoryview) -> NDArray[np.int16]:
    """Wire bytes to int16 samples at `fmt.rate`. PCM needs whole samples (an even byte count)."""
    return _CODECS[fmt.type][0](data)


def encode(fmt: AudioFormat, samples: NDArray[np.int16]) -> bytes:
    """int16 samples at `fmt.rate` to wire bytes."""
    return _CODECS[fmt.type][1](samples)


def bytes_per_ms(fmt: AudioFormat) -> float:
    """Bytes one millisecond takes on the wire (48 for 24 kHz PCM, 8 for G.711)."""
    return fmt.rate * fmt.bytes_per_sample / 1000


def duration_ms(fmt: AudioFormat, nbytes: int) -> float:
    """Milliseconds of audio in `nbytes` of this format (for `audio_end_ms`, truncation)."""
    return nbytes / bytes_per_ms(fmt)
