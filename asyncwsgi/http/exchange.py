"""One HTTP request and its response: the request body and the exchange.

The line through this module is the thread a method runs on:

* WORKER SIDE: the ``asyncwsgi.core.exchange.Exchange`` methods of
  :class:`HttpExchange` (``respond``, ``write``, ``sendfile``, ``send_error``, ``abort``)
  and ``read`` of :class:`HttpBody` run on the one worker thread serving the request.
  They build response bytes where they are called and hand them to the connection
  (:class:`~asyncwsgi.http.protocol.HttpProtocol`), which writes them from this thread
  when the socket is free or posts them to the loop; they block (never buffer without
  bound) when the client is slower than the application.
* LOOP SIDE: the ``asyncwsgi.core.exchange.LoopExchange`` methods (``loop_*``) are
  the same answers for a runner that answers on the event loop (daemon mode's front);
  they write to the transport at once and never block.

The connection and the exchange talk through the few methods each names as the other's
door (``HttpProtocol.post_io``, ``write_direct``, ``keep_alive_after``...; here
``loop_written`` and ``loop_wake_writer``), never through each other's private state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asyncwsgi.core.body import RequestBody
from asyncwsgi.core.exchange import ServerExchange
from asyncwsgi.core.head import PLAIN_TEXT
from asyncwsgi.errors import ClientDisconnected
from asyncwsgi.http.framing import (
    CHUNKED,
    LAST_CHUNK,
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    Head,
    build_head,
    chunk,
    simple_response,
)

if TYPE_CHECKING:
    from asyncwsgi.http.protocol import HttpProtocol

logger = logging.getLogger("asyncwsgi.error")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HttpBody(RequestBody):
    """The body of one HTTP request: fed by the connection's parser on the loop."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: HttpProtocol, expect_continue: bool) -> None:
        super().__init__(protocol.limits.body_buffer, expect_continue=expect_continue)
        self._protocol = protocol

    def _continue(self) -> None:
        protocol = self._protocol
        if not protocol.disconnected:
            protocol.write(CONTINUE)

    def _paused(self) -> None:
        self._protocol.pause_body()

    def _first_read(self) -> None:
        self._protocol.post_io(_loop_send_continue, self._protocol, None)

    def _drained(self, *, loop_side: bool) -> None:
        if loop_side:
            self._protocol.resume_body()
        else:
            self._protocol.state.inbox.post(_loop_resume_body, self._protocol, None)


def _loop_send_continue(protocol: HttpProtocol, _: object) -> None:
    # Count it done only once its bytes are in the transport: a worker that sees
    # posted == executed may write to the socket itself, and must come after them.
    try:
        if not protocol.disconnected:
            protocol.write(CONTINUE)
    finally:
        protocol.executed += 1


def _loop_resume_body(protocol: HttpProtocol, _: object) -> None:
    protocol.resume_body()


def _loop_abort(protocol: HttpProtocol, exchange: HttpExchange) -> None:
    protocol.executed += 1
    protocol.abort_connection()


class HttpExchange(ServerExchange):
    """One request and its response on an HTTP connection.

    The request fields are fixed once the headers are parsed. The worker-side methods are
    for the one worker thread that serves the request; the ``loop_*`` ones for a runner
    on the event loop.
    """

    __slots__ = (
        "_overrun",
        "_protocol",
        "_state",
        "_waiter",
        "body_sent",
        "error_status",
        "head",
        "keep_alive",
        "posted",
        "response_headers",
        "started",
        "written",
    )

    body: HttpBody | None

    def __init__(
        self,
        protocol: HttpProtocol,
        method: str,
        path: bytes,
        query: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        body: HttpBody | None,
        body_length: int,
    ) -> None:
        self._protocol = protocol
        self._state = protocol.state
        self.method = method
        self.path = path
        self.query = query
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.body = body
        self.body_length = body_length  # -1: chunked
        self.client = protocol.client
        self.server = protocol.server
        self.scheme = protocol.scheme
        self.script_name = None
        self.started = time.time()
        self.error_status = ""  # what the HTTP layer answers instead of a 500 (413, ...)
        self.finished = False
        self.head: Head | None = None
        self.response_headers: list[tuple[str, str]] = []
        self.posted = 0  # response bytes posted to the loop (the worker writes it)
        self.written = 0  # of those, bytes given to the transport (the loop writes it)
        self.body_sent = 0
        self._overrun = False
        self._waiter: threading.Event | None = None
        # Loop-side runners: called when the client goes away or can take more bytes.
        self.listener: Callable[[], None] | None = None

    # -- worker side -------------------------------------------------------------------

    @property
    def head_sent(self) -> bool:
        return self.head is not None

    @property
    def disconnected(self) -> bool:
        return self._protocol.disconnected

    @property
    def body_allowed(self) -> bool:
        head = self.head
        return head is None or head.framing != NO_BODY

    def read_body(self, size: int) -> bytes:
        body = self.body
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
        self._send(self._start_response(status, headers, body, final, body_length), final)

    def write(self, data: bytes, *, final: bool = False) -> None:
        if self.head is None:
            raise RuntimeError("write() before the response head")
        self._send(self._frame(data, final), final)

    def sendfile(self, file: Any, offset: int, count: int) -> None:
        """With ``os.sendfile`` when the transport allows it, else by reading the file
        here in blocks."""
        head = self.head
        if head is None:
            raise RuntimeError("sendfile() before the response head")
        if head.framing == LENGTH:
            count = min(count, head.content_length - self.body_sent)
        if head.framing == NO_BODY or count <= 0:
            self.write(b"", final=True)
            return
        protocol = self._protocol
        if head.framing == LENGTH and protocol.can_sendfile:
            sent = protocol.sendfile_direct(file.fileno(), offset, count)
            if sent >= 0:
                self.body_sent += sent
                self.write(b"", final=True)
                return
            # -1: the socket was not free for a direct send; copy instead.
        file.seek(offset)
        left = count
        while left > 0:
            block = file.read(min(left, 256 * 1024))
            if not block:
                break
            left -= len(block)
            self.write(block)
        self.write(b"", final=True)

    def send_error(self, status: str, message: bytes) -> None:
        if self.head is not None:
            self.abort()
            return
        status, message = self._error_answer(status, message)
        self.respond(status, PLAIN_TEXT, message, final=True)

    def abort(self) -> None:
        if not self.finished:
            self.finished = True
            self._protocol.post_io(_loop_abort, self._protocol, self)

    # -- building the response ---------------------------------------------------------

    def _error_answer(self, status: str, message: bytes) -> tuple[str, bytes]:
        if self.error_status:  # the HTTP layer already knows what went wrong (413, ...)
            status = self.error_status
            message = status.encode("latin-1") + b"\n"
        return status, message

    def _start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        final: bool,
        body_length: int,
    ) -> bytes:
        if self.head is not None:
            raise RuntimeError("response head already sent")
        if final and body_length < 0:
            body_length = len(body)
        head = build_head(
            status,
            headers,
            http11=self.http_version == "1.1",
            keep_alive=self._protocol.keep_alive_after(self),
            is_head=self.method == "HEAD",
            server_headers=self._state.server_headers,
            body_length=body_length,
        )
        self.head = head
        self.response_headers = headers  # for the access log's %({name}o)s
        if self.body is not None:
            self.body.cancel_continue()
        return head.data + self._frame(body, final)

    def _frame(self, data: bytes, final: bool) -> bytes:
        head = self.head
        assert head is not None
        framing = head.framing
        if framing == LENGTH:
            left = head.content_length - self.body_sent
            if len(data) > left:
                if not self._overrun:
                    self._overrun = True
                    logger.error(
                        "application sent more than its Content-Length (%d) for %s %s; "
                        "extra bytes dropped",
                        head.content_length,
                        self.method,
                        self.path.decode("latin-1"),
                    )
                data = data[:left]
            self.body_sent += len(data)
            return data
        if framing == CHUNKED:
            self.body_sent += len(data)
            if final:
                return chunk(data) + LAST_CHUNK if data else LAST_CHUNK
            return chunk(data) if data else b""
        if framing == UNTIL_CLOSE:
            self.body_sent += len(data)
            return data
        return b""

    def _finishing(self) -> None:
        self.finished = True
        head = self.head
        assert head is not None
        if head.framing == LENGTH and self.body_sent < head.content_length:
            logger.error(
                "application sent %d of the %d bytes its Content-Length promised for "
                "%s %s; closing the connection",
                self.body_sent,
                head.content_length,
                self.method,
                self.path.decode("latin-1"),
            )
            head.keep_alive = False

    # -- handing bytes to the connection ----------------------------------------------

    def _send(self, data: bytes, final: bool) -> None:
        protocol = self._protocol
        if protocol.disconnected:
            raise ClientDisconnected("client disconnected")
        if final:
            self._finishing()
            if not (protocol.direct_fd >= 0 and protocol.write_direct(self, data, True)):
                protocol.post_io(protocol.loop_write_final, self, data)
            if self._state.on_finish is not None:
                self._state.on_finish(self)
            return
        if not data:
            return
        if not (protocol.direct_fd >= 0 and protocol.write_direct(self, data, False)):
            self.posted += len(data)
            protocol.post_io(protocol.loop_write, self, data)
        if protocol.write_paused or self.posted - self.written > protocol.limits.write_buffer:
            self._wait_writable()

    def _wait_writable(self) -> None:
        protocol = self._protocol
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = threading.Event()
        deadline = time.monotonic() + protocol.limits.send_timeout
        while True:
            waiter.clear()
            if protocol.disconnected:
                raise ClientDisconnected("client disconnected")
            if not protocol.write_paused and self.posted - self.written <= (
                protocol.limits.write_buffer // 2
            ):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClientDisconnected("timed out waiting for the client to read")
            waiter.wait(min(remaining, 1.0))

    @property
    def status_code(self) -> int:
        """The response's status (0 before its head): for the access log and metrics."""
        if self.head is not None:
            return self.head.status_code
        error = self.error_status  # answered by the server itself (a timeout's 504)
        return int(error[:3]) if error[:3].isdigit() else 0

    # -- the connection's door (loop side) ---------------------------------------------

    def loop_written(self, size: int) -> None:
        """``size`` posted bytes are in the transport: a blocked writer may go on."""
        self.written += size
        waiter = self._waiter
        if waiter is not None and not self._protocol.write_paused:
            waiter.set()

    def loop_wake_writer(self) -> None:
        """The client took what was queued, or went away: wake whoever waits on it."""
        waiter = self._waiter
        if waiter is not None:
            waiter.set()
        if self.listener is not None:
            self.listener()

    # -- loop side: LoopExchange -------------------------------------------------------

    @property
    def writable(self) -> bool:
        protocol = self._protocol
        return not protocol.write_paused and not protocol.disconnected

    def loop_respond(
        self,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        final: bool,
        body_length: int = -1,
    ) -> None:
        self._loop_send(self._start_response(status, headers, body, final, body_length), final)

    def loop_write(self, data: bytes, *, final: bool = False) -> None:
        if self.head is None:
            raise RuntimeError("write() before the response head")
        self._loop_send(self._frame(data, final), final)

    def loop_send_error(self, status: str, message: bytes) -> None:
        if self.head is not None:
            self.loop_abort()
            return
        status, message = self._error_answer(status, message)
        self.loop_respond(status, PLAIN_TEXT, message, final=True)

    def loop_abort(self) -> None:
        if not self.finished:
            self.finished = True
            self._protocol.abort_connection()

    def loop_time_out(self, status: str, message: bytes) -> None:
        protocol = self._protocol
        with protocol.lock:  # no worker is inside a direct write meanwhile
            if self.finished or protocol.disconnected:
                return
            answer = self.head is None
            self.finished = True
            # From now on the worker's writes raise ClientDisconnected.
            protocol.disconnected = True
            protocol.deadline = 0.0
            protocol._release_fd()
        transport = protocol.transport
        if answer:
            self.error_status = status  # what the access log and the metrics count
            data = simple_response(status, message, self._state.server_headers, close=True)
            transport.write(data)
            transport.close()  # after the answer is flushed ...
            # ... unless the client takes none of it: then dropped, as any slow client.
            self._state.loop.call_later(protocol.limits.send_timeout, transport.abort)
        else:
            transport.abort()
        if self._state.on_finish is not None:
            self._state.on_finish(self)

    def _loop_send(self, data: bytes, final: bool) -> None:
        protocol = self._protocol
        if protocol.disconnected:
            self.finished = self.finished or final
            return
        if data:
            protocol.write(data)
        if final:
            self._finishing()
            if self._state.on_finish is not None:
                self._state.on_finish(self)
            protocol.loop_finished(self)
