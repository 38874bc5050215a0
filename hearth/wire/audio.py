"""Audio on the wire: the binary frame (mic and reply audio) and the audio-stop event.

Binary frame layout (network byte order), then raw PCM::

    offset  size  field
    0       2     magic  b"HF"
    2       1     frame version (1)
    3       1     flags  (bit 0: end of stream; other bits reserved, ignored)
    4       4     sequence number, uint32, starts at 0 for each stream
    8       16    session id (the raw 16 bytes of the 32-hex-digit id)
    24      ...   PCM: signed 16-bit little-endian, mono, 16 kHz

A frame carries 20–40 ms of audio (640–1280 bytes) and is published with
QoS 0. The frame that ends a stream sets ``FLAG_END`` and may be empty.
There is never a WAV header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from .errors import ProtocolError
from .ids import check_session_id, session_id_from_bytes, session_id_to_bytes
from .message import Message

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2
CHANNELS = 1
BYTES_PER_MS = SAMPLE_RATE * SAMPLE_WIDTH * CHANNELS // 1000  # 32

FRAME_MAGIC = b"HF"
FRAME_VERSION = 1
FLAG_END = 0x01

_HEADER = struct.Struct("!2sBBI16s")
HEADER_SIZE = _HEADER.size  # 24
#: Refuse frames with more than one second of audio: a sender bug or garbage.
MAX_PCM_BYTES = SAMPLE_RATE * SAMPLE_WIDTH
MAX_SEQUENCE = 2**32 - 1


@dataclass(frozen=True)
class AudioFrame:
    """One binary audio frame (not a JSON message)."""

    session_id: str
    seq: int
    pcm: bytes = b""
    end: bool = False

    def __post_init__(self) -> None:
        check_session_id(self.session_id)
        if not 0 <= self.seq <= MAX_SEQUENCE:
            raise ProtocolError("sequence number out of range", seq=self.seq)
        if len(self.pcm) % SAMPLE_WIDTH:
            raise ProtocolError("PCM16 payload has an odd number of bytes", size=len(self.pcm))
        if len(self.pcm) > MAX_PCM_BYTES:
            raise ProtocolError("frame too long", size=len(self.pcm))

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) / BYTES_PER_MS

    def to_bytes(self) -> bytes:
        flags = FLAG_END if self.end else 0
        header = _HEADER.pack(FRAME_MAGIC, FRAME_VERSION, flags, self.seq, session_id_to_bytes(self.session_id))
        return header + bytes(self.pcm)

    @classmethod
    def from_bytes(cls, payload: bytes | bytearray | memoryview, *, topic: str | None = None) -> "AudioFrame":
        raw = bytes(payload)
        if len(raw) < HEADER_SIZE:
            raise ProtocolError("audio frame shorter than its header", topic=topic, size=len(raw))
        magic, version, flags, seq, session = _HEADER.unpack_from(raw)
        if magic != FRAME_MAGIC:
            raise ProtocolError("bad audio frame magic", topic=topic, magic=magic)
        if version != FRAME_VERSION:
            raise ProtocolError("unsupported audio frame version", topic=topic, version=version)
        try:
            return cls(
                session_id=session_id_from_bytes(session),
                seq=seq,
                pcm=raw[HEADER_SIZE:],
                end=bool(flags & FLAG_END),
            )
        except ProtocolError as err:
            if topic is not None:
                err.context.setdefault("topic", topic)
            raise


class AudioStopReason:
    """Values of :attr:`AudioStop.reason` (strings on the wire; unknown ones are kept)."""

    END_OF_SPEECH = "end-of-speech"  # edge VAD (satellite) or server VAD (server) heard the end
    MAX_LENGTH = "max-length"  # the utterance cap was reached
    NO_SPEECH = "no-speech"  # the mic opened but nobody spoke before the timeout
    CANCELLED = "cancelled"  # muted, stood down, shut down, or the session was dropped


@dataclass(frozen=True)
class AudioStop(Message):
    """The mic stream of a session has ended.

    Satellite → server (event topic): the satellite stopped streaming.
    Server → satellite (command topic): the server has heard enough; stop streaming.
    ``last_seq`` is the sequence number of the last frame sent, so a receiver
    can wait briefly for QoS 0 frames still in flight.
    """

    type: ClassVar[str] = "audio-stop"

    session_id: str
    reason: str = AudioStopReason.END_OF_SPEECH
    last_seq: int | None = None

    def __post_init__(self) -> None:
        check_session_id(self.session_id)
