"""Who model work is done for: a context variable the session sets in its tasks.

The composition root's inference pool reads it when work is submitted, so it can take
turns between sessions and put a live turn before anyone's bulk work (a client's
uploaded audio items, out-of-band responses). The session only says whose work it is
and how urgent; it never sees the pool.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

Priority = Literal["live", "bulk"]


@dataclass(frozen=True)
class WorkOwner:
    session_id: str
    priority: Priority = "live"


#: The owner of the work the current task submits; None outside any session.
WORK_OWNER: ContextVar[WorkOwner | None] = ContextVar("hearth_work_owner", default=None)
