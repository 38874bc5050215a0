"""Opening and closing a satellite session, including multi-room arbitration.

A *session* is one conversation between a satellite and the server: it starts
with a wake word (or a server's ``session-start``), may span several turns
when the reply asks a question, and ends when the server sends ``session-end``
or a reply that expects no answer has finished playing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from .errors import ProtocolError
from .ids import check_session_id
from .message import Message


def check_wake_score(score: float) -> float:
    """A wake score is a detector's probability: a finite number from 0 to 1.

    Arbitration compares scores across satellites, so one out of range (``1e308``, NaN,
    infinity) would win, or break, every round.
    """
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score) \
            or not 0.0 <= score <= 1.0:
        raise ProtocolError("wake score must be a finite number from 0 to 1", score=score)
    return score


def check_energy(energy: float) -> float:
    """Wake word loudness in dBFS: finite and at most 0 (full scale)."""
    if not isinstance(energy, (int, float)) or isinstance(energy, bool) or not math.isfinite(energy) \
            or energy > 0.0:
        raise ProtocolError("energy must be a finite dBFS value of at most 0", energy=energy)
    return energy


@dataclass(frozen=True)
class WakeCandidate(Message):
    """Satellite → server: a wake word fired and the satellite is streaming the request.

    The satellite starts streaming at once; the server collects candidates for
    its arbitration window (default 200 ms), answers the winner with
    ``session-accepted`` and every other candidate with ``stand-down``.
    """

    type: ClassVar[str] = "wake"

    session_id: str
    wake_word: str
    #: The detector's score, 0 to 1 (anything else is refused).
    score: float
    #: Loudness of the wake word audio in dBFS (0 is full scale, -96 silence; above 0 is refused).
    energy: float | None = None
    #: Satellite wall clock (Unix seconds) when the wake word fired.
    timestamp: float | None = None

    def __post_init__(self) -> None:
        check_session_id(self.session_id)
        check_wake_score(self.score)
        if self.energy is not None:
            check_energy(self.energy)


@dataclass(frozen=True)
class SessionAccepted(Message):
    """Server → satellite: this satellite won; keep streaming."""

    type: ClassVar[str] = "session-accepted"

    session_id: str
    #: Realtime conversation this session feeds (for logs and HA).
    conversation_id: str | None = None

    def __post_init__(self) -> None:
        check_session_id(self.session_id)


class StandDownReason:
    OTHER_SATELLITE = "other-satellite"  # another satellite won the arbitration
    BUSY = "busy"  # the server cannot take another session now
    REJECTED = "rejected"  # e.g. a satellite the server does not serve


@dataclass(frozen=True)
class StandDown(Message):
    """Server → satellite: drop this session silently (another room answers)."""

    type: ClassVar[str] = "stand-down"

    session_id: str
    reason: str = StandDownReason.OTHER_SATELLITE
    #: The satellite that won, when the reason is ``other-satellite``.
    winner: str | None = None

    def __post_init__(self) -> None:
        check_session_id(self.session_id)


@dataclass(frozen=True)
class SessionStart(Message):
    """Server (or HA) → satellite: open the mic without a wake word.

    Used when a conversation is started from elsewhere (an automation asks a
    question). The satellite answers by streaming audio for ``session_id``
    like after a wake word, with no arbitration. A busy satellite answers
    with an ``error`` (code ``busy``).
    """

    type: ClassVar[str] = "session-start"

    session_id: str
    conversation_id: str | None = None

    def __post_init__(self) -> None:
        check_session_id(self.session_id)


class SessionEndReason:
    DONE = "done"  # finished normally (no reply needed, nothing heard, …)
    TIMEOUT = "timeout"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class SessionEnd(Message):
    """Server → satellite: the server closed the session.

    The satellite stops streaming, finishes any reply it is playing (and acks
    it), then goes idle without reopening the mic.
    """

    type: ClassVar[str] = "session-end"

    session_id: str
    reason: str = SessionEndReason.DONE

    def __post_init__(self) -> None:
        check_session_id(self.session_id)
