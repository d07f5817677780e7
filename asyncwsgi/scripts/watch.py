"""Watching a file: one stat per event-loop tick, shared by every request of that tick.

Rule: nothing here imports ``http``, ``server`` or ``daemon``. The script of an embedded
application, the script of a daemon group and a site's ``.htaccess`` are all watched by a
:class:`FileWatch` (docs/DESIGN.md, "Script reloading").

* A change is any difference in (st_mtime_ns, st_size, st_ino, st_dev).
* Every request that arrives in the same event-loop tick shares one :class:`TickStat`,
  taken by the first thread that needs the answer, never on the loop: a worker thread in
  embedded mode (the request waits for it anyway), a helper thread otherwise
  (:meth:`FileWatch.in_background`, for requests that do not wait).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor

logger = logging.getLogger("asyncwsgi.error")

StatKey = tuple[int, int, int, int]


def stat_key(path: str) -> StatKey | None:
    """The identity of the file's current content, or None if it does not exist."""
    try:
        st = os.stat(path)
    except OSError:  # missing, unreadable, a symlink loop, a stale NFS handle
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def call_soon(callback: Callable[[], None]) -> None:
    """Run ``callback`` on the running event loop once the current tick is over.

    Under asyncio that is ``loop.call_soon``; under trio (an ASGI host running on trio)
    ``run_sync_soon`` of the current trio token.
    """
    try:
        asyncio.get_running_loop().call_soon(callback)
        return
    except RuntimeError:
        pass
    import trio  # only reachable when a trio host calls us

    trio.lowlevel.current_trio_token().run_sync_soon(callback)


class TickStat:
    """One stat of a file, shared by all requests that arrived in one loop tick."""

    __slots__ = ("_lock", "_stat", "done", "key", "taken_at")

    def __init__(self, stat: Callable[[], StatKey | None]) -> None:
        self._stat = stat
        self._lock = threading.Lock()
        self.done = False
        self.key: StatKey | None = None
        self.taken_at = 0.0

    def get(self) -> StatKey | None:
        if not self.done:
            with self._lock:
                if not self.done:
                    self.taken_at = time.monotonic()
                    self.key = self._stat()
                    self.done = True
        return self.key


class FileWatch:
    """A file looked at when requests arrive, at most once per loop tick."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stat_calls = 0
        self._tick: TickStat | None = None
        self._busy = False  # a look runs in the background

    def stat(self) -> StatKey | None:
        """Any thread: stat the file now (counted in :attr:`stat_calls`)."""
        self.stat_calls += 1
        return stat_key(self.path)

    # Event loop thread.
    def ticket(self) -> TickStat:
        """This tick's stat, shared by every request of the tick; nothing is stat'ed
        until a thread asks it for the answer."""
        tick = self._tick
        if tick is None:
            tick = self._tick = TickStat(self.stat)
            call_soon(self._end_tick)
        return tick

    def _end_tick(self) -> None:
        self._tick = None

    # Event loop thread (asyncio).
    def in_background(self, executor: Executor, look: Callable[[TickStat], object]) -> None:
        """Run ``look(this tick's stat)`` on ``executor``, for requests that do not wait for
        the answer; while one look runs, requests start none."""
        if self._busy:
            return
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(executor, look, self.ticket())  # raises if shut down
        self._busy = True
        future.add_done_callback(self._looked)

    def _looked(self, future: asyncio.Future[object]) -> None:
        self._busy = False
        if not future.cancelled() and future.exception() is not None:
            logger.error("could not look at %s: %s", self.path, future.exception())
