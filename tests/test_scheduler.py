"""The fair inference pool: sessions take turns, live work first, bulk never takes the last worker."""

from __future__ import annotations

import asyncio
import threading
import time
from contextvars import copy_context

import pytest

from hearth.server.scheduler import FairExecutor
from hearth.server.session.work import WORK_OWNER, WorkOwner


def submit_as(pool: FairExecutor, owner: WorkOwner, fn, *args):  # noqa: ANN001, ANN201
    def inside():  # noqa: ANN202
        WORK_OWNER.set(owner)
        return pool.submit(fn, *args)

    return copy_context().run(inside)


def test_owners_take_turns_and_live_work_goes_first() -> None:
    pool = FairExecutor(1)
    gate = threading.Event()
    order: list[str] = []
    blocker = submit_as(pool, WorkOwner("x"), gate.wait)
    futures = [submit_as(pool, WorkOwner("hog", "bulk"), order.append, f"hog-bulk-{i}") for i in range(3)]
    futures += [submit_as(pool, WorkOwner("hog"), order.append, f"hog-{i}") for i in range(3)]
    futures += [submit_as(pool, WorkOwner("victim"), order.append, "victim")]
    gate.set()
    for future in [blocker, *futures]:
        future.result(5)
    assert order[:4] == ["hog-0", "victim", "hog-1", "hog-2"]
    assert order[4:] == ["hog-bulk-0", "hog-bulk-1", "hog-bulk-2"]
    pool.shutdown()


def test_bulk_work_leaves_a_worker_for_a_live_turn() -> None:
    pool = FairExecutor(2)
    release = threading.Event()
    running = []

    def slow(tag: str) -> str:
        running.append(tag)
        release.wait(5)
        return tag

    bulk = [submit_as(pool, WorkOwner("uploader", "bulk"), slow, f"bulk-{i}") for i in range(4)]
    time.sleep(0.1)
    assert running == ["bulk-0"], "one bulk job at a time on two workers"
    live = submit_as(pool, WorkOwner("talker"), lambda: "live")
    assert live.result(2) == "live"  # served while the bulk job still runs
    release.set()
    assert [f.result(5) for f in bulk] == ["bulk-0", "bulk-1", "bulk-2", "bulk-3"]
    pool.shutdown()


def test_errors_reach_the_caller_and_shutdown_cancels_queued_work() -> None:
    pool = FairExecutor(1)
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(2)
    gate = threading.Event()
    pool.submit(gate.wait)
    queued = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    gate.set()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


async def test_asyncio_run_in_executor_queues_under_the_tasks_owner() -> None:
    """The session sets the owner in its task; run_in_executor submits from that task's context."""
    pool = FairExecutor(1)
    gate = threading.Event()
    pool.submit(gate.wait)

    async def task() -> str:
        WORK_OWNER.set(WorkOwner("sess_1", "bulk"))
        return await asyncio.get_running_loop().run_in_executor(pool, lambda: "done")

    job = asyncio.create_task(task())
    await asyncio.sleep(0.05)
    assert pool.queued() == {"live": 0, "bulk": 1}
    gate.set()
    assert await job == "done"
    pool.shutdown()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_owner_that_used_the_workers_least_lately_goes_first() -> None:
    """Round robin alone would serve the hog first (it queued first); its busy time puts it behind."""
    clock = FakeClock()
    pool = FairExecutor(1, clock=clock)

    def busy(seconds: float) -> None:
        clock.now += seconds

    submit_as(pool, WorkOwner("hog"), busy, 8.0).result(2)
    submit_as(pool, WorkOwner("victim"), busy, 0.5).result(2)
    assert pool.usage() == {"hog": pytest.approx(8.0 * 0.5 ** (0.5 / 10), abs=1e-3), "victim": 0.5}
    gate = threading.Event()
    order: list[str] = []
    blocker = submit_as(pool, WorkOwner("x"), gate.wait)
    futures = [submit_as(pool, WorkOwner("hog"), order.append, "hog"),
               submit_as(pool, WorkOwner("victim"), order.append, "victim")]
    gate.set()
    for future in [blocker, *futures]:
        future.result(5)
    assert order == ["victim", "hog"]
    before = pool.usage()["hog"]
    clock.now += 30.0  # three half-lives: the hog's busy time decays to an eighth
    assert pool.usage()["hog"] == pytest.approx(before / 8, abs=1e-3)
    pool.shutdown()


def test_while_another_session_is_active_no_session_holds_every_worker() -> None:
    pool = FairExecutor(2, light_use_s=-1.0)  # nobody counts as light here (see the test below)
    release = threading.Event()
    started: list[str] = []

    def slow(tag: str) -> str:
        started.append(tag)
        release.wait(5)
        return tag

    submit_as(pool, WorkOwner("victim"), lambda: None).result(2)  # the victim is active (used the pool just now)
    first = submit_as(pool, WorkOwner("hog"), slow, "hog-1")
    second = submit_as(pool, WorkOwner("hog"), slow, "hog-2")
    time.sleep(0.1)
    assert started == ["hog-1"], "the hog's second job waits: the last worker is kept for the others"
    victim = submit_as(pool, WorkOwner("victim"), lambda: "victim")
    assert victim.result(2) == "victim"  # served at once while the hog's first job still runs
    release.set()
    assert [first.result(5), second.result(5)] == ["hog-1", "hog-2"]
    pool.shutdown()


def test_a_session_alone_uses_every_worker() -> None:
    pool = FairExecutor(2)
    both = threading.Barrier(2, timeout=2)
    futures = [submit_as(pool, WorkOwner("alone"), both.wait) for _ in range(2)]
    assert sorted(f.result(5) for f in futures) == [0, 1]  # both ran at once, or the barrier broke
    pool.shutdown()


def test_a_light_session_takes_the_last_worker_while_nobody_waits_and_a_heavy_one_does_not() -> None:
    """A conversation's reply speech runs beside its own transcription; a flood keeps the reserve."""
    clock = FakeClock()
    pool = FairExecutor(2, clock=clock, light_use_s=5.0)

    def busy(seconds: float) -> None:
        clock.now += seconds

    submit_as(pool, WorkOwner("other"), busy, 0.1).result(2)  # another session, active just now
    submit_as(pool, WorkOwner("heavy"), busy, 20.0).result(2)
    clock.now += 1.0
    for owner, expect_both in (("light", True), ("heavy", False)):
        release = threading.Event()
        started: list[int] = []

        def slow(tag: int) -> int:
            started.append(tag)
            release.wait(5)
            return tag

        jobs = [submit_as(pool, WorkOwner(owner), slow, i) for i in range(2)]
        time.sleep(0.2)
        assert len(started) == (2 if expect_both else 1), owner
        release.set()
        assert sorted(job.result(5) for job in jobs) == [0, 1]
    pool.shutdown()


def test_a_light_session_leaves_the_last_worker_to_another_that_waits() -> None:
    pool = FairExecutor(2)
    release = threading.Event()
    order: list[str] = []

    def slow(tag: str) -> str:
        order.append(tag)
        release.wait(5)
        return tag

    gate = threading.Event()
    blocker = submit_as(pool, WorkOwner("x"), gate.wait)  # one worker busy elsewhere
    first = submit_as(pool, WorkOwner("light"), slow, "light-1")
    time.sleep(0.1)
    waiting = submit_as(pool, WorkOwner("light"), slow, "light-2")
    other = submit_as(pool, WorkOwner("victim"), slow, "victim")
    gate.set()  # a worker frees up: the waiting other session goes before light's second job
    time.sleep(0.2)
    assert order[:2] == ["light-1", "victim"], order
    release.set()
    for future in (blocker, first, waiting, other):
        future.result(5)
    pool.shutdown()
