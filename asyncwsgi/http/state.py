"""State shared by every connection of one server, and the door to the application.

The event loop thread owns everything here except ``inbox.post``, which worker threads
call to hand work back to the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from asyncwsgi.http.exchange import HttpExchange
    from asyncwsgi.http.protocol import HttpProtocol

from asyncwsgi.core.inbox import LoopInbox

logger = logging.getLogger("asyncwsgi.error")


class ApplicationRunner(Protocol):
    """What the HTTP layer needs of an application: somewhere to hand a request.

    ``submit`` is called on the event loop thread once a request's headers are complete.
    It must not block: it arranges for the exchange to be answered (usually on a worker
    thread) through the exchange's thread-safe methods.
    """

    def submit(self, exchange: HttpExchange) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpLimits:
    """The limits of the HTTP layer. Those without a default are the server's settings of
    the same name (``asyncwsgi.config``; the server copies them, ``http/`` does not read
    the config); the others are this layer's own."""

    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    limit_request_body: int
    keep_alive_timeout: float
    header_timeout: float
    # A client that takes no response bytes for this long is dropped.
    send_timeout: float
    # A request body must keep coming: within this many seconds, plus one second per
    # ``body_min_rate`` bytes received (never more than this far ahead); else 408.
    body_timeout: float
    max_connections: int
    body_min_rate: int = 500
    # Body bytes buffered per request before reading from the socket pauses.
    body_buffer: int = 256 * 1024
    # Response bytes queued per connection before a writing worker thread blocks.
    write_buffer: int = 256 * 1024


class ServerState:
    """Connections, the cached Date/Server header lines and the shutdown flag."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        runner: ApplicationRunner,
        limits: HttpLimits,
        *,
        on_finish: Callable[[HttpExchange], None] | None,
        server_header: bool = True,
    ) -> None:
        self.loop = loop
        self.runner = runner
        self.limits = limits
        # Called as each request finishes (any thread): the access line, the metrics.
        self.on_finish = on_finish
        self.inbox = LoopInbox(loop.call_soon_threadsafe)
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
