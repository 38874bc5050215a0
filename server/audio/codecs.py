"""Sample codecs for the Realtime wire formats: PCM16 little-endian and G.711 (μ-law, A-law).

G.711 follows the ITU-T G.191 reference (`g711.c`) bit for bit: negative samples use the
one's complement, so -1 encodes to the negative-zero code. Python's old `audioop.lin2ulaw`
negates in two's complement instead and differs from the reference on 508 negative inputs;
A-law and both decoders agree with it. Encoding is one lookup in a 64 K table built once
from the reference rules, so it is exact and vectorized.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Int16Array = NDArray[np.int16]


# ----------------------------------------------------------------------------- PCM16


def pcm16_to_int16(data: bytes | bytearray | memoryview) -> Int16Array:
    """Little-endian PCM16 bytes to a (writable) int16 array."""
    if len(data) % 2:
        raise ValueError(f"PCM16 needs an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def int16_to_pcm16(samples: Int16Array) -> bytes:
    """An int16 array to little-endian PCM16 bytes."""
    return _require_int16(samples).astype("<i2", copy=False).tobytes()


def int16_to_float32(samples: Int16Array) -> NDArray[np.float32]:
    """int16 to float32 in [-1, 1), the range models expect."""
    return _require_int16(samples).astype(np.float32) / np.float32(32768.0)


def float32_to_int16(samples: NDArray[np.floating]) -> Int16Array:
    """float [-1, 1] to int16, rounded and clipped (the inverse of `int16_to_float32`)."""
    scaled = np.rint(np.asarray(samples, dtype=np.float32) * np.float32(32768.0))
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def _require_int16(samples: Int16Array) -> Int16Array:
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        # Silently casting int32/float input would wrap or truncate the audio.
        raise TypeError(f"expected int16 samples, got {samples.dtype}")
    return samples


# ----------------------------------------------------------------------------- G.711 tables


def _bit_length(values: NDArray[np.int32], max_bits: int) -> NDArray[np.int32]:
    return sum(((values >> k) > 0).astype(np.int32) for k in range(max_bits))


def _ulaw_encode_table() -> NDArray[np.uint8]:
    x = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    # 14-bit magnitude plus 33, the offset between the μ-law and A-law decision thresholds.
    absno = np.minimum((np.where(x < 0, ~x, x) >> 2) + 33, 0x1FFF)
    segno = 1 + _bit_length(absno >> 6, 7)
    low = 0x0F - ((absno >> segno) & 0x0F)
    code = ((0x08 - segno) << 4) | low
    return (code | np.where(x >= 0, 0x80, 0)).astype(np.uint8)


def _alaw_encode_table() -> NDArray[np.uint8]:
    x = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    ix = np.where(x < 0, ~x, x) >> 4  # 12-bit magnitude, 0..2047
    exponent = np.maximum(_bit_length(ix, 11) - 4, 0)
    mantissa = np.where(exponent > 0, (ix >> np.maximum(exponent - 1, 0)) & 0x0F, ix)
    code = (exponent << 4) | mantissa | np.where(x >= 0, 0x80, 0)
    return (code ^ 0x55).astype(np.uint8)


def _ulaw_decode_table() -> NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32)
    inverted = ~code
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    step = 4 << (exponent + 1)
    magnitude = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    return np.where(code < 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32)
    ix = (code ^ 0x55) & 0x7F
    exponent = ix >> 4
    mantissa = np.where(exponent > 0, (ix & 0x0F) + 16, ix & 0x0F)
    magnitude = ((mantissa << 4) + 8) << np.maximum(exponent - 1, 0)
    return np.where(code > 0x7F, magnitude, -magnitude).astype(np.int16)


_ULAW_ENCODE = _ulaw_encode_table()
_ALAW_ENCODE = _alaw_encode_table()
_ULAW_DECODE = _ulaw_decode_table()
_ALAW_DECODE = _alaw_decode_table()


# ----------------------------------------------------------------------------- G.711


def ulaw_encode(samples: Int16Array) -> bytes:
    """int16 samples to G.711 μ-law bytes (one per sample)."""
    return _ULAW_ENCODE[_require_int16(samples).view(np.uint16)].tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview) -> Int16Array:
    """G.711 μ-law bytes to int16 samples (16-bit scale, ±32124 at most)."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(samples: Int16Array) -> bytes:
    """int16 samples to G.711 A-law bytes (one per sample)."""
    return _ALAW_ENCODE[_require_int16(samples).view(np.uint16)].tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> Int16Array:
    """G.711 A-law bytes to int16 samples (16-bit scale, ±32256 at most)."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]
