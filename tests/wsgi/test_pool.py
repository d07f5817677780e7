"""The worker thread pool (``asyncwsgi.wsgi.pool``): a fixed core that grows while the
work waits on I/O and not while it computes, shrinks when idle, and stops cleanly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from asyncwsgi.wsgi import pool as pool_module
from asyncwsgi.wsgi.pool import ThreadPool


@pytest.fixture
def make_pool() -> Iterator[Callable[..., ThreadPool]]:
    made: list[ThreadPool] = []

    def make(threads: int, **kw: int) -> ThreadPool:
        made.append(ThreadPool(threads, **kw))
        return made[-1]

    yield make
    for pool in made:
        assert pool.shutdown(5.0) == []


def run_jobs(pool: ThreadPool, job: Callable[[], None], count: int) -> float:
    """Submit ``count`` jobs at once; seconds until all are done."""
    done = threading.Semaphore(0)

    def work(a: object, b: object) -> None:
        job()
        done.release()

    began = time.monotonic()
    for _ in range(count):
        pool.submit(work, None, None)
    for _ in range(count):
        assert done.acquire(timeout=30)
    return time.monotonic() - began


def sleep_10ms() -> None:
    time.sleep(0.01)


def compute_10ms() -> None:
    end = time.thread_time() + 0.01
    while time.thread_time() < end:
        pass


def test_a_fixed_pool_never_grows(make_pool: Callable[..., ThreadPool]) -> None:
    pool = make_pool(4)
    run_jobs(pool, sleep_10ms, 50)
    run_jobs(pool, sleep_10ms, 200)
    assert pool.size == 4


def test_the_pool_grows_while_jobs_wait_on_io(make_pool: Callable[..., ThreadPool]) -> None:
    pool = make_pool(4, max_threads=64)
    run_jobs(pool, sleep_10ms, 20)  # learns that jobs are long
    time.sleep(pool_module.CPU_LOOK_S)  # and that the process is not busy
    took = run_jobs(pool, sleep_10ms, 256)
    assert 4 < pool.size <= 64
    # 256 waits of 10 ms on 4 threads take 0.64 s; overlapped, far less.
    assert took < 0.5, (took, pool.size)


def test_the_pool_does_not_grow_for_cpu_bound_jobs(make_pool: Callable[..., ThreadPool]) -> None:
    pool = make_pool(4, max_threads=64)
    run_jobs(pool, compute_10ms, 20)
    time.sleep(pool_module.CPU_LOOK_S)
    run_jobs(pool, compute_10ms, 60)
    # A burst after a quiet spell may double the pool before the CPU use shows; no more.
    assert pool.size <= 8, pool.size
    grown = pool.size
    run_jobs(pool, compute_10ms, 60)
    assert pool.size == grown, "the CPU is busy: no growth"


def test_the_pool_does_not_grow_for_short_jobs(make_pool: Callable[..., ThreadPool]) -> None:
    pool = make_pool(2, max_threads=64)
    run_jobs(pool, lambda: time.sleep(0.0001), 2000)
    assert pool.size == 2


def test_extra_threads_go_when_idle(
    make_pool: Callable[..., ThreadPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_module, "IDLE_TIMEOUT_S", 0.2)
    pool = make_pool(2, max_threads=32)
    run_jobs(pool, sleep_10ms, 20)
    time.sleep(pool_module.CPU_LOOK_S)
    run_jobs(pool, sleep_10ms, 100)
    assert pool.size > 2
    deadline = time.monotonic() + 5
    while pool.size > 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.size == 2, "back to the core"
    # And it serves on, growing again when needed.
    assert run_jobs(pool, sleep_10ms, 4) < 5


def test_shutdown_finishes_the_queued_jobs_first(make_pool: Callable[..., ThreadPool]) -> None:
    pool = make_pool(2, max_threads=8)
    done: list[int] = []
    for i in range(20):
        pool.submit(lambda a, b: (time.sleep(0.001), done.append(a)), i, None)
    assert pool.shutdown(10.0) == []
    assert sorted(done) == list(range(20))
    pool.submit(lambda a, b: None, None, None)  # after shutdown: no new thread
    assert pool.size == 0
