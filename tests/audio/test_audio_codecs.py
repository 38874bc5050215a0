"""PCM16 and G.711 codecs: exact against the ITU-T G.191 reference, round trips, oracles."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hearth.server.audio import codecs

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


# ----------------------------------------------------------------------------- the reference
# A line-by-line port of ulaw_compress / alaw_compress / *_expand from the ITU-T G.191
# Software Tools Library (g711.c), kept scalar and branchy on purpose: the module under test
# is table-driven and vectorized, so the two share no code.


def ref_ulaw_compress(x: int) -> int:
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    if absno > 0x1FFF:
        absno = 0x1FFF
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x0008 - segno
    low_nibble = 0x000F - ((absno >> segno) & 0x000F)
    out = (high_nibble << 4) | low_nibble
    return out | 0x0080 if x >= 0 else out


def ref_alaw_compress(x: int) -> int:
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x0080
    return ix ^ 0x0055


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x0080 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x0007
    segment = exponent + 1
    mantissa &= 0x000F
    step = 4 << segment
    return sign * ((0x0080 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x0055) & 0x007F
    iexp = ix >> 4
    mant = ix & 0x000F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x0008
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


def codes(data: bytes) -> list[int]:
    return list(data)


# ----------------------------------------------------------------------------- G.711 exactness


def test_ulaw_encode_matches_the_reference_for_every_sample() -> None:
    assert codes(codecs.ulaw_encode(ALL_INT16)) == [ref_ulaw_compress(int(x)) for x in ALL_INT16]


def test_alaw_encode_matches_the_reference_for_every_sample() -> None:
    assert codes(codecs.alaw_encode(ALL_INT16)) == [ref_alaw_compress(int(x)) for x in ALL_INT16]


def test_decoders_match_the_reference_for_every_code() -> None:
    assert codecs.ulaw_decode(ALL_CODES).tolist() == [ref_ulaw_expand(c) for c in range(256)]
    assert codecs.alaw_decode(ALL_CODES).tolist() == [ref_alaw_expand(c) for c in range(256)]


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (1, 0xFF, 0xD5),
        (-1, 0x7F, 0x55),  # one's complement: -1 is "negative zero"
        (-5, 0x7E, 0x55),
        (100, 0xF2, 0xD3),
        (-100, 0x73, 0x53),
        (1000, 0xCE, 0xFA),
        (-1000, 0x4E, 0x7A),
        (8000, 0xA0, 0x8A),
        (-8000, 0x20, 0x0A),
        (-31612, 0x01, 0x2B),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
    ],
)
def test_known_encodings(sample: int, ulaw: int, alaw: int) -> None:
    samples = np.array([sample], dtype=np.int16)
    assert codecs.ulaw_encode(samples) == bytes([ulaw])
    assert codecs.alaw_encode(samples) == bytes([alaw])


@pytest.mark.parametrize(
    ("code", "ulaw", "alaw"),
    [
        (0x00, -32124, -5504),
        (0x10, -15996, -2752),
        (0x5A, -556, -248),
        (0x7F, 0, -848),
        (0x80, 32124, 5504),
        (0x9C, 9852, 3264),
        (0xE7, 260, 1184),
        (0xFF, 0, 848),
        (0x55, -716, -8),
        (0xD5, 716, 8),
        (0x2A, -5372, -32256),
        (0xAA, 5372, 32256),
    ],
)
def test_known_decodings(code: int, ulaw: int, alaw: int) -> None:
    assert codecs.ulaw_decode(bytes([code])).tolist() == [ulaw]
    assert codecs.alaw_decode(bytes([code])).tolist() == [alaw]


def test_negative_samples_mirror_positive_ones() -> None:
    """G.711 codes -x-1 (one's complement) like x, with the sign bit cleared."""
    positive = ALL_INT16[ALL_INT16 >= 0]
    mirrored = ~positive
    for encode in (codecs.ulaw_encode, codecs.alaw_encode):
        pos = np.frombuffer(encode(positive), dtype=np.uint8)
        neg = np.frombuffer(encode(mirrored), dtype=np.uint8)
        if encode is codecs.ulaw_encode:
            assert np.array_equal(neg, pos & 0x7F)
        else:  # A-law also toggles the even bits, which leaves the sign bit alone
            assert np.array_equal(neg, pos ^ 0x80)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_every_code_survives_decode_then_encode(law: str) -> None:
    encode, decode = getattr(codecs, f"{law}_encode"), getattr(codecs, f"{law}_decode")
    again = codes(encode(decode(ALL_CODES)))
    expected = list(range(256))
    if law == "ulaw":
        expected[0x7F] = 0xFF  # μ-law's two zeros decode to 0, which encodes as +0
    assert again == expected


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_quantization_is_monotonic_and_idempotent(law: str) -> None:
    encode, decode = getattr(codecs, f"{law}_encode"), getattr(codecs, f"{law}_decode")
    once = decode(encode(ALL_INT16))
    assert np.all(np.diff(once.astype(np.int32)) >= 0)
    assert np.array_equal(decode(encode(once)), once)
    error = np.abs(once.astype(np.int32) - ALL_INT16)
    assert error[np.abs(ALL_INT16.astype(np.int32)) < 30000].max() <= 512  # half the largest step


def test_encoders_take_strided_views_and_refuse_other_dtypes() -> None:
    samples = ALL_INT16[::7]
    assert codecs.ulaw_encode(samples) == codecs.ulaw_encode(samples.copy())
    assert codecs.alaw_encode(samples) == codecs.alaw_encode(samples.copy())
    for encode in (codecs.ulaw_encode, codecs.alaw_encode, codecs.int16_to_pcm16):
        with pytest.raises(TypeError, match="int16"):
            encode(np.zeros(4, dtype=np.int32))
        with pytest.raises(TypeError, match="int16"):
            encode(np.zeros(4, dtype=np.float32))


# ----------------------------------------------------------------------------- audioop as an oracle


@pytest.fixture
def audioop():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip("audioop")  # gone in Python 3.13


def test_alaw_and_decoders_agree_with_audioop(audioop) -> None:  # type: ignore[no-untyped-def]
    pcm = ALL_INT16.astype("<i2").tobytes()
    assert codecs.alaw_encode(ALL_INT16) == audioop.lin2alaw(pcm, 2)
    assert codecs.int16_to_pcm16(codecs.ulaw_decode(ALL_CODES)) == audioop.ulaw2lin(ALL_CODES, 2)
    assert codecs.int16_to_pcm16(codecs.alaw_decode(ALL_CODES)) == audioop.alaw2lin(ALL_CODES, 2)


def test_ulaw_agrees_with_audioop_except_its_twos_complement_negatives(audioop) -> None:  # type: ignore[no-untyped-def]
    ours = np.frombuffer(codecs.ulaw_encode(ALL_INT16), dtype=np.uint8)
    theirs = np.frombuffer(audioop.lin2ulaw(ALL_INT16.astype("<i2").tobytes(), 2), dtype=np.uint8)
    differ = ALL_INT16[ours != theirs]
    assert np.all(differ < 0)  # all nonnegative samples match exactly
    assert len(differ) == 508
    assert np.all(np.abs(ours.astype(int) - theirs)[ours != theirs] == 1)  # one step at a boundary


# ----------------------------------------------------------------------------- PCM16


def test_pcm16_is_little_endian() -> None:
    assert codecs.pcm16_to_int16(b"\x01\x00\x00\x80\xff\x7f\xff\xff").tolist() == [1, -32768, 32767, -1]
    assert codecs.int16_to_pcm16(np.array([1, -32768, 32767, -1], dtype=np.int16)) == b"\x01\x00\x00\x80\xff\x7f\xff\xff"


def test_pcm16_round_trip_and_writable_result() -> None:
    data = codecs.int16_to_pcm16(ALL_INT16)
    samples = codecs.pcm16_to_int16(data)
    assert samples.dtype == np.int16 and np.array_equal(samples, ALL_INT16)
    samples[0] = 0  # a copy, not a read-only view of the bytes
    assert codecs.pcm16_to_int16(memoryview(data)).tolist()[:1] == [-32768]
    assert codecs.pcm16_to_int16(b"").size == 0


def test_pcm16_needs_whole_samples() -> None:
    with pytest.raises(ValueError, match="even number of bytes"):
        codecs.pcm16_to_int16(b"\x00\x00\x00")


def test_float_conversion_is_exact_and_clips() -> None:
    floats = codecs.int16_to_float32(ALL_INT16)
    assert floats.dtype == np.float32 and floats.min() == -1.0 and floats.max() < 1.0
    assert np.array_equal(codecs.float32_to_int16(floats), ALL_INT16)
    assert codecs.float32_to_int16(np.array([-2.0, 2.0, 0.5])).tolist() == [-32768, 32767, 16384]
