"""Per-turn stage timestamps, published to observers (benchmarks, diagnostics).

The session marks stages as they happen (silence began, committed, first audio, ...),
and the engine adds its own through `on_mark`. Observers subscribe to finished turns;
nothing outside the session reaches into it to collect them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

_LOGGER = logging.getLogger(__name__)

#: Finished turns a session keeps for `recent`.
KEEP_TURNS = 100


@dataclass
class TurnTimings:
    """Monotonic timestamps of one turn's stages."""

    item_id: str | None = None
    response_id: str | None = None
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str, at: float | None = None) -> None:
        self.marks.setdefault(name, time.monotonic() if at is None else at)


TimingObserver = Callable[[str, TurnTimings], None]


class TimingLog:
    """A session's finished turns, and the observers told of each (session id, turn)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.recent: deque[TurnTimings] = deque(maxlen=KEEP_TURNS)
        self._observers: list[TimingObserver] = []

    def subscribe(self, observer: TimingObserver) -> Callable[[], None]:
        """Call `observer` for every finished turn; returns the unsubscribe function."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    def finished(self, turn: TurnTimings) -> None:
        if not turn.marks:
            return
        self.recent.append(turn)
        for observer in list(self._observers):
            try:
                observer(self.session_id, turn)
            except Exception:  # a broken observer must not break the session
                _LOGGER.exception("timing observer failed")
