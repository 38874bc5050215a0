"""The inference pool: worker threads shared by every session, taken in turns.

A plain thread pool runs work first come, first served, so one client that queues a
hundred transcriptions makes every other session wait behind them. `FairExecutor` keeps
one queue per owner (the session whose task submitted the work, from
`hearth.server.session.work.WORK_OWNER`) and serves live work (a turn being answered)
before bulk work (uploaded audio items, out-of-band responses). Within a priority the
owner that used the workers least lately goes first (busy seconds, decaying with a
half-life of `USAGE_HALF_LIFE_S`; ties in round-robin order), so a session that keeps
the workers busy waits behind one that asks now and then.

A job cannot be stopped once it runs, so a worker must be free when a quiet session's
turn arrives: bulk work never occupies the last free worker, and while another owner is
active (it has work queued or running, or used the pool in the last `ACTIVE_WINDOW_S`)
an owner that already has a job running does not take the last free worker either.
A session alone may use every worker, and so may a light one (its busy time under
`LIGHT_USE_S`, as a conversation's turns are) while no other owner has work waiting:
a turn's reply speech then runs beside its own transcription instead of after it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

from .session.work import WORK_OWNER, WorkOwner

_ANONYMOUS = WorkOwner("", "live")

#: Half-life of an owner's recorded busy time (s): what "lately" means for the turn order.
USAGE_HALF_LIFE_S = 10.0
#: An owner that used the pool this recently (s) still counts as active for the reserve rule.
ACTIVE_WINDOW_S = 60.0
#: Decayed busy seconds up to which an owner may take the last free worker while nobody else
#: waits: a spoken conversation (~1 s of inference a turn) stays under it, a flood does not.
LIGHT_USE_S = 5.0
_POOLS: weakref.WeakSet[FairExecutor] = weakref.WeakSet()


def _shutdown_all() -> None:
    for pool in list(_POOLS):
        pool.shutdown(wait=False, cancel_futures=True)


threading._register_atexit(_shutdown_all)  # the hook concurrent.futures uses for its own pools


@dataclass
class _Usage:
    """One owner's busy seconds, decayed to `at`, and what it has running."""

    busy_s: float = 0.0
    at: float = 0.0
    running: int = 0
    last_used: float = 0.0

    def decayed(self, now: float) -> float:
        return self.busy_s * 0.5 ** ((now - self.at) / USAGE_HALF_LIFE_S)


class FairExecutor(Executor):
    def __init__(self, max_workers: int, thread_name_prefix: str = "hearth-infer",
                 clock: Callable[[], float] = time.monotonic, light_use_s: float = LIGHT_USE_S) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.light_use_s = light_use_s
        self._clock = clock
        self._lock = threading.Condition()
        #: owner -> its queued work, in arrival order; owners in round-robin order.
        self._queues: dict[str, OrderedDict[str, deque[tuple[Future[Any], Callable[[], Any]]]]] = {
            "live": OrderedDict(), "bulk": OrderedDict()}
        self._usage: dict[str, _Usage] = {}
        self._running = 0
        self._bulk_running = 0
        self._shutdown = False
        # Not daemon threads: a model's native threads must not be killed mid-call at exit
        # ("terminate called without an active exception"). As in concurrent.futures, the
        # pool is shut down when the interpreter exits, and the workers are joined.
        self._threads = [threading.Thread(target=self._work, name=f"{thread_name_prefix}_{i}")
                         for i in range(max_workers)]
        for thread in self._threads:
            thread.start()
        _POOLS.add(self)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        owner = WORK_OWNER.get() or _ANONYMOUS
        future: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            queues = self._queues[owner.priority]
            queues.setdefault(owner.session_id, deque()).append((future, lambda: fn(*args, **kwargs)))
            self._lock.notify()
        return future

    def queued(self) -> dict[str, int]:
        """Queued jobs per priority (diagnostics)."""
        with self._lock:
            return {priority: sum(len(q) for q in queues.values()) for priority, queues in self._queues.items()}

    def usage(self) -> dict[str, float]:
        """Each owner's decayed busy seconds, as the turn order sees them (diagnostics)."""
        with self._lock:
            now = self._clock()
            return {owner: round(usage.decayed(now), 3) for owner, usage in self._usage.items()}

    def _others_active(self, owner: str, now: float) -> bool:
        if self._others_waiting(owner):
            return True
        # Work outside any session (the models' warm-up) counts only while it runs.
        return any(other != owner and (usage.running or (other and now - usage.last_used < ACTIVE_WINDOW_S))
                   for other, usage in self._usage.items())

    def _may_start(self, owner: str, now: float) -> bool:
        """The reserve rule: with others active, no owner holds every worker."""
        if self.max_workers == 1 or self._running < self.max_workers - 1:
            return True
        usage = self._usage.get(owner)
        if usage is None or usage.running == 0:
            return True
        if usage.decayed(now) <= self.light_use_s and not self._others_waiting(owner):
            return True
        return not self._others_active(owner, now)

    def _others_waiting(self, owner: str) -> bool:
        return any(other != owner for queues in self._queues.values() for other in queues)

    def _next(self) -> tuple[str, str, Future[Any], Callable[[], Any]] | None:
        """The next job: live before bulk; within a priority, the owner that used the workers least lately."""
        now = self._clock()
        for priority in ("live", "bulk"):
            queues = self._queues[priority]
            if not queues:
                continue
            if priority == "bulk" and self.max_workers > 1 and self._bulk_running >= self.max_workers - 1:
                return None
            owners = [owner for owner in queues if self._may_start(owner, now)]
            if not owners:
                continue
            idle = _Usage()
            owner = min(owners, key=lambda o: self._usage.get(o, idle).decayed(now))  # min keeps the first of ties
            jobs = queues.pop(owner)
            future, job = jobs.popleft()
            if jobs:
                queues[owner] = jobs  # to the back of the line: the others go first
            return priority, owner, future, job
        return None

    def _started(self, owner: str, now: float) -> None:
        usage = self._usage.setdefault(owner, _Usage(at=now))
        usage.running += 1
        usage.last_used = now
        self._running += 1

    def _finished(self, owner: str, started: float, now: float) -> None:
        usage = self._usage[owner]
        usage.busy_s = usage.decayed(now) + (now - started)
        usage.at = usage.last_used = now
        usage.running -= 1
        self._running -= 1
        # Forget owners whose work no longer counts, so the table stays small.
        for other, old in list(self._usage.items()):
            if not old.running and now - old.last_used > ACTIVE_WINDOW_S:
                del self._usage[other]

    def _work(self) -> None:
        while True:
            with self._lock:
                picked = self._next()
                while picked is None:
                    if self._shutdown:
                        return
                    self._lock.wait()
                    picked = self._next()
                priority, owner, future, job = picked
                started = self._clock()
                self._started(owner, started)
                if priority == "bulk":
                    self._bulk_running += 1
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        result = job()
                    except BaseException as exc:  # handed to the awaiting side
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            finally:
                with self._lock:
                    self._finished(owner, started, self._clock())
                    if priority == "bulk":
                        self._bulk_running -= 1
                    self._lock.notify_all()  # a held-back owner may start now

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for queues in self._queues.values():
                    for jobs in queues.values():
                        for future, _job in jobs:
                            future.cancel()
                    queues.clear()
            self._lock.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()
