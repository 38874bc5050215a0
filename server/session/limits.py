"""Per-session limits: how much one client may ask of the server at once.

Each bounds work or memory a single request can create, so one session cannot starve
the others (docs/configuration.md, `server.limits`, lists them with their error codes).
Plain dataclasses with no project imports, so the configuration can take its defaults from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SessionLimits:
    #: Longest input buffer without a commit (s); upstream's own limit is 15 minutes.
    max_buffer_s: float = 900.0
    #: Longest audio in one client-created item (s): it is transcribed in full.
    max_item_audio_s: float = 120.0
    #: Most text in one client-created item (characters).
    max_item_text_chars: int = 32_768
    #: Out-of-band (`conversation: "none"`) responses running at once.
    max_side_responses: int = 4
    #: Function tools a session may declare, and the JSON size of one tool's definition.
    max_tools: int = 128
    max_tool_bytes: int = 32_768
    #: Audio transcribed speculatively at a pause (s): Whisper's window; longer turns wait for the commit.
    max_speculation_s: float = 30.0
    #: Appends longer than this (s) have their VAD run off the event loop.
    large_append_s: float = 1.0
    #: Newest conversation items an engine sees per response (upstream truncates to its window too).
    max_context_items: int = 256
    #: `response.create` requests per minute (a token bucket holding a minute's worth); 0: no limit.
    responses_per_minute: int = 120


@dataclass
class RequestBudget:
    """A token bucket: `limit` requests, refilled at `limit` per minute.

    A client that sends cheap requests in a tight loop (each answered at once) would
    otherwise keep the event loop and the workers busy for everyone; this bounds its rate
    the way upstream's per-minute request limit does, and says how much is left.
    """

    limit: int
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    tokens: float = -1.0
    at: float = 0.0

    def _refill(self) -> float:
        now = self.clock()
        if self.tokens < 0:
            self.tokens, self.at = float(self.limit), now
        self.tokens = min(float(self.limit), self.tokens + (now - self.at) * self.limit / 60.0)
        self.at = now
        return self.tokens

    def available(self) -> bool:
        return self._refill() >= 1.0

    def take(self) -> None:
        self.tokens = max(0.0, self._refill() - 1.0)

    def remaining(self) -> int:
        return int(self._refill())

    def retry_after(self) -> float:
        """Seconds until one request is allowed again."""
        return max(0.0, (1.0 - self._refill()) * 60.0 / self.limit)

    def reset_seconds(self) -> float:
        """Seconds until the bucket is full again (upstream's `reset_seconds`)."""
        return round((self.limit - self._refill()) * 60.0 / self.limit, 3)


def duration_words(seconds: float) -> str:
    """"60 minutes" as upstream says it; limits that are not whole minutes in seconds."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    whole = max(1, round(seconds))
    return f"{whole} second{'' if whole == 1 else 's'}"
