"""The spoken reply: start/end events around binary reply frames, and the acks.

For every ``reply-start`` a satellite sends exactly one of
``playback-finished`` (the reply played to the end, or was stopped on the
server's request) or ``barge-in`` (the user interrupted it with the wake word).
The server reopens nothing on a timer: continued conversation waits for that
ack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .audio import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH
from .errors import ProtocolError
from .ids import check_session_id
from .message import Message
from .session import check_wake_score


@dataclass(frozen=True)
class ReplyStart(Message):
    """Server → satellite: reply audio for ``session_id`` follows on the reply topic.

    Sent as soon as the first audio chunk exists. A satellite that is still
    streaming that session's mic stops streaming. Sent for a session the
    satellite does not know (while idle) it is an announcement: the satellite
    plays it and acks it like any reply.
    """

    type: ClassVar[str] = "reply-start"

    session_id: str
    rate: int = SAMPLE_RATE
    width: int = SAMPLE_WIDTH
    channels: int = CHANNELS
    #: The reply text, when known up front (for displays and logs).
    text: str | None = None

    def __post_init__(self) -> None:
        check_session_id(self.session_id)
        if (self.rate, self.width, self.channels) != (SAMPLE_RATE, SAMPLE_WIDTH, CHANNELS):
            # Protocol v1 carries 16 kHz PCM16 mono only; the fields exist so
            # that a later version can negotiate without new message types.
            raise ProtocolError(
                "protocol v1 reply audio is 16 kHz, 16-bit, mono",
                rate=self.rate,
                width=self.width,
                channels=self.channels,
            )


@dataclass(frozen=True)
class ReplyEnd(Message):
    """Server → satellite: no more reply frames for ``session_id``.

    ``last_seq`` is the sequence number of the last reply frame (so the
    satellite can wait briefly for QoS 0 frames still in flight). When
    ``expects_reply`` is true (the reply ended with a question) the satellite
    reopens its mic without a wake word, but only after it finished playing
    and sent ``playback-finished`` with ``continue_conversation``.
    """

    type: ClassVar[str] = "reply-end"

    session_id: str
    last_seq: int | None = None
    expects_reply: bool = False
    text: str | None = None

    def __post_init__(self) -> None:
        check_session_id(self.session_id)


@dataclass(frozen=True)
class PlaybackFinished(Message):
    """Satellite → server: the reply finished playing on the speaker.

    ``continue_conversation`` tells the server that the mic is open again for
    the same session (the reply expected an answer and the satellite is not
    muted); mic frames for ``session_id`` follow. ``interrupted`` is set when
    playback was cut short by ``stop-playback``; ``played_ms`` is how much of
    the reply was heard (for truncating the conversation item).
    """

    type: ClassVar[str] = "playback-finished"

    session_id: str
    played_ms: int | None = None
    interrupted: bool = False
    continue_conversation: bool = False

    def __post_init__(self) -> None:
        check_session_id(self.session_id)


@dataclass(frozen=True)
class BargeIn(Message):
    """Satellite → server: the wake word was heard while a reply played (or was pending).

    Playback has already stopped locally. The server cancels the response,
    truncates the assistant's audio at ``played_ms``, and treats the mic
    frames that follow for the same ``session_id`` as the next user turn (no
    new arbitration: this satellite already owns the session).
    """

    type: ClassVar[str] = "barge-in"

    session_id: str
    played_ms: int | None = None
    wake_word: str | None = None
    score: float | None = None

    def __post_init__(self) -> None:
        check_session_id(self.session_id)
        if self.score is not None:
            check_wake_score(self.score)


@dataclass(frozen=True)
class StopPlayback(Message):
    """Server or HA → satellite: stop playing now (e.g. "stop" said elsewhere).

    Without ``session_id`` it stops whatever is playing. The satellite acks
    with ``playback-finished`` (``interrupted: true``) and goes idle.
    """

    type: ClassVar[str] = "stop-playback"

    session_id: str | None = None

    def __post_init__(self) -> None:
        if self.session_id is not None:
            check_session_id(self.session_id)
