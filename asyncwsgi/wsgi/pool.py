"""A fixed set of worker threads fed from one queue.

Lighter than ``concurrent.futures.ThreadPoolExecutor`` on the hot path: no future per job
and no result plumbing; a job is a function and two arguments.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

logger = logging.getLogger("asyncwsgi.error")

_Job = tuple[Callable[[Any, Any], None], Any, Any]


class ThreadPool:
    def __init__(self, threads: int, *, name: str = "asyncwsgi-worker") -> None:
        if threads < 1:
            raise ValueError("a thread pool needs at least one thread")
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        return len(self._threads)

    def submit(self, fn: Callable[[Any, Any], None], a: Any, b: Any) -> None:
        self._jobs.put((fn, a, b))

    def _work(self) -> None:
        get = self._jobs.get
        while True:
            job = get()
            if job is None:
                return
            fn, a, b = job
            try:
                fn(a, b)
            except BaseException:
                logger.exception("unhandled error in a worker thread")
            del job, fn, a, b

    def shutdown(self, timeout: float | None = None) -> list[str]:
        """Stop the threads once the jobs queued before this call are done.

        Returns the names of threads still running after ``timeout`` (they are daemon
        threads, so they do not keep the process alive).
        """
        for _ in self._threads:
            self._jobs.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return [t.name for t in self._threads if t.is_alive()]

    async def stop(self, timeout: float = 1.0) -> None:
        """Event loop: :meth:`shutdown` off the loop; threads still busy are logged."""
        stuck = await asyncio.to_thread(self.shutdown, timeout)
        if stuck:
            logger.warning("%d worker thread(s) still busy at exit", len(stuck))
