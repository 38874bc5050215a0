"""The inference pool: worker threads shared by every session, taken in turns.

A plain thread pool runs work first come, first served, so one client that queues a
hundred transcriptions makes every other session wait behind them. `FairExecutor` keeps
one queue per owner (the session whose task submitted the work, from
`hearth.server.session.work.WORK_OWNER`) and serves owners round robin, live work (a
turn being answered) before bulk work (uploaded audio items, out-of-band responses);
bulk work never occupies the last free worker, so a live turn finds one.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from .session.work import WORK_OWNER, WorkOwner

_ANONYMOUS = WorkOwner("", "live")
_POOLS: weakref.WeakSet[FairExecutor] = weakref.WeakSet()


def _shutdown_all() -> None:
    for pool in list(_POOLS):
        pool.shutdown(wait=False, cancel_futures=True)


threading._register_atexit(_shutdown_all)  # the hook concurrent.futures uses for its own pools


class FairExecutor(Executor):
    def __init__(self, max_workers: int, thread_name_prefix: str = "hearth-infer") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self._lock = threading.Condition()
        #: owner -> its queued work, in arrival order; owners in the order they are served.
        self._queues: dict[str, OrderedDict[str, deque[tuple[Future[Any], Callable[[], Any]]]]] = {
            "live": OrderedDict(), "bulk": OrderedDict()}
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

    def _next(self) -> tuple[str, Future[Any], Callable[[], Any]] | None:
        """The next job: live owners round robin, then bulk if a worker stays free for live work."""
        for priority in ("live", "bulk"):
            queues = self._queues[priority]
            if not queues:
                continue
            if priority == "bulk" and self.max_workers > 1 and self._bulk_running >= self.max_workers - 1:
                return None
            owner, jobs = next(iter(queues.items()))
            future, job = jobs.popleft()
            del queues[owner]
            if jobs:
                queues[owner] = jobs  # to the back of the line: the others go first
            return priority, future, job
        return None

    def _work(self) -> None:
        while True:
            with self._lock:
                picked = self._next()
                while picked is None:
                    if self._shutdown:
                        return
                    self._lock.wait()
                    picked = self._next()
                priority, future, job = picked
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
                if priority == "bulk":
                    with self._lock:
                        self._bulk_running -= 1
                        self._lock.notify_all()

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
