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
