"""Multi-room arbitration: which satellite answers when several heard the same wake word.

Pure logic, no MQTT and no clock of its own: the bridge passes the time in, so the
rules are unit-tested without a broker.

The rules:

* The first wake candidate opens a *round*; every candidate arriving within
  ``window_s`` of it joins the round. When the window closes the best candidate
  wins and every other one loses.
* Best means the highest wake score; a tie is broken by the louder wake word
  (speech energy in dBFS, a missing energy counting as the quietest), then by the
  earlier arrival, then by satellite id (so the outcome never depends on dict order).
* A candidate that arrives after its round closed but within ``window_s`` of that
  decision is *late*: it loses to that round's winner at once, without opening a
  round of its own. A slow satellite that heard the same words a little later is
  told to stand down instead of answering in a second room. Only a candidate that
  comes later still opens a new round (someone else speaking in another room), or
  one whose winner's session already ended (:meth:`Arbiter.ended`).
* A satellite has at most one candidate in a round; a newer one replaces it.
* ``withdraw`` removes a candidate whose satellite went away before the decision.
* Only finite scores from 0 to 1 and finite energies of at most 0 dBFS take part: a
  :class:`Candidate` refuses anything else (``ValueError``), so one satellite cannot win
  every round with a score of ``1e308`` (the wire decoder already answers such a wake
  with a protocol error).

A window of 0 decides each candidate alone (no multi-room arbitration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Candidate:
    """One satellite's wake word, as offered for arbitration."""

    satellite_id: str
    session_id: str
    score: float
    #: Loudness of the wake word in dBFS; None when the satellite did not say.
    energy: float | None
    #: When the candidate reached the server (the bridge's monotonic clock, seconds).
    arrived: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.score) and 0.0 <= self.score <= 1.0):
            raise ValueError(f"wake score {self.score!r} is not a finite number from 0 to 1")
        if self.energy is not None and not (math.isfinite(self.energy) and self.energy <= 0.0):
            raise ValueError(f"energy {self.energy!r} is not a finite dBFS value of at most 0")


@dataclass(frozen=True)
class Decision:
    """The outcome of one round."""

    winner: Candidate
    losers: tuple[Candidate, ...] = ()


@dataclass(frozen=True)
class Opened:
    """The candidate opened a round; call :meth:`Arbiter.resolve` at ``deadline``."""

    deadline: float


@dataclass(frozen=True)
class Joined:
    """The candidate joined the open round (the deadline is unchanged)."""

    deadline: float
    #: A candidate of the same satellite that this one replaced.
    replaced: Candidate | None = None


@dataclass(frozen=True)
class Late:
    """The candidate came just after a decision and loses to that round's winner."""

    winner: Candidate


Offer = Opened | Joined | Late


def rank(candidate: Candidate) -> tuple[float, float, float, str]:
    """Sort key: smaller is better (highest score, loudest, earliest, then smallest id)."""
    energy = candidate.energy if candidate.energy is not None else -math.inf
    return (-candidate.score, -energy, candidate.arrived, candidate.satellite_id)


def pick_winner(candidates: list[Candidate] | tuple[Candidate, ...]) -> Decision:
    """The best candidate and the rest, best first."""
    if not candidates:
        raise ValueError("no candidates")
    ordered = sorted(candidates, key=rank)
    return Decision(winner=ordered[0], losers=tuple(ordered[1:]))


@dataclass
class Arbiter:
    window_s: float
    _round: list[Candidate] = field(default_factory=list)
    _deadline: float | None = None
    _last: Decision | None = None
    _decided_at: float = -math.inf

    @property
    def deadline(self) -> float | None:
        """When the open round must be resolved; None when no round is open."""
        return self._deadline

    @property
    def pending(self) -> tuple[Candidate, ...]:
        return tuple(self._round)

    def offer(self, candidate: Candidate) -> Offer:
        now = candidate.arrived
        if self._deadline is None:
            last = self._last
            if (
                last is not None
                and now - self._decided_at <= self.window_s
                and last.winner.satellite_id != candidate.satellite_id
            ):
                return Late(winner=last.winner)
            self._round = [candidate]
            self._deadline = now + self.window_s
            return Opened(deadline=self._deadline)
        replaced = next((c for c in self._round if c.satellite_id == candidate.satellite_id), None)
        if replaced is not None:
            self._round.remove(replaced)
        self._round.append(candidate)
        return Joined(deadline=self._deadline, replaced=replaced)

    def withdraw(self, session_id: str) -> Candidate | None:
        """Drop a candidate from the open round (its satellite went away)."""
        for candidate in self._round:
            if candidate.session_id == session_id:
                self._round.remove(candidate)
                if not self._round:
                    self._deadline = None
                return candidate
        return None

    def ended(self, session_id: str) -> None:
        """A session ended: if it won the last round, late candidates no longer lose to it."""
        if self._last is not None and self._last.winner.session_id == session_id:
            self._last = None

    def resolve(self, now: float) -> Decision | None:
        """Close the open round if its window has passed; None if there is nothing to decide yet."""
        if self._deadline is None or now < self._deadline:
            return None
        decision = pick_winner(self._round)
        self._round = []
        self._deadline = None
        self._last = decision
        self._decided_at = now
        return decision

