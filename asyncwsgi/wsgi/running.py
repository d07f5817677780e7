"""The requests worker threads are running, and the Python stack of each: for
``--slow-request`` (a request still running after S seconds is logged with its stack,
once), ``--request-timeout`` (its stack is logged before the 504) and ``dump`` (every
thread of the process with the request it serves).

Rule: imports nothing of the package but ``core``; the watch runs on an event loop. A
worker thread adds its
request when it starts it and removes it when done (a dict item each: no lock); whoever
looks reads a copy.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable

from asyncwsgi.core.exchange import LoopExchange, RequestHead

logger = logging.getLogger("asyncwsgi.error")
_ident = threading.get_ident
_clock = time.monotonic


def describe(exchange: RequestHead, started: float, now: float, thread: str = "") -> str:
    target = exchange.path.decode("latin-1")
    if exchange.query:
        target += "?" + exchange.query.decode("latin-1")
    where = f" on thread {thread!r}" if thread else ""
    return f"{exchange.method} {target} for {now - started:.1f} s{where}"


class RunningRequests:
    """The requests of one process's worker threads, by thread ident. Recording costs a
    dict item and a clock read per request, so it is always on: ``dump`` can say what
    each thread serves."""

    def __init__(self) -> None:
        self.by_thread: dict[int, tuple[RequestHead, float]] = {}
        self.reported: set[int] = set()  # id() of requests logged as slow
        self.timed_out: dict[int, int] = {}  # id() of requests answered 504 -> thread

    # Worker thread.
    def started(self, exchange: RequestHead) -> None:
        self.by_thread[_ident()] = (exchange, _clock())

    def done(self) -> None:
        entry = self.by_thread.pop(_ident(), None)
        if (self.reported or self.timed_out) and entry is not None:
            self.forget(entry[0])

    def forget(self, exchange: RequestHead) -> None:
        """The request is over: no longer slow or stuck."""
        self.reported.discard(id(exchange))
        self.timed_out.pop(id(exchange), None)

    # Anyone.
    def snapshot(self) -> dict[int, tuple[RequestHead, float]]:
        return dict(self.by_thread)

    def older_than(self, age: float) -> list[tuple[int, RequestHead, float]]:
        limit = time.monotonic() - age
        return [(i, e, t) for i, (e, t) in self.snapshot().items() if t <= limit]

    @property
    def stuck(self) -> int:
        """Threads still running a request that was answered 504."""
        return len(self.timed_out)


def thread_name(ident: int) -> str:
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return f"thread {ident}"


def stack_of(ident: int) -> str:
    """The Python stack of a thread of this process, as a traceback prints it."""
    frame = sys._current_frames().get(ident)
    if frame is None:
        return "  (the thread has finished)\n"
    return "".join(traceback.format_stack(frame))


def dump(requests: Iterable[RunningRequests] = (), header: str = "") -> str:
    """Every thread of this process: its name, the request it runs (if any) and its
    stack."""
    now = time.monotonic()
    running: dict[int, tuple[RequestHead, float]] = {}
    for registry in requests:
        running.update(registry.snapshot())
    parts = [header] if header else []
    for ident, frame in sorted(sys._current_frames().items()):
        name = thread_name(ident)
        serving = running.get(ident)
        what = f" -- {describe(*serving, now)}" if serving is not None else ""
        parts.append(f"Thread {name!r}{what}:\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(parts)


class RequestWatch:
    """Looks at the running requests of some runners a few times a second: a request
    running longer than ``slow`` is logged with its stack (once); one running longer than
    ``timeout`` is logged with its stack and answered 504, its thread left to finish (a
    thread cannot be killed) and counted as stuck until it does."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None,
        registries: Callable[[], Iterable[RunningRequests]],
        *,
        slow: float = 0.0,
        timeout: float = 0.0,
    ) -> None:
        self.loop = loop
        self.registries = registries
        self.slow = slow
        self.timeout = timeout
        shortest = min(t for t in (slow, timeout) if t) if slow or timeout else 1.0
        self.interval = max(0.05, min(1.0, shortest / 4))
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """On the event loop: look every ``interval``. (Without a loop, as in a daemon
        process, call :meth:`check` from a thread of one's own.)"""
        if self.loop is not None and (self.slow or self.timeout):
            self._timer = self.loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _tick(self) -> None:
        assert self.loop is not None
        self._timer = self.loop.call_later(self.interval, self._tick)
        self.check()

    def check(self) -> None:
        """One look: log what is slow, time out what is overdue."""
        now = time.monotonic()
        for registry in self.registries():
            for ident, (exchange, started) in registry.snapshot().items():
                age, key = now - started, id(exchange)
                if key in registry.timed_out:
                    continue
                if self.timeout and age >= self.timeout:
                    registry.timed_out[key] = ident
                    if registry.by_thread.get(ident, (None,))[0] is not exchange:
                        registry.timed_out.pop(key, None)  # it ended meanwhile
                        continue
                    answered = isinstance(exchange, LoopExchange)
                    logger.error(
                        "request %s ran longer than %g s (--request-timeout); %s. Its stack:\n%s",
                        describe(exchange, started, now, thread_name(ident)),
                        self.timeout,
                        "answering 504 and leaving its thread to finish (stuck until it does)"
                        if answered
                        else "the front answers 504 and replaces this process",
                        stack_of(ident),
                    )
                    if isinstance(exchange, LoopExchange):
                        exchange.loop_time_out("504 Gateway Timeout", b"Gateway Timeout\n")
                elif self.slow and age >= self.slow and key not in registry.reported:
                    registry.reported.add(key)
                    if registry.by_thread.get(ident, (None,))[0] is not exchange:
                        registry.reported.discard(key)  # it ended meanwhile
                        continue
                    logger.warning(
                        "slow request: %s (--slow-request %g). Its stack:\n%s",
                        describe(exchange, started, now, thread_name(ident)),
                        self.slow,
                        stack_of(ident),
                    )
