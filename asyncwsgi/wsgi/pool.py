"""Worker threads fed from one queue: a fixed core, and more while requests wait on I/O.

Lighter than ``concurrent.futures.ThreadPoolExecutor`` on the hot path: no future per job
and no result plumbing; a job is a function and two arguments.

The pool keeps ``threads`` workers for good. With ``max_threads`` above that it grows by
a thread each time a worker takes a job and finds more waiting (every worker is busy)
*and* the work is waiting rather than computing: the jobs take long
(:data:`GROW_MIN_JOB_S` or more on average) but use little CPU
(:data:`GROW_MAX_JOB_CPU_S` or less on average), and the process used less than
:data:`GROW_MAX_CPU` of a core over the last look (:data:`CPU_LOOK_S`). (The CPU a job
uses, not only the process's, tells computing from waiting on a machine other processes
keep busy too.) An application
that sleeps on a database or an upstream gets the threads to overlap its waits; a
CPU-bound one, or one whose requests are short, keeps its core (more threads would only
queue for the GIL and spread each request's latency). A thread beyond the core that finds
no job for :data:`IDLE_TIMEOUT_S` exits. Nothing is locked per job, and one job in
:data:`_SAMPLE` is timed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any, Final

logger = logging.getLogger("asyncwsgi.error")
_clock = time.perf_counter

_Job = tuple[Callable[[Any, Any], None], Any, Any]

GROW_MIN_JOB_S: Final = 0.002  # average job length (wall clock) that counts as waiting
GROW_MAX_CPU: Final = 0.8  # cores the process may use for the pool to grow
GROW_MAX_JOB_CPU_S: Final = 0.001  # average CPU time of a job above which it never grows
_SAMPLE: Final = 16  # a worker times one job in this many
CPU_LOOK_S: Final = 0.1  # how often the process's CPU use is looked at, at most
IDLE_TIMEOUT_S: Final = 10.0  # an extra thread without a job this long exits
_SMOOTHING: Final = 0.1  # weight of the newest job in the average job length


class ThreadPool:
    def __init__(
        self, threads: int, *, max_threads: int = 0, name: str = "asyncwsgi-worker"
    ) -> None:
        if threads < 1:
            raise ValueError("a thread pool needs at least one thread")
        self.limit = max(threads, max_threads)
        self.name = name
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._serial = 0
        self._stopping = False
        self.average_job_s = 0.0
        self.average_job_cpu_s = -1.0  # none timed yet: no growth
        self._cpu_at = (time.monotonic(), time.process_time())
        self._cpu_use = 1.0  # cores over the last look; none yet: assume busy
        self._budget = 0  # threads it may still add before the next look
        for _ in range(threads):
            self._start(core=True)

    @property
    def size(self) -> int:
        return len(self._threads)

    def submit(self, fn: Callable[[Any, Any], None], a: Any, b: Any) -> None:
        self._jobs.put((fn, a, b))

    def _may_grow(self) -> bool:
        """Whether the work waits rather than computes (see the module docstring). The
        pool at most doubles from one look at the CPU to the next, so a burst of
        CPU-bound work after a quiet spell cannot add many threads before it shows."""
        now = time.monotonic()
        then, cpu_then = self._cpu_at
        if now - then >= CPU_LOOK_S:
            cpu = time.process_time()
            self._cpu_use = (cpu - cpu_then) / (now - then)
            self._cpu_at = (now, cpu)
            self._budget = len(self._threads)
        if (
            self.average_job_s < GROW_MIN_JOB_S
            or not 0.0 <= self.average_job_cpu_s <= GROW_MAX_JOB_CPU_S
            or self._cpu_use >= GROW_MAX_CPU
            or self._budget <= 0
        ):
            return False
        self._budget -= 1
        return True

    def _start(self, *, core: bool) -> None:
        with self._lock:
            if self._stopping or (not core and len(self._threads) >= self.limit):
                return
            self._serial += 1
            thread = threading.Thread(
                target=self._work, args=(core,), name=f"{self.name}-{self._serial}", daemon=True
            )
            self._threads.append(thread)
        thread.start()

    def _work(self, core: bool) -> None:
        jobs_queue = self._jobs
        get = jobs_queue.get
        backlog = jobs_queue.qsize
        clock = _clock
        cpu_clock = time.thread_time
        timeout = None if core else IDLE_TIMEOUT_S
        jobs = 0
        while True:
            try:
                job = get(timeout=timeout)
            except Empty:
                job = None  # an extra thread with nothing to do
            if job is None:
                with self._lock:
                    self._threads.remove(threading.current_thread())
                return
            if backlog() and len(self._threads) < self.limit and self._may_grow():
                self._start(core=False)  # more jobs wait: every worker is busy
            fn, a, b = job
            jobs += 1
            # One job in _SAMPLE is timed (the thread's CPU clock is a system call).
            if jobs % _SAMPLE != 1:
                try:
                    fn(a, b)
                except BaseException:
                    logger.exception("unhandled error in a worker thread")
                del job, fn, a, b
                continue
            began, cpu_began = clock(), cpu_clock()
            try:
                fn(a, b)
            except BaseException:
                logger.exception("unhandled error in a worker thread")
            took, cpu = clock() - began, cpu_clock() - cpu_began
            del job, fn, a, b
            if self.average_job_cpu_s < 0.0:  # the first timed
                self.average_job_s, self.average_job_cpu_s = took, cpu
            else:
                self.average_job_s += (took - self.average_job_s) * _SMOOTHING
                self.average_job_cpu_s += (cpu - self.average_job_cpu_s) * _SMOOTHING

    def shutdown(self, timeout: float | None = None) -> list[str]:
        """Stop the threads once the jobs queued before this call are done.

        Returns the names of threads still running after ``timeout`` (they are daemon
        threads, so they do not keep the process alive).
        """
        with self._lock:
            self._stopping = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive()]

    async def stop(self, timeout: float = 1.0) -> None:
        """Event loop: :meth:`shutdown` off the loop; threads still busy are logged."""
        stuck = await asyncio.to_thread(self.shutdown, timeout)
        if stuck:
            logger.warning("%d worker thread(s) still busy at exit", len(stuck))
