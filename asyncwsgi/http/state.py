"""State shared by every connection of one server, and the door to the application.

The event loop thread owns everything here except :meth:`LoopInbox.post`, which worker
threads call to hand work back to the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from asyncwsgi.http.protocol import Exchange, HttpProtocol

logger = logging.getLogger("asyncwsgi.error")


class ApplicationRunner(Protocol):
    """What the HTTP layer needs of an application: somewhere to hand a request.

    ``submit`` is called on the event loop thread once a request's headers are complete.
    It must not block: it arranges for the exchange to be answered (usually on a worker
    thread) through the exchange's thread-safe methods.
    """

    def submit(self, exchange: Exchange) -> None: ...


@dataclass(frozen=True, slots=True)
class HttpLimits:
    limit_request_line: int = 8190
    limit_request_fields: int = 100
    limit_request_field_size: int = 8190
    limit_request_body: int = 1 << 30
    keep_alive_timeout: float = 5.0
    header_timeout: float = 10.0
    # A client that takes no response bytes for this long is dropped.
    send_timeout: float = 60.0
    # A request body must keep coming: within this many seconds, plus one second per
    # ``body_min_rate`` bytes received (never more than this far ahead); else 408.
    body_timeout: float = 20.0
    body_min_rate: int = 500
    max_connections: int = 4096
    # Body bytes buffered per request before reading from the socket pauses.
    body_buffer: int = 256 * 1024
    # Response bytes queued per connection before a writing worker thread blocks.
    write_buffer: int = 256 * 1024


class LoopInbox:
    """Worker threads post callables here; the loop runs them in batches.

    One ``call_soon_threadsafe`` wakes the loop for however many completions arrived
    before it got round to them, instead of one wake-up per completion.
    """

    __slots__ = ("_call_soon_threadsafe", "_items", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._items: deque[tuple[Callable[[Any, Any], None], Any, Any]] = deque()
        self._scheduled = False
        self._call_soon_threadsafe = loop.call_soon_threadsafe

    def post(self, fn: Callable[[Any, Any], None], a: Any, b: Any) -> None:
        self._items.append((fn, a, b))
        if not self._scheduled:
            self._scheduled = True
            try:
                self._call_soon_threadsafe(self._drain)
            except RuntimeError:  # loop closed during shutdown: nobody left to answer
                self._scheduled = False

    def _drain(self) -> None:
        # Reset first: an item posted from now on either is seen by this loop or
        # schedules a new drain.
        self._scheduled = False
        items = self._items
        popleft = items.popleft
        while items:
            fn, a, b = popleft()
            try:
                fn(a, b)
            except Exception:
                logger.exception("error in event loop callback")


class ServerState:
    """Connections, the cached Date/Server header lines and the shutdown flag."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        runner: ApplicationRunner,
        limits: HttpLimits,
        *,
        access_log: logging.Logger | None,
        server_header: bool = True,
    ) -> None:
        self.loop = loop
        self.runner = runner
        self.limits = limits
        self.access_log = access_log
        self.inbox = LoopInbox(loop)
        self.connections: set[HttpProtocol] = set()
        self.shutting_down = False
        self.requests = 0
        self._server_line = b"Server: asyncwsgi\r\n" if server_header else b""
        self.server_headers = b""
        self._second = -1
        # One timer for the whole server: refreshes the Date header and enforces every
        # connection's deadline, so requests never create or cancel timers of their own.
        self._interval = max(
            0.05,
            min(
                1.0,
                limits.keep_alive_timeout / 4,
                limits.header_timeout / 4,
                limits.body_timeout / 4,
            ),
        )
        self._timer: asyncio.TimerHandle | None = None
        self._tick()

    def _tick(self) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self.server_headers = (
                b"Date: "
                + formatdate(now, usegmt=True).encode("ascii")
                + b"\r\n"
                + self._server_line
            )
        if self.connections:
            monotonic = time.monotonic()
            for connection in list(self.connections):
                try:
                    connection.check_deadline(monotonic)
                except Exception:  # one connection must not stop every timeout
                    logger.exception("error checking a connection's deadline")
        # Wake at the next second boundary if that comes first, so Date is never stale.
        delay = min(self._interval, 1.0 - (now % 1.0) + 0.001)
        self._timer = self.loop.call_later(delay, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
