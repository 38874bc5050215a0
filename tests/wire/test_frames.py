"""The binary audio frame header."""

from __future__ import annotations

import struct

import pytest

from hearth.wire import FLAG_END, HEADER_SIZE, AudioFrame, ProtocolError, new_session_id

SID = "00112233445566778899aabbccddeeff"
PCM_20MS = bytes(range(256)) * 2 + bytes(128)  # 640 bytes = 20 ms at 16 kHz PCM16


def test_header_layout_is_exact():
    raw = AudioFrame(SID, seq=0x01020304, pcm=PCM_20MS, end=True).to_bytes()
    assert HEADER_SIZE == 24
    assert raw[:2] == b"HF"
    assert raw[2] == 1  # frame version
    assert raw[3] == FLAG_END
    assert raw[4:8] == b"\x01\x02\x03\x04"  # big-endian sequence number
    assert raw[8:24] == bytes.fromhex(SID)
    assert raw[24:] == PCM_20MS
    assert len(raw) == 24 + 640


@pytest.mark.parametrize("end", [False, True])
@pytest.mark.parametrize("pcm", [b"", b"\x01\x00", PCM_20MS, PCM_20MS * 2])
def test_round_trip(pcm: bytes, end: bool):
    frame = AudioFrame(new_session_id(), seq=7, pcm=pcm, end=end)
    assert AudioFrame.from_bytes(frame.to_bytes()) == frame
    assert AudioFrame.from_bytes(bytearray(frame.to_bytes())) == frame
    assert AudioFrame.from_bytes(memoryview(frame.to_bytes())) == frame


def test_duration():
    assert AudioFrame(SID, 0, PCM_20MS).duration_ms == 20
    assert AudioFrame(SID, 0, PCM_20MS * 2).duration_ms == 40


def test_max_sequence_number():
    frame = AudioFrame(SID, seq=2**32 - 1)
    assert AudioFrame.from_bytes(frame.to_bytes()).seq == 2**32 - 1
    with pytest.raises(ProtocolError):
        AudioFrame(SID, seq=2**32)
    with pytest.raises(ProtocolError):
        AudioFrame(SID, seq=-1)


def test_reserved_flag_bits_are_ignored():
    """A newer sender may set flags this version does not know."""
    raw = bytearray(AudioFrame(SID, 1, PCM_20MS).to_bytes())
    raw[3] = 0b1000_0010
    frame = AudioFrame.from_bytes(bytes(raw))
    assert frame.end is False and frame.pcm == PCM_20MS
    raw[3] = 0b1000_0011
    assert AudioFrame.from_bytes(bytes(raw)).end is True


def _header(magic=b"HF", version=1, flags=0, seq=0, session=bytes.fromhex(SID)) -> bytes:
    return struct.pack("!2sBBI16s", magic, version, flags, seq, session)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"", "shorter than its header"),
        (b"HF\x01", "shorter than its header"),
        (_header()[:-1], "shorter than its header"),
        (_header(magic=b"RI") + PCM_20MS, "magic"),
        (b"RIFF" + bytes(40), "magic"),  # a WAV file is not a frame
        (_header(version=2) + PCM_20MS, "version"),
        (_header(version=0) + PCM_20MS, "version"),
        (_header() + b"\x00\x01\x02", "odd number of bytes"),
        (_header() + bytes(32002), "too long"),
    ],
)
def test_malformed_frames_raise(payload: bytes, needle: str):
    with pytest.raises(ProtocolError) as info:
        AudioFrame.from_bytes(payload, topic="hearth/v1/satellite/k/audio")
    assert needle in str(info.value)
    assert info.value.context["topic"] == "hearth/v1/satellite/k/audio"


def test_encoding_rejects_bad_session_ids():
    with pytest.raises(ProtocolError):
        AudioFrame("kitchen", 0, PCM_20MS)
    with pytest.raises(ProtocolError):
        AudioFrame(SID.upper(), 0, PCM_20MS)
