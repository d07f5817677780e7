"""A request body on its way from the connection to the application: the one body buffer.

Rule: imports nothing of the package but ``errors``; threads, no asyncio. The *producer*
(the event loop, or a daemon process's reader thread) feeds chunks, the end, or an error;
the *consumer* takes them: a worker thread with :meth:`RequestBody.read`, which waits, or
code on the event loop with :meth:`RequestBody.take`, which does not. The HTTP server,
the ASGI adapter, the daemon front and the daemon process each use a subclass that says
what happens at the few moments that differ (the hooks at the end of the class).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from asyncwsgi.errors import ClientDisconnected

# How long a worker waits for the other side (more of the body, or room to send) before
# it gives up. A client that stops is normally caught sooner by the server's timeouts;
# this only bounds a peer that never answers at all.
IO_WAIT = 60.0


class RequestBody:
    """Body chunks passed from one producer to one consumer, under one lock.

    Buffering is bounded by ``high_water``: :meth:`feed` says when the buffer is over it
    (the producer then stops reading from its source), and the consumer calls
    :meth:`_drained` once it has taken the buffer down to half of it.
    """

    __slots__ = (
        "_chunks",
        "_cond",
        "_error",
        "_high_water",
        "_offset",
        "_size",
        "eof",
        "expect_continue",
        "listener",
        "paused",
        "received",
    )

    def __init__(self, high_water: int, *, expect_continue: bool = False) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # bytes of the first chunk already taken
        self._size = 0  # bytes buffered and not yet taken
        self._error: BaseException | None = None
        self._high_water = high_water
        self.eof = False
        self.received = 0
        # The client waits for "100 Continue" before it sends the body; the first read
        # is the moment to send it (see _first_read).
        self.expect_continue = expect_continue
        # Over high_water: the producer should not feed more until the consumer drains.
        self.paused = False
        # A consumer on the event loop (the daemon front) is called when anything changes.
        self.listener: Callable[[], None] | None = None

    # -- producer side -----------------------------------------------------------------

    def feed(self, data: bytes) -> bool:
        """Add body bytes; True when the buffer is over ``high_water`` (stop feeding).

        :meth:`_paused` is told before the listener runs: a listener on the loop may take
        the buffer down again at once, and its "drained" must come after the pause.
        """
        with self._cond:
            if data:
                self._chunks.append(data)
                self._size += len(data)
                self.received += len(data)
                self._fed(len(data))
            full = self._size > self._high_water
            if full:
                self.paused = True
                self._paused()
            self._cond.notify()
        if self.listener is not None:
            self.listener()
        return full

    def feed_eof(self) -> None:
        with self._cond:
            self.eof = True
            self._cond.notify()
        if self.listener is not None:
            self.listener()

    def fail(self, exc: BaseException, *, discard: bool = False) -> None:
        """End the body with an error (the first one wins; nothing after the end).

        Bytes already buffered are still read first, unless ``discard``: then the next
        read raises at once.
        """
        with self._cond:
            if not self.eof and self._error is None:
                self._error = exc
                if discard:
                    self._chunks.clear()
                    self._size = self._offset = 0
            self._cond.notify()
        if self.listener is not None:
            self.listener()

    # -- consumer side -----------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return self._size

    @property
    def error(self) -> BaseException | None:
        return self._error

    def read(self, size: int, timeout: float = IO_WAIT) -> bytes:
        """Worker thread: up to ``size`` bytes (all that is buffered if ``size`` < 0),
        waiting for at least one; ``b""`` once the body has ended."""
        with self._cond:
            if self.expect_continue:
                self.expect_continue = False
                self._first_read()
            deadline = 0.0
            while not self._chunks:
                if self._error is not None:
                    raise self._error
                if self.eof:
                    return b""
                now = time.monotonic()
                if deadline == 0.0:
                    deadline = now + timeout
                elif now >= deadline:
                    raise ClientDisconnected("timed out waiting for the request body")
                self._cond.wait(deadline - now)
            data = self._cut(size)
            drained = self.paused and self._size <= self._high_water // 2
            if drained:
                self.paused = False
        if drained:
            self._drained(loop_side=False)
        return data

    def take(self, limit: int) -> bytes:
        """Event loop: up to ``limit`` buffered bytes without waiting (``b""`` if none)."""
        with self._cond:
            if not self._chunks or limit <= 0:
                return b""
            data = self._cut(limit)
            drained = self.paused and self._size <= self._high_water // 2
            if drained:
                self.paused = False
        if drained:
            self._drained(loop_side=True)
        return data

    def unread(self, data: bytes) -> None:
        """Event loop: put bytes taken with :meth:`take` back in front, as if never taken
        (the daemon front, when a daemon refuses a request it had not started)."""
        if not data:
            return
        with self._cond:
            chunks = self._chunks
            if self._offset:
                chunks[0] = chunks[0][self._offset :]
                self._offset = 0
            chunks.appendleft(data)
            self._size += len(data)

    def send_continue(self) -> None:
        """Event loop: the consumer is about to take the body; if the client waits for
        "100 Continue", let it send."""
        with self._cond:
            pending = self.expect_continue
            self.expect_continue = False
        if pending:
            self._continue()

    def cancel_continue(self) -> None:
        """The answer is under way: a "100 Continue" now would land inside it."""
        with self._cond:
            self.expect_continue = False

    def _cut(self, size: int) -> bytes:
        """Remove and return up to ``size`` bytes from the front (lock held, chunks not
        empty). Whole chunks are handed on without copying; a chunk that is cut keeps
        its place with an offset, so its rest is not copied again on every read."""
        chunks = self._chunks
        first = chunks[0]
        offset = self._offset
        if size < 0 or size >= self._size:
            if offset:
                chunks[0] = first[offset:]
                self._offset = 0
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
        elif len(first) - offset <= size:
            data = first[offset:] if offset else first
            chunks.popleft()
            self._offset = 0
        else:
            data = first[offset : offset + size]
            self._offset = offset + size
        self._size -= len(data)
        self._consumed(len(data))
        return data

    # -- hooks: what differs between the transports --------------------------------------

    def _fed(self, size: int) -> None:
        """Producer side, lock held: ``size`` bytes arrived."""

    def _paused(self) -> None:
        """Producer side, lock held: the buffer is over ``high_water``; stop feeding until
        :meth:`_drained`. Told on every feed that leaves it over, so a resume that came in
        between is undone."""

    def _consumed(self, size: int) -> None:
        """Consumer side, lock held: ``size`` bytes were taken."""

    def _first_read(self) -> None:
        """Worker thread, lock held: the application reads a body whose client waits for
        "100 Continue"."""

    def _continue(self) -> None:
        """Event loop: send "100 Continue" (see :meth:`send_continue`)."""

    def _drained(self, *, loop_side: bool) -> None:
        """Consumer side, lock released: the buffer is down to half of ``high_water``
        after it was over; the producer may feed again."""
