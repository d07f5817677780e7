"""One ASGI ``http`` request served by a WSGI application: the exchange and its body.

The line through this module is the thread a method runs on, as in the HTTP server:

* WORKER SIDE: the :class:`~asyncwsgi.core.exchange.Exchange` methods of
  :class:`AsgiExchange` and ``read`` of :class:`AsgiBody` run on a pool thread, inside
  ``call_application``. They never call ``send`` or ``receive``: they queue finished ASGI
  messages and wake the event loop through the request's link
  (:mod:`asyncwsgi.asgi.links`). They block (never buffer without bound) when the client
  is slower than the application, and raise ``ClientDisconnected`` once the request is
  over on the loop side, so no worker waits for a request that is gone.
* LOOP SIDE: ``_loop_pump`` and ``_loop_receive`` (and everything named ``_loop_*``)
  run on the host's event loop; they are the only code that touches ``send`` and
  ``receive``.

A request costs one hop in (a job on the pool's queue) and, for a one-piece response,
one wake-up back, shared with every other response that finished meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from asyncwsgi.asgi.links import Cancellable, Link, Spawn
from asyncwsgi.asgi.scope import (
    Message,
    Receive,
    Scope,
    Send,
    expects_body,
    expects_continue,
    fill_request,
    response_start,
)
from asyncwsgi.core.body import IO_WAIT, RequestBody
from asyncwsgi.core.exchange import Exchange
from asyncwsgi.core.head import PLAIN_TEXT
from asyncwsgi.errors import BadRequestBody, ClientDisconnected

logger = logging.getLogger("asyncwsgi.error")

# Response bytes queued for the loop before a writing worker waits for the host to take
# them. Each message also costs MESSAGE_COST, so a stream of tiny chunks cannot queue
# an unbounded number of messages either.
WRITE_BUFFER = 256 * 1024
_WRITE_LOW = WRITE_BUFFER // 2  # ... and goes on once the queue is down to this
MESSAGE_COST = 512
# Request body read ahead of the application before we stop calling receive(); the host
# then stops reading from the socket, and the client is held back.
BODY_BUFFER = 256 * 1024
_FILE_BLOCK = 64 * 1024


class AsgiBody(RequestBody):
    """The request body, fed by the loop from ``receive()`` messages."""

    __slots__ = ("_exchange",)

    def __init__(self, exchange: AsgiExchange) -> None:
        super().__init__(BODY_BUFFER)
        self._exchange = exchange

    def feed_message(self, data: bytes, more: bool) -> None:
        """Loop side: one ``http.request`` message's body and ``more_body``."""
        self.feed(data)
        if not more:
            self.feed_eof()

    def feed_eof(self) -> None:
        # Nothing more to receive: the loop need not hold back (it goes on calling
        # receive() to hear of a disconnect).
        with self._cond:
            self.paused = False
        super().feed_eof()

    def _drained(self, *, loop_side: bool) -> None:
        # The loop calls receive() again once woken.
        self._exchange._signal()


def _wake(exchange: AsgiExchange, _: object) -> None:
    exchange._loop_wake()


class AsgiExchange(Exchange):
    """One ASGI ``http`` request as the WSGI bridge sees it.

    The request attributes are fixed at creation. The response methods are for the one
    worker thread that serves the request; the ``_loop_*`` methods for the event loop.
    """

    __slots__ = (
        "_allowed",
        "_body",
        "_body_known",
        "_length_left",
        "_link",
        "_outbox",
        "_overrun",
        "_posted",
        "_receiver",
        "_receiver_waiter",
        "_sender_waiter",
        "_sent",
        "_signalled",
        "_started",
        "_watch",
        "_writer",
        "disconnected",
        "done",
        "finished",
        "scope",
    )

    def __init__(self, scope: Scope, link: Link) -> None:
        self.scope = scope
        fill_request(self, scope)
        self._link = link
        # Worker -> loop: ASGI messages to send, in order; None means "abort".
        self._outbox: deque[Message | None] = deque()
        self._signalled = False  # a wake-up of this exchange is pending on the loop
        self._started = False
        self.finished = False  # the worker has queued its last message
        self._allowed = True
        self._length_left = -1  # body bytes the Content-Length still promises; -1: none
        self._overrun = False
        self._posted = 0  # bytes (plus message costs) queued by the worker
        self._sent = 0  # of those, bytes the host has taken (loop writes it)
        self._writer: threading.Event | None = None
        self._body: AsgiBody | None = None
        self._body_known = False  # the worker has decided whether there is a body
        self._watch = False  # the response streams: the loop should watch for a disconnect
        # Loop side.
        self.disconnected = False  # the client is gone or the request was abandoned
        self.done = False  # the loop side has finished with this request
        self._sender_waiter: Any = None
        self._receiver_waiter: Any = None
        self._receiver: Cancellable | None = None

    # -- worker side: the Exchange protocol --------------------------------------------

    @property
    def head_sent(self) -> bool:
        return self._started

    @property
    def body_allowed(self) -> bool:
        return self._allowed

    def read_body(self, size: int) -> bytes:
        body = self._body
        if body is None:
            if self._body_known:
                return b""
            body = self._open_body()
            if body is None:
                return b""
        return body.read(size)

    def respond(
        self,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        final: bool,
        body_length: int = -1,
    ) -> None:
        """Queue the ``http.response.start`` message with the first part of the body."""
        if self._started:
            raise RuntimeError("response head already sent")
        if final and body_length < 0:
            body_length = len(body)
        start, self._length_left, self._allowed = response_start(
            status, headers, is_head=self.method == "HEAD", body_length=body_length
        )
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        self._started = True
        self._outbox.append(start)
        if final:
            self._send(body, True)
            return
        # A streamed response: have the loop watch for a client that goes away meanwhile
        # (on some hosts send() stays silent then), unless that would ask for a
        # 100-continue body the application has not read. Watching reads the body
        # ahead, so it must go where read_body() finds it.
        if self._body_known or not expects_continue(self.headers):
            if not self._body_known:
                self._open_body()
            self._watch = True
        self._signal()
        self._send(body, False)

    def write(self, data: bytes, *, final: bool = False) -> None:
        """Queue more of the body; blocks while the host is behind."""
        if not self._started:
            raise RuntimeError("write() before the response head")
        self._send(data, final)

    def sendfile(self, file: Any, offset: int, count: int) -> None:
        """Send ``count`` bytes of a file, read here in blocks (an ASGI host has no socket
        to hand to ``os.sendfile``)."""
        if not self._started:
            raise RuntimeError("sendfile() before the response head")
        if self._length_left >= 0:
            count = min(count, self._length_left)
        if not self._allowed or count <= 0:
            self._send(b"", True)
            return
        file.seek(offset)
        left = count
        while left > 0:
            block = file.read(min(left, _FILE_BLOCK))
            if not block:
                break
            left -= len(block)
            self._send(block, False)
        self._send(b"", True)

    def send_error(self, status: str, message: bytes) -> None:
        """Answer with a bridge-made error if nothing has been sent yet, else abort."""
        if self._started:
            self.abort()
            return
        self.respond(status, PLAIN_TEXT, message, final=True)

    def abort(self) -> None:
        """End the response where it stands; the host closes the connection."""
        if not self.finished:
            self.finished = True
            self._outbox.append(None)
            self._signal()

    # -- worker side: internals --------------------------------------------------------

    def _open_body(self) -> AsgiBody | None:
        self._body_known = True
        if not expects_body(self.headers, self.http_version):
            return None
        body = self._body = AsgiBody(self)
        if self.disconnected or self.done:
            # The loop side is over and will never feed it (it checks _body after
            # setting these flags, so one of the two threads sees the other).
            body.fail(ClientDisconnected("the request is over"))
        self._signal()  # the loop starts receiving
        return body

    def _signal(self) -> None:
        if not self._signalled:
            self._signalled = True
            self._link.inbox.post(_wake, self, None)

    def _send(self, data: bytes, final: bool) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        if not self._allowed:
            data = b""
        elif self._length_left >= 0:
            left = self._length_left
            if len(data) > left:
                if not self._overrun:
                    self._overrun = True
                    logger.error(
                        "application sent more than its Content-Length for %s %s; "
                        "extra bytes dropped",
                        self.method,
                        self.scope.get("path", ""),
                    )
                data = data[:left]
            self._length_left = left - len(data)
        if final:
            self.finished = True
            if self._length_left > 0:
                logger.error(
                    "application sent %d bytes less than its Content-Length for %s %s; "
                    "closing the connection",
                    self._length_left,
                    self.method,
                    self.scope.get("path", ""),
                )
                if data:
                    self._outbox.append(
                        {"type": "http.response.body", "body": data, "more_body": True}
                    )
                self._outbox.append(None)
            else:
                self._outbox.append({"type": "http.response.body", "body": data})
            self._signal()
            return
        if not data:
            return
        self._outbox.append({"type": "http.response.body", "body": data, "more_body": True})
        self._posted += len(data) + MESSAGE_COST
        self._signal()
        if self._posted - self._sent > WRITE_BUFFER:
            self._wait_writable()

    def _wait_writable(self) -> None:
        waiter = self._writer
        if waiter is None:
            waiter = self._writer = threading.Event()
        deadline = time.monotonic() + IO_WAIT
        while True:
            waiter.clear()
            if self.disconnected:
                raise ClientDisconnected("client disconnected")
            if self._posted - self._sent <= _WRITE_LOW:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClientDisconnected("timed out waiting for the client to read")
            waiter.wait(min(remaining, 1.0))

    # -- loop side ---------------------------------------------------------------------

    def _loop_wake(self) -> None:
        """Run by the link's drain: something was queued, or the body wants attention."""
        self._signalled = False
        link = self._link
        waiter = self._sender_waiter
        if waiter is not None:
            self._sender_waiter = None
            link.wake(waiter)
        waiter = self._receiver_waiter
        if waiter is not None:
            self._receiver_waiter = None
            link.wake(waiter)

    async def _loop_pump(self, send: Send, receive: Receive, spawn: Spawn) -> None:
        """Send what the worker queues until the response is complete or abandoned."""
        outbox = self._outbox
        popleft = outbox.popleft
        link = self._link
        try:
            while True:
                while outbox:
                    if self._receiver is None and (self._body is not None or self._watch):
                        # Checked per message: a streaming worker may never let the
                        # outbox run dry, and the disconnect watch must start anyway.
                        self._receiver = spawn(self._loop_receive, receive)
                    message = popleft()
                    if message is None:
                        return  # aborted: the host closes the connection
                    await send(message)
                    if message["type"] == "http.response.body":
                        if not message.get("more_body"):
                            return
                        if self.disconnected:
                            # Some hosts' send() stays silent to a closed connection
                            # (uvicorn, granian): stop at once rather than drain the queue.
                            return
                        self._sent += len(message["body"]) + MESSAGE_COST
                        writer = self._writer
                        if writer is not None and self._posted - self._sent <= _WRITE_LOW:
                            writer.set()
                if self.disconnected:
                    return
                if self._receiver is None and (self._body is not None or self._watch):
                    self._receiver = spawn(self._loop_receive, receive)
                waiter = self._sender_waiter = link.waiter()
                await link.wait(waiter)
        except OSError as exc:
            # The host's send() failed because the client is gone: nothing to report.
            logger.debug("send() failed for %s %s: %r", self.method, self.scope.get("path"), exc)
        finally:
            self._loop_finish()

    async def _loop_receive(self, receive: Receive) -> None:
        """Feed the request body to the worker, then watch for the client going away."""
        link = self._link
        try:
            while not self.done:
                body = self._body
                if body is not None and body.paused and not self._started:
                    # The application is behind: call no receive() until it catches up,
                    # so the host stops reading the socket.
                    waiter = self._receiver_waiter = link.waiter()
                    await link.wait(waiter)
                    continue
                # Once the response is under way, keep calling receive() even when the
                # application leaves its body unread: it is the only way to hear of a
                # client that goes away on hosts whose send() stays silent.
                message = await receive()
                kind = message.get("type")
                if kind == "http.request":
                    if body is not None and not body.eof:
                        more = bool(message.get("more_body"))
                        if body.paused:
                            # Nobody will read it in time (the buffer is full and the
                            # response has started): a later read gets what was
                            # buffered, then an error -- never a silently short body.
                            body.fail(
                                BadRequestBody(
                                    "request body discarded: it was not read before the "
                                    "response started"
                                )
                            )
                        else:
                            body.feed_message(message.get("body", b""), more)
                elif kind == "http.disconnect":
                    self._loop_lost("client disconnected")
                    return
        except Exception as exc:
            logger.debug("receive() failed for %s: %r", self.scope.get("path"), exc)
            self._loop_lost(f"receive() failed: {exc!r}")

    def _loop_lost(self, reason: str) -> None:
        """The client is gone: every wait of the worker ends in ClientDisconnected."""
        self.disconnected = True
        body = self._body
        if body is not None:
            body.fail(ClientDisconnected(reason))
        writer = self._writer
        if writer is not None:
            writer.set()
        waiter = self._sender_waiter
        if waiter is not None:
            self._sender_waiter = None
            self._link.wake(waiter)

    def _loop_finish(self) -> None:
        self.done = True
        if not self.finished:
            # Abandoned (cancelled, send() failed, client gone): release the worker.
            self._loop_lost("the request ended before the response was complete")
        body = self._body
        if body is not None:
            # Nothing feeds the body from now on (a close() may still try to read it).
            body.fail(ClientDisconnected("the request is over"))
        receiver = self._receiver
        if receiver is not None:
            receiver.cancel()
