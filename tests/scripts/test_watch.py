"""``asyncwsgi.scripts.watch`` in-process: one stat of a file per event-loop tick.

``stat_key`` and change detection are checked on real files in ``tmp_path``, with
``os.utime`` and ``os.replace`` standing in for editors. ``ticket()`` needs the running
loop, so those tests are ``async`` (and one runs under ``trio.run``); ``get()`` is called
from plain threads, as workers call it. Waiting polls a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import trio

from asyncwsgi.scripts.watch import FileWatch, StatKey, TickStat, stat_key

pytestmark = pytest.mark.timeout(30)

DEADLINE = 5.0
ONE_SECOND = 1_000_000_000


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "app.wsgi"
    path.write_bytes(b"version 1\n")
    return path


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(2, thread_name_prefix="look")
    yield pool
    pool.shutdown(wait=True)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.001)


def set_mtime(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


# -- stat_key ----------------------------------------------------------------------------


def test_stat_key_is_mtime_size_inode_device(script: Path) -> None:
    st = os.stat(script)
    assert stat_key(str(script)) == (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def test_a_missing_file_gives_none(tmp_path: Path) -> None:
    assert stat_key(str(tmp_path / "nope.wsgi")) is None
    assert stat_key(str(tmp_path / "nope" / "deeper.wsgi")) is None


def test_a_file_that_comes_and_goes(tmp_path: Path) -> None:
    path = tmp_path / "late.wsgi"
    assert stat_key(str(path)) is None
    path.write_bytes(b"x")
    assert stat_key(str(path)) is not None
    path.unlink()
    assert stat_key(str(path)) is None


# -- what counts as a change ---------------------------------------------------------------


def test_the_same_file_untouched_is_no_change(script: Path) -> None:
    assert stat_key(str(script)) == stat_key(str(script))


def test_a_rewrite_with_same_size_and_mtime_in_place_is_not_seen(script: Path) -> None:
    # The limit of the rule: only (mtime, size, inode, device) are compared.
    before = stat_key(str(script))
    assert before is not None
    script.write_bytes(b"version 2\n")
    set_mtime(script, before[0])
    assert stat_key(str(script)) == before


def test_a_new_size_is_a_change(script: Path) -> None:
    before = stat_key(str(script))
    assert before is not None
    script.write_bytes(b"version 10\n")
    set_mtime(script, before[0])
    after = stat_key(str(script))
    assert after is not None and after != before
    assert after[1] != before[1]


def test_an_atomic_rename_is_a_change_even_with_same_size_and_mtime(script: Path) -> None:
    # Editors and deploy tools write a new file and rename it over the old one.
    before = stat_key(str(script))
    assert before is not None
    new = script.with_name("app.wsgi.tmp")
    new.write_bytes(b"version 2\n")  # same size
    set_mtime(new, before[0])  # same mtime
    os.replace(new, script)
    after = stat_key(str(script))
    assert after is not None
    assert after[:2] == before[:2]
    assert after != before  # the inode differs


def test_an_mtime_moved_back_in_time_is_a_change(script: Path) -> None:
    # A restored backup or a checkout can carry an older mtime than the file had.
    before = stat_key(str(script))
    assert before is not None
    set_mtime(script, before[0] - 3600 * ONE_SECOND)
    after = stat_key(str(script))
    assert after is not None and after != before
    assert after[0] < before[0]


def test_an_mtime_moved_on_is_a_change(script: Path) -> None:
    before = stat_key(str(script))
    assert before is not None
    set_mtime(script, before[0] + ONE_SECOND)
    assert stat_key(str(script)) != before


# -- TickStat ------------------------------------------------------------------------------


def counting_stat(
    key: StatKey | None = (1, 2, 3, 4),
) -> tuple[list[int], Callable[[], StatKey | None]]:
    calls: list[int] = []

    def stat() -> StatKey | None:
        calls.append(threading.get_ident())
        return key

    return calls, stat


def test_tick_stat_stats_nothing_until_get() -> None:
    calls, stat = counting_stat()
    tick = TickStat(stat)
    assert calls == []
    assert not tick.done
    assert tick.get() == (1, 2, 3, 4)
    assert tick.done
    assert tick.key == (1, 2, 3, 4)
    assert tick.taken_at > 0
    assert tick.get() == (1, 2, 3, 4)
    assert len(calls) == 1


def test_tick_stat_keeps_a_missing_file_answer() -> None:
    calls, stat = counting_stat(None)
    tick = TickStat(stat)
    assert tick.get() is None
    assert tick.get() is None
    assert len(calls) == 1  # None is an answer, not "not taken yet"


class SlowWatch(FileWatch):
    """A stat that takes a moment, so the other threads pile up behind the first."""

    def stat(self) -> StatKey | None:
        time.sleep(0.02)
        return super().stat()


def test_many_threads_on_one_tick_stat_stat_once(script: Path) -> None:
    watch = SlowWatch(str(script))
    tick = TickStat(watch.stat)
    threads = 16
    barrier = threading.Barrier(threads)
    results: list[StatKey | None] = []

    def get() -> None:
        barrier.wait()  # all ask at the same moment
        results.append(tick.get())

    workers = [threading.Thread(target=get, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(DEADLINE)
    assert len(results) == threads
    assert set(results) == {stat_key(str(script))}
    assert watch.stat_calls == 1


# -- FileWatch.ticket --------------------------------------------------------------------


async def test_one_ticket_per_tick(script: Path) -> None:
    watch = FileWatch(str(script))
    first = watch.ticket()
    assert watch.ticket() is first  # same tick: shared
    assert watch.stat_calls == 0  # taking a ticket stats nothing
    await asyncio.sleep(0)
    second = watch.ticket()
    assert second is not first
    assert watch.stat_calls == 0


async def test_stat_calls_count_each_tick_that_asked(script: Path) -> None:
    watch = FileWatch(str(script))
    for _ in range(3):
        ticket = watch.ticket()
        # Two requests of the tick ask, on worker threads: one stat.
        for _ in range(2):
            await asyncio.to_thread(ticket.get)
        await asyncio.sleep(0)
    watch.ticket()  # a tick nobody asked about costs nothing
    assert watch.stat_calls == 3


async def test_a_ticket_stats_when_asked_not_when_made(script: Path) -> None:
    watch = FileWatch(str(script))
    before = await asyncio.to_thread(watch.ticket().get)
    await asyncio.sleep(0)
    ticket = watch.ticket()
    # The stat is taken when a thread asks, not when the ticket is made.
    set_mtime(script, os.stat(script).st_mtime_ns + ONE_SECOND)
    after = await asyncio.to_thread(ticket.get)
    assert after != before


def test_ticket_under_trio(script: Path) -> None:
    # An ASGI host on trio: the tick ends through the trio token's run_sync_soon.
    watch = FileWatch(str(script))

    async def main() -> None:
        first = watch.ticket()
        assert watch.ticket() is first
        for _ in range(1000):
            await trio.sleep(0)
            if watch.ticket() is not first:
                break
        else:
            raise AssertionError("the trio tick never ended")
        assert watch.stat_calls == 0

    trio.run(main)


# -- FileWatch.in_background -------------------------------------------------------------


async def test_in_background_looks_on_the_executor_with_this_ticks_stat(
    script: Path, executor: ThreadPoolExecutor
) -> None:
    watch = FileWatch(str(script))
    seen: list[tuple[TickStat, str, StatKey | None]] = []

    def look(tick: TickStat) -> None:
        seen.append((tick, threading.current_thread().name, tick.get()))

    ticket = watch.ticket()
    watch.in_background(executor, look)
    await until(lambda: not watch._busy, "the look is done")
    [(tick, thread, key)] = seen
    assert tick is ticket
    assert thread.startswith("look")
    assert key == stat_key(str(script))
    assert watch.stat_calls == 1


async def test_one_look_at_a_time(script: Path, executor: ThreadPoolExecutor) -> None:
    watch = FileWatch(str(script))
    release = threading.Event()
    looks: list[TickStat] = []

    def slow_look(tick: TickStat) -> None:
        looks.append(tick)
        release.wait(DEADLINE)

    watch.in_background(executor, slow_look)
    await until(lambda: len(looks) == 1, "the first look runs")
    # Later requests, this tick and the next, while the look runs: they start none.
    watch.in_background(executor, slow_look)
    await asyncio.sleep(0)
    watch.in_background(executor, slow_look)
    release.set()
    await until(lambda: not watch._busy, "the look is done")
    assert len(looks) == 1
    # Once it is done, the next request starts one again.
    watch.in_background(executor, slow_look)
    await until(lambda: not watch._busy, "the second look is done")
    assert len(looks) == 2


async def test_an_exception_in_the_look_is_logged(
    script: Path, executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    watch = FileWatch(str(script))

    def broken(tick: TickStat) -> None:
        raise OSError("stale handle")

    with caplog.at_level(logging.ERROR, logger="asyncwsgi.error"):
        watch.in_background(executor, broken)
        await until(lambda: not watch._busy, "the look is done")
    [entry] = [r for r in caplog.records if r.name == "asyncwsgi.error"]
    assert entry.getMessage() == f"could not look at {script}: stale handle"
    # A failed look does not stop the next one.
    looked = threading.Event()
    watch.in_background(executor, lambda tick: looked.set())
    await until(looked.is_set, "the next look runs")
