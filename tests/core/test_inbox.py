"""``asyncwsgi.core.inbox.LoopInbox`` in-process: worker threads hand callbacks to a loop.

Most tests give the inbox a fake ``schedule`` that only records the drains it is asked to
run, and then run them by hand: so the order of posts, drains and re-posts is exact. One
test uses a real asyncio loop with worker threads posting at the same time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from asyncwsgi.core.inbox import LoopInbox

pytestmark = pytest.mark.timeout(30)


class FakeLoop:
    """A ``schedule`` that records the callbacks instead of running them."""

    def __init__(self) -> None:
        self.scheduled: list[Callable[[], None]] = []
        self.refuse = False

    def schedule(self, callback: Callable[[], None]) -> None:
        if self.refuse:
            raise RuntimeError("Event loop is closed")
        self.scheduled.append(callback)

    def run(self) -> int:
        """Run what is scheduled, and what that schedules, until nothing is; how many."""
        ran = 0
        while self.scheduled:
            self.scheduled.pop(0)()
            ran += 1
        return ran


def record(log: list[Any]) -> Callable[[Any, Any], None]:
    return lambda a, b: log.append((a, b))


def test_many_posts_before_the_drain_schedule_it_once() -> None:
    loop = FakeLoop()
    inbox = LoopInbox(loop.schedule)
    ran: list[Any] = []
    for i in range(100):
        inbox.post(record(ran), i, -i)
    assert len(loop.scheduled) == 1
    assert ran == []  # nothing runs on the posting thread
    loop.run()
    assert ran == [(i, -i) for i in range(100)]


def test_a_post_after_the_drain_schedules_again() -> None:
    loop = FakeLoop()
    inbox = LoopInbox(loop.schedule)
    ran: list[Any] = []
    inbox.post(record(ran), 1, None)
    loop.run()
    inbox.post(record(ran), 2, None)
    assert len(loop.scheduled) == 1
    loop.run()
    assert ran == [(1, None), (2, None)]


def test_a_post_during_the_drain_is_never_lost() -> None:
    loop = FakeLoop()
    inbox = LoopInbox(loop.schedule)
    ran: list[Any] = []

    def post_more(a: Any, b: Any) -> None:
        ran.append((a, b))
        if a < 5:
            inbox.post(post_more, a + 1, b)

    inbox.post(post_more, 0, "x")
    loop.run()
    # Each item ran exactly once, in order, by this drain or one it scheduled.
    assert ran == [(i, "x") for i in range(6)]
    assert loop.scheduled == []


def test_a_post_during_the_drain_runs_after_the_items_before_it() -> None:
    loop = FakeLoop()
    inbox = LoopInbox(loop.schedule)
    ran: list[Any] = []
    inbox.post(lambda a, b: inbox.post(record(ran), "late", None), None, None)
    inbox.post(record(ran), "early", None)
    loop.run()
    assert ran == [("early", None), ("late", None)]


def test_an_exception_is_logged_and_the_rest_still_run(caplog: pytest.LogCaptureFixture) -> None:
    loop = FakeLoop()
    inbox = LoopInbox(loop.schedule)
    ran: list[Any] = []

    def boom(a: Any, b: Any) -> None:
        raise ValueError("boom")

    inbox.post(record(ran), 1, None)
    inbox.post(boom, None, None)
    inbox.post(record(ran), 2, None)
    with caplog.at_level(logging.ERROR, logger="asyncwsgi.error"):
        loop.run()
    assert ran == [(1, None), (2, None)]
    [entry] = caplog.records
    assert entry.name == "asyncwsgi.error"
    assert entry.getMessage() == "error in event loop callback"
    assert entry.exc_info is not None and isinstance(entry.exc_info[1], ValueError)


def test_a_schedule_that_raises_leaves_the_inbox_able_to_schedule_later() -> None:
    loop = FakeLoop()
    inbox = LoopInbox(loop.schedule)
    ran: list[Any] = []
    loop.refuse = True
    inbox.post(record(ran), 1, None)  # the closed loop's error does not reach the worker
    assert loop.scheduled == []
    loop.refuse = False
    inbox.post(record(ran), 2, None)
    assert len(loop.scheduled) == 1
    loop.run()
    # The item posted while the loop refused is still there for the next drain.
    assert ran == [(1, None), (2, None)]


async def test_worker_threads_posting_to_a_real_loop() -> None:
    loop = asyncio.get_running_loop()
    schedules = 0

    def schedule(callback: Callable[[], None]) -> None:
        nonlocal schedules
        schedules += 1
        loop.call_soon_threadsafe(callback)

    inbox = LoopInbox(schedule)
    threads, per_thread = 8, 2000
    total = threads * per_thread
    seen: dict[int, list[int]] = {t: [] for t in range(threads)}
    everything = asyncio.Event()
    count = 0

    def arrived(thread: int, i: int) -> None:
        nonlocal count
        # On the loop's own thread, as call_soon_threadsafe promises.
        assert threading.get_ident() == loop_thread
        seen[thread].append(i)
        count += 1
        if count == total:
            everything.set()

    loop_thread = threading.get_ident()
    barrier = threading.Barrier(threads)

    def worker(thread: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            inbox.post(arrived, thread, i)

    workers = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    await asyncio.wait_for(everything.wait(), 10)
    for w in workers:
        w.join(5)
    # Every callback ran once, each thread's in the order it posted them ...
    assert all(seen[t] == list(range(per_thread)) for t in range(threads))
    # ... in batches: far fewer wake-ups of the loop than posts.
    assert schedules <= total // 10, f"{schedules} schedules for {total} posts"
