"""One HTTP/1.1 connection: parsing, pipelining, flow control and timeouts.

The file has two halves, and the line between them is the thread a method runs on:

* LOOP SIDE: :class:`HttpProtocol` and every ``_loop_*`` method run on the event loop
  thread and are the only code that touches the transport.
* WORKER SIDE: the public methods of :class:`Exchange` and :class:`RequestBody` are called
  from application threads. They build response bytes where they are called and hand them
  to the loop through ``ServerState.inbox``; they block (never buffer without bound) when
  the client is slower than the application.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import httptools

from asyncwsgi.chunks import take
from asyncwsgi.errors import (
    BadRequestBody,
    ClientDisconnected,
    RequestBodyTimeout,
    RequestBodyTooLarge,
)
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
from asyncwsgi.http.state import HttpLimits, ServerState

logger = logging.getLogger("asyncwsgi.error")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# A response may be sent while the request body is still arriving; the connection stays
# usable only if what is left of the body is small enough to read and throw away.
_DRAIN_LIMIT = 64 * 1024
# How long a worker waits for the client to send more request body (taking response
# bytes has its own limit, ``HttpLimits.send_timeout``).
_IO_WAIT = 60.0


class _Reject(Exception):
    """Raised inside parser callbacks: answer ``status`` and close the connection."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


# --------------------------------------------------------------------------------------
# WORKER SIDE (with loop-side feeders): the request body
# --------------------------------------------------------------------------------------


class RequestBody:
    """Body bytes passed from the loop (producer) to one worker thread (consumer)."""

    __slots__ = (
        "_chunks",
        "_cond",
        "_error",
        "_expect_continue",
        "_paused",
        "_protocol",
        "_size",
        "eof",
        "listener",
        "received",
    )

    def __init__(self, protocol: HttpProtocol, expect_continue: bool) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._error: BaseException | None = None
        self._protocol = protocol
        self._expect_continue = expect_continue
        self._paused = False
        self.eof = False
        self.received = 0
        # Loop-side consumers (see LOOP CONSUMERS below) are told of every change here.
        self.listener: Callable[[], None] | None = None

    # -- loop side ---------------------------------------------------------------------

    def feed(self, data: bytes) -> bool:
        """Add body bytes; True when the buffer is full and reading should pause."""
        with self._cond:
            self._chunks.append(data)
            self._size += len(data)
            self.received += len(data)
            self._cond.notify()
            full = self._size > self._protocol.limits.body_buffer
            if full:
                self._paused = True
        if self.listener is not None:
            self.listener()
        return full

    def feed_eof(self) -> None:
        with self._cond:
            self.eof = True
            self._cond.notify()
        if self.listener is not None:
            self.listener()

    def fail(self, exc: BaseException) -> None:
        with self._cond:
            if not self.eof:
                self._error = exc
            self._cond.notify()
        if self.listener is not None:
            self.listener()

    # -- loop consumers ----------------------------------------------------------------
    # A runner that answers on the event loop (daemon mode's front) takes the body from
    # here without blocking, and is called back through ``listener`` when more arrives.

    @property
    def buffered(self) -> int:
        return self._size

    @property
    def error(self) -> BaseException | None:
        return self._error

    def take(self, limit: int) -> bytes:
        """Up to ``limit`` buffered bytes, without waiting (``b""`` if none)."""
        with self._cond:
            chunks = self._chunks
            if not chunks or limit <= 0:
                return b""
            data = take(chunks, limit, self._size)
            self._size -= len(data)
            resume = self._paused and self._size <= self._protocol.limits.body_buffer // 2
            if resume:
                self._paused = False
        if resume:
            self._protocol._set_pause(body=False)
        return data

    def send_continue(self) -> None:
        """Send ``100 Continue`` now if the client waits for it (loop side)."""
        with self._cond:
            pending = self._expect_continue
            self._expect_continue = False
        protocol = self._protocol
        if pending and not protocol.disconnected:
            protocol.transport.write(_CONTINUE)

    @property
    def continue_pending(self) -> bool:
        return self._expect_continue

    def cancel_continue(self) -> None:
        with self._cond:
            self._expect_continue = False

    # -- worker side -------------------------------------------------------------------

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (all that is buffered if ``size`` < 0), waiting for at
        least one; ``b""`` once the body has ended."""
        with self._cond:
            if self._expect_continue:
                self._expect_continue = False
                self._protocol.post_io(_loop_send_continue, self._protocol, None)
            chunks = self._chunks
            deadline = 0.0
            while not chunks:
                if self._error is not None:
                    raise self._error
                if self.eof:
                    return b""
                if deadline == 0.0:
                    deadline = time.monotonic() + _IO_WAIT
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClientDisconnected("timed out waiting for the request body")
                self._cond.wait(remaining)
            data = take(chunks, size, self._size)
            self._size -= len(data)
            if self._paused and self._size <= self._protocol.limits.body_buffer // 2:
                self._paused = False
                self._protocol.state.inbox.post(_loop_resume_body, self._protocol, None)
            return data


def _loop_send_continue(protocol: HttpProtocol, _: object) -> None:
    # Count it done only once its bytes are in the transport: a worker that sees
    # posted == executed may write to the socket itself, and must come after them.
    try:
        if not protocol.disconnected:
            protocol.transport.write(_CONTINUE)
    finally:
        protocol.executed += 1


def _loop_resume_body(protocol: HttpProtocol, _: object) -> None:
    protocol._set_pause(body=False)


# --------------------------------------------------------------------------------------
# One request and its response
# --------------------------------------------------------------------------------------


class Exchange:
    """One request and its response.

    The request attributes are fixed once the headers are parsed. The response methods
    (``respond``, ``write``, ``sendfile``, ``abort``) are for the one worker thread that
    serves the request.
    """

    __slots__ = (
        "_head",
        "_overrun",
        "_posted",
        "_protocol",
        "_state",
        "_waiter",
        "body",
        "body_length",
        "body_sent",
        "client",
        "error_status",
        "finished",
        "headers",
        "http_version",
        "keep_alive",
        "listener",
        "method",
        "path",
        "query",
        "scheme",
        "script_name",
        "server",
        "started",
        "written",
    )

    def __init__(
        self,
        protocol: HttpProtocol,
        method: str,
        path: bytes,
        query: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        body: RequestBody | None,
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
        self.started = time.time()
        self.error_status = ""
        self.finished = False
        self._head: Head | None = None
        self._posted = 0  # response bytes posted to the loop (worker writes it)
        self.written = 0  # of those, bytes given to the transport (loop writes it)
        self.body_sent = 0
        self._overrun = False
        self._waiter: threading.Event | None = None
        # Loop-side runners: called when the client goes away or can take more bytes.
        self.listener: Callable[[], None] | None = None
        # Where a router mounted the request (a site's WSGIScriptAlias); None: the
        # runner's own mount point.
        self.script_name: str | None = None

    # -- worker side -------------------------------------------------------------------

    @property
    def head_sent(self) -> bool:
        return self._head is not None

    @property
    def disconnected(self) -> bool:
        return self._protocol.disconnected

    @property
    def body_allowed(self) -> bool:
        head = self._head
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
        """Send the status line and headers with the first part of the body.

        With ``final`` the response is complete after ``body``.
        """
        self._send(self._start_response(status, headers, body, final, body_length), final)

    def _start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        final: bool,
        body_length: int,
    ) -> bytes:
        if self._head is not None:
            raise RuntimeError("response head already sent")
        if final and body_length < 0:
            body_length = len(body)
        head = build_head(
            status,
            headers,
            http11=self.http_version == "1.1",
            keep_alive=self._may_keep_alive(),
            is_head=self.method == "HEAD",
            server_headers=self._state.server_headers,
            body_length=body_length,
        )
        self._head = head
        if self.body is not None:
            # The answer is under way: a 100 Continue now would land inside it.
            self.body.cancel_continue()
        return head.data + self._frame(body, final)

    def write(self, data: bytes, *, final: bool = False) -> None:
        """Send more of the body; blocks while the client is behind."""
        if self._head is None:
            raise RuntimeError("write() before the response head")
        self._send(self._frame(data, final), final)

    def sendfile(self, file: Any, offset: int, count: int) -> None:
        """Send ``count`` bytes of a regular file after the head, with ``os.sendfile`` when
        the transport allows it, else by reading it here in blocks."""
        head = self._head
        if head is None:
            raise RuntimeError("sendfile() before the response head")
        if head.framing == LENGTH:
            count = min(count, head.content_length - self.body_sent)
        if head.framing == NO_BODY or count <= 0:
            self.write(b"", final=True)
            return
        if head.framing == LENGTH and self._protocol.can_sendfile:
            sent = self._protocol.sendfile_direct(file.fileno(), offset, count)
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
        """Answer with a server-made error if nothing has been sent yet, else abort."""
        if self._head is not None:
            self.abort()
            return
        if self.error_status:  # the HTTP layer already knows what went wrong (413, ...)
            status = self.error_status
            message = status.encode("latin-1") + b"\n"
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        self.respond(status, headers, message, final=True)

    def abort(self) -> None:
        """End the response where it stands and close the connection."""
        if not self.finished:
            self.finished = True
            self._protocol.post_io(_loop_abort, self._protocol, self)

    def _may_keep_alive(self) -> bool:
        protocol = self._protocol
        if not self.keep_alive:
            return False
        if protocol.closing and not protocol._queue and protocol._pending_reject is None:
            # Nothing read after this request waits for an answer: close after it.
            return False
        body = self.body
        if body is None or body.eof:
            return True
        if body.continue_pending:
            # The client is waiting for our go-ahead; it will never send that body now.
            return False
        return self.body_length >= 0 and self.body_length - body.received <= _DRAIN_LIMIT

    def _frame(self, data: bytes, final: bool) -> bytes:
        head = self._head
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

    def _send(self, data: bytes, final: bool) -> None:
        protocol = self._protocol
        if protocol.disconnected:
            raise ClientDisconnected("client disconnected")
        if final:
            self._finishing()
            if not (protocol.direct_fd >= 0 and protocol.write_direct(self, data, True)):
                protocol.post_io(protocol._loop_write_final, self, data)
            if self._state.access_log is not None:
                self._log_access()
            return
        if not data:
            return
        if not (protocol.direct_fd >= 0 and protocol.write_direct(self, data, False)):
            self._posted += len(data)
            protocol.post_io(protocol._loop_write, self, data)
        if protocol.write_paused or self._posted - self.written > protocol.limits.write_buffer:
            self._wait_writable()

    def _finishing(self) -> None:
        self.finished = True
        head = self._head
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
            if not protocol.write_paused and self._posted - self.written <= (
                protocol.limits.write_buffer // 2
            ):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClientDisconnected("timed out waiting for the client to read")
            waiter.wait(min(remaining, 1.0))

    def _log_access(self) -> None:
        log = self._state.access_log
        assert log is not None and self._head is not None
        referer = user_agent = b"-"
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"referer":
                referer = value
            elif lname == b"user-agent":
                user_agent = value
        target = self.path + (b"?" + self.query if self.query else b"")
        host = self.client[0] if self.client else "-"
        when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(self.started))
        log.info(
            '%s - - [%s] "%s %s HTTP/%s" %d %s "%s" "%s"',
            host,
            when,
            self.method,
            target.decode("latin-1"),
            self.http_version,
            self._head.status_code,
            self.body_sent or "-",
            referer.decode("latin-1"),
            user_agent.decode("latin-1"),
        )

    # -- loop side ---------------------------------------------------------------------

    def _loop_wake_writer(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            waiter.set()
        if self.listener is not None:
            self.listener()

    # -- loop runners ------------------------------------------------------------------
    # The same answers as the worker-side methods, for a runner that answers on the event
    # loop itself (daemon mode's front): they write to the transport at once and never
    # block. Backpressure is the runner's job: it sends more only while ``writable``,
    # and ``listener`` is called when the client has taken what was queued.

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
        if self._head is None:
            raise RuntimeError("write() before the response head")
        self._loop_send(self._frame(data, final), final)

    def loop_send_error(self, status: str, message: bytes) -> None:
        if self._head is not None:
            self.loop_abort()
            return
        if self.error_status:
            status = self.error_status
            message = status.encode("latin-1") + b"\n"
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        self.loop_respond(status, headers, message, final=True)

    def loop_abort(self) -> None:
        if not self.finished:
            self.finished = True
            self._protocol._abort(self)

    def _loop_send(self, data: bytes, final: bool) -> None:
        protocol = self._protocol
        if protocol.disconnected:
            self.finished = self.finished or final
            return
        if data:
            protocol.transport.write(data)
        if final:
            self._finishing()
            if self._state.access_log is not None:
                self._log_access()
            protocol._loop_finished(self)


def _loop_abort(protocol: HttpProtocol, exchange: Exchange) -> None:
    protocol.executed += 1
    protocol._abort(exchange)


# --------------------------------------------------------------------------------------
# LOOP SIDE: the connection
# --------------------------------------------------------------------------------------


class HttpProtocol(asyncio.Protocol):
    """One client connection. Requests are answered one at a time, in order.

    ``lock`` guards the hand-over of the connection between the loop and the worker
    thread that finishes a response (see :meth:`write_direct`): ``_active``, ``_queue``,
    ``closing``, ``disconnected`` and ``direct_fd``.
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.limits: HttpLimits = state.limits
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.lock = threading.Lock()
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.scheme = "http"
        self.disconnected = False
        self.write_paused = False
        self.closing = False  # close once the requests already read are answered
        self.can_sendfile = False
        # A duplicate of the socket's fd through which a worker may write a whole final
        # response itself, sparing the loop a wake-up; -1 where that is not possible (TLS).
        self.direct_fd = -1
        # Loop callbacks posted for this connection by workers, and of those, run so far.
        # Each is written by one thread only; equal means the loop owes us nothing.
        self.posted = 0
        self.executed = 0
        self._paused_for_body = False
        self._paused_for_pipeline = False
        self._paused_for_writes = False
        self._reading_paused = False
        self._active: Exchange | None = None
        self._queue: deque[Exchange] = deque()
        self._parsing: Exchange | None = None
        self._in_message = False  # between message begin and headers complete
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self.deadline = 0.0  # monotonic time the connection times out at; 0: none
        self._pending_reject: tuple[str, str] | None = None
        self._linger_left = 0  # bytes still buffered at the last look after close()
        # The request body being read, and when it must have come further (body_timeout).
        self._body_watched: RequestBody | None = None
        self._body_deadline = 0.0
        self._body_seen = 0
        self._body_checked = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        state = self.state
        if len(state.connections) >= self.limits.max_connections:
            logger.warning(
                "connection limit (%d) reached; refusing a connection",
                self.limits.max_connections,
            )
            transport.write(
                simple_response(
                    "503 Service Unavailable", b"Too many connections\n", b"", close=True
                )
            )
            transport.close()
            self.disconnected = True
            return
        state.connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client = (str(peer[0]), int(peer[1]))
        sock = transport.get_extra_info("sockname")
        if isinstance(sock, tuple):
            self.server = (str(sock[0]), int(sock[1]))
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
        else:
            raw = transport.get_extra_info("socket")
            if raw is not None:
                try:
                    self.direct_fd = os.dup(raw.fileno())
                except OSError:
                    self.direct_fd = -1
                self.can_sendfile = self.direct_fd >= 0 and hasattr(os, "sendfile")
        self.deadline = time.monotonic() + self.limits.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        with self.lock:
            self.disconnected = True
            self._release_fd()
        self.state.connections.discard(self)
        self.deadline = 0.0
        gone = ClientDisconnected("client disconnected")
        for exchange in (self._active, self._parsing, *self._queue):
            if exchange is not None:
                if exchange.body is not None:
                    exchange.body.fail(gone)
                exchange._loop_wake_writer()
        self._queue.clear()

    def eof_received(self) -> bool | None:
        # A client may half-close after sending its request; answer what was read.
        parsing = self._parsing
        if parsing is not None and parsing.body is not None and not parsing.body.eof:
            parsing.body.fail(ClientDisconnected("client closed its side mid-body"))
        with self.lock:
            if self._active is not None or self._queue:
                self.closing = True
                return True
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._active is not None:
            self._active._loop_wake_writer()
        if self._paused_for_writes:
            self._paused_for_writes = False
            self._next_request()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except _Reject as exc:
            self._reject(exc.status, str(exc))
        except httptools.HttpParserUpgrade:
            # WSGI has no upgrade; the request was served as a plain one. Bytes that
            # follow it are not HTTP we can parse, so the connection ends with it.
            with self.lock:
                self.closing = True
            self._set_pause(pipeline=True)
        except httptools.HttpParserError as exc:
            # httptools wraps an exception raised in a callback; ours say what to answer.
            cause = exc.__context__
            if isinstance(cause, _Reject):
                self._reject(cause.status, str(cause))
            else:
                self._reject("400 Bad Request", f"malformed request: {exc}")

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        if self._active is None:
            self.deadline = time.monotonic() + self.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.limit_request_line:
            raise _Reject("414 URI Too Long", "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        headers.append((name, value))
        self._header_bytes += len(name) + len(value) + 4
        limits = self.limits
        if len(headers) > limits.limit_request_fields:
            raise _Reject("431 Request Header Fields Too Large", "too many header fields")
        if len(name) + len(value) > limits.limit_request_field_size:
            raise _Reject("431 Request Header Fields Too Large", "header field too large")
        if self._header_bytes > limits.limit_request_field_size * 8:
            raise _Reject("431 Request Header Fields Too Large", "header section too large")

    def on_headers_complete(self) -> None:
        self._in_message = False
        self.deadline = 0.0
        parser = self.parser
        method = parser.get_method().decode("ascii")
        version = parser.get_http_version()
        content_lengths: list[bytes] = []
        transfer_codings: list[bytes] = []
        chunked = False
        expect_continue = False
        has_host = False
        for name, value in self._headers:
            # Only four names matter here; their lengths rule out most headers cheaply.
            size = len(name)
            if size != 14 and size != 17 and size != 6 and size != 4:
                continue
            lname = name.lower()
            if lname == b"content-length":
                content_lengths.append(value.strip())
            elif lname == b"transfer-encoding":
                transfer_codings.extend(c.strip().lower() for c in value.split(b",") if c.strip())
            elif lname == b"expect":
                if value.strip().lower() != b"100-continue":
                    raise _Reject("417 Expectation Failed", "unsupported Expect header")
                expect_continue = version == "1.1"
            elif lname == b"host":
                if has_host:
                    raise _Reject("400 Bad Request", "more than one Host header")
                has_host = True
        if transfer_codings:
            if transfer_codings[-1] != b"chunked":
                raise _Reject("400 Bad Request", "Transfer-Encoding must end in chunked")
            if len(transfer_codings) > 1:
                raise _Reject("501 Not Implemented", "unsupported transfer coding")
            chunked = True
        if content_lengths and chunked:
            raise _Reject("400 Bad Request", "both Content-Length and Transfer-Encoding")
        if len(set(content_lengths)) > 1:
            raise _Reject("400 Bad Request", "conflicting Content-Length headers")
        if version == "1.1" and not has_host:
            raise _Reject("400 Bad Request", "HTTP/1.1 request without Host")
        body_length = 0
        if content_lengths:
            raw = content_lengths[0]
            if not raw.isdigit():
                raise _Reject("400 Bad Request", "invalid Content-Length")
            body_length = int(raw)
        elif chunked:
            body_length = -1
        if body_length > self.limits.limit_request_body:
            raise _Reject("413 Content Too Large", "request body over the limit")

        url = self._url
        if url[:1] == b"/":
            path, _, query = url.partition(b"?")
            path = path.partition(b"#")[0]
        elif url == b"*":
            path, query = b"*", b""
        else:
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                raise _Reject("400 Bad Request", "invalid request target") from None
            path = parsed.path or b"/"
            query = parsed.query or b""

        body = RequestBody(self, expect_continue) if body_length else None
        exchange = Exchange(
            self,
            method,
            path,
            query,
            version,
            self._headers,
            parser.should_keep_alive(),
            body,
            body_length,
        )
        # A request without a body is complete now; forgetting it here lets the worker
        # that answers it finish the exchange without handing back to the loop.
        self._parsing = exchange if body is not None else None
        self.state.requests += 1
        with self.lock:
            start = self._active is None and not self._queue and not self._paused_for_writes
            if start:
                self._active = exchange
            else:
                self._queue.append(exchange)
        if start:
            self._start(exchange)
        else:
            self._set_pause(pipeline=True)

    def on_body(self, data: bytes) -> None:
        exchange = self._parsing
        if exchange is None or exchange.body is None:
            return
        body = exchange.body
        if body.received + len(data) > self.limits.limit_request_body:
            exchange.error_status = "413 Content Too Large"
            exchange.keep_alive = False
            body.fail(RequestBodyTooLarge("request body over the limit"))
            raise _Reject("413 Content Too Large", "request body over the limit")
        if exchange.finished:
            # Answered already: this is the small remainder we read to keep the
            # connection, or more of a body nobody will read.
            body.received += len(data)
            return
        if body.feed(data):
            self._set_pause(body=True)

    def on_message_complete(self) -> None:
        exchange = self._parsing
        self._parsing = None
        if exchange is not None and exchange.body is not None:
            exchange.body.feed_eof()
        if exchange is not None and exchange.finished and exchange is not self._active:
            # The response went out before the body finished arriving.
            self._next_request()

    # -- requests and responses --------------------------------------------------------

    def _start(self, exchange: Exchange) -> None:
        try:
            self.state.runner.submit(exchange)
        except Exception:
            logger.exception("could not hand a request to the application")
            self.transport.write(
                simple_response(
                    "503 Service Unavailable",
                    b"Service Unavailable\n",
                    self.state.server_headers,
                    close=True,
                )
            )
            self._close()

    def post_io(self, fn: Any, a: Any, b: Any) -> None:
        """Worker side: post a loop callback that writes for this connection."""
        self.posted += 1
        self.state.inbox.post(fn, a, b)

    def write_direct(self, exchange: Exchange, data: bytes, final: bool) -> bool:
        """Worker side: write response bytes to the socket from this thread.

        Allowed only while the loop owes this connection nothing (no posted write is
        pending and the transport's buffer is empty), so bytes cannot be reordered. What
        the socket does not take at once is posted to the loop. When a final write goes
        out whole and the connection simply waits for its next request, the exchange is
        finished here and the loop is never woken for it. Returns False to say "post it
        to the loop instead".
        """
        with self.lock:
            fd = self.direct_fd
            if (
                fd < 0
                or self.disconnected
                or self.posted != self.executed
                or self.transport.get_write_buffer_size()
            ):
                return False
            try:
                sent = os.write(fd, data) if data else 0
            except OSError:  # would block, or the client is gone: let the loop see to it
                return False
            if sent < len(data):
                rest = data[sent:]
                if final:
                    self.post_io(self._loop_write_final, exchange, rest)
                else:
                    exchange._posted += len(rest)
                    self.post_io(self._loop_write, exchange, rest)
                return True
            if not final:
                return True
            head = exchange._head
            assert head is not None
            if (
                head.keep_alive
                and self._active is exchange
                and not self._queue
                and self._parsing is not exchange
                and not self._reading_paused
                and not self.closing
                and not self.write_paused
            ):
                self.deadline = time.monotonic() + self.limits.keep_alive_timeout
                self._active = None
                return True
            self.post_io(self._loop_write_final, exchange, b"")
            return True

    def sendfile_direct(self, in_fd: int, offset: int, count: int) -> int:
        """Worker side: ``os.sendfile`` from ``in_fd`` to the client; bytes sent, or -1
        if the socket was not free for it (nothing sent then)."""
        sent = 0
        poller = select.poll()
        deadline = time.monotonic() + self.limits.send_timeout
        while sent < count:
            with self.lock:
                fd = self.direct_fd
                if self.disconnected or fd < 0:
                    raise ClientDisconnected("client disconnected during sendfile")
                if self.posted != self.executed or self.transport.get_write_buffer_size():
                    if sent == 0:
                        return -1
                    raise RuntimeError("socket written by the loop during sendfile")
                try:
                    n = os.sendfile(fd, in_fd, offset + sent, count - sent)
                except BlockingIOError:
                    n = -1
                except OSError as exc:
                    raise ClientDisconnected(f"sendfile failed: {exc}") from exc
            if n == 0:
                break  # the file is shorter than it was: the caller closes the connection
            if n > 0:
                sent += n
                deadline = time.monotonic() + self.limits.send_timeout
                continue
            # The socket is full: wait (outside the lock) until the client reads.
            if time.monotonic() > deadline:
                raise ClientDisconnected("timed out waiting for the client to read")
            poller.register(fd, select.POLLOUT)
            try:
                poller.poll(1000)
            finally:
                poller.unregister(fd)
        return sent

    def _loop_write(self, exchange: Exchange, data: bytes) -> None:
        try:
            if self.disconnected:
                return
            self.transport.write(data)
        finally:
            self.executed += 1  # after the write: see _loop_send_continue
        exchange.written += len(data)
        if exchange._waiter is not None and not self.write_paused:
            exchange._waiter.set()

    def _loop_write_final(self, exchange: Exchange, data: bytes) -> None:
        try:
            if self.disconnected:
                return
            if data:
                self.transport.write(data)
        finally:
            self.executed += 1  # after the write: see _loop_send_continue
        self._loop_finished(exchange)

    def _loop_finished(self, exchange: Exchange) -> None:
        """The last bytes of ``exchange`` are in the transport: close or go on."""
        head = exchange._head
        assert head is not None
        if not head.keep_alive:
            self._close()
            return
        with self.lock:
            self._active = None
        if exchange is self._parsing:
            # Its body is still arriving: read the (small) rest and discard it, within
            # the header timeout.
            if exchange.body is not None:
                exchange.body.fail(ClientDisconnected("response already sent"))
            self._set_pause(body=False, pipeline=False)
            self.deadline = time.monotonic() + self.limits.header_timeout
            return
        self._next_request()

    def _next_request(self) -> None:
        if self.disconnected or self.transport.is_closing():
            return
        if self.write_paused:
            # The client is not reading what we send; read no more from it until it does.
            self._paused_for_writes = True
            self._set_pause(pipeline=True)
            return
        if self._pending_reject is not None and not self._queue:
            status, reason = self._pending_reject
            self._pending_reject = None
            self._reject(status, reason)
            return
        if self._queue:
            with self.lock:
                exchange = self._active = self._queue.popleft()
            self._set_pause(pipeline=bool(self._queue), body=False)
            self._start(exchange)
            return
        if self.closing:
            self._close()
            return
        self._set_pause(pipeline=False)
        if not self._in_message:
            self.deadline = time.monotonic() + self.limits.keep_alive_timeout

    def _abort(self, exchange: Exchange) -> None:
        # transport.abort(), not close(): a client that stopped reading would keep a
        # close() waiting forever to flush.
        self.deadline = 0.0
        with self.lock:
            already = self.disconnected
            self.disconnected = True
            self._release_fd()
        if not already:
            self.transport.abort()

    # -- errors, timeouts, closing -----------------------------------------------------

    def _reject(self, status: str, reason: str) -> None:
        if self.disconnected:
            return
        with self.lock:
            busy = self._active is not None or bool(self._queue)
            if busy:
                self.closing = True
        if busy:
            # Answer the requests read before the bad one first, in order.
            if self._pending_reject is None:
                self._pending_reject = (status, reason)
            parsing = self._parsing
            if parsing is not None and parsing.body is not None and not parsing.body.eof:
                # The bad bytes are in the body of a request the application already has:
                # its read() fails, and the answer is this status rather than a 500.
                parsing.error_status = status
                parsing.keep_alive = False
                parsing.body.fail(BadRequestBody(reason))
                self._pending_reject = None
            self._set_pause(pipeline=True)
            return
        logger.info("rejecting request from %s: %s (%s)", self._client_text(), status, reason)
        body = status.encode("latin-1") + b"\n"
        self.transport.write(simple_response(status, body, self.state.server_headers, close=True))
        self._close()

    def _client_text(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unix socket"

    def check_deadline(self, now: float) -> None:
        """Called by the server's timer: enforce the header, body and keep-alive
        timeouts."""
        parsing = self._parsing
        if parsing is not None and parsing.body is not None and not self.disconnected:
            self._check_body(parsing, parsing.body, now)
        if self._active is not None or self._queue or self.disconnected:
            return
        if self.state.shutting_down and not self._in_message:
            self._close()
            return
        deadline = self.deadline
        if deadline and now >= deadline:
            self.deadline = 0.0
            if self._in_message:
                self._reject("408 Request Timeout", "request headers not received in time")
            else:
                self._close()

    def _check_body(self, exchange: Exchange, body: RequestBody, now: float) -> None:
        # As Apache's mod_reqtimeout: a body that stops coming, or trickles in slower than
        # body_min_rate, holds a worker thread (or the connection) for nothing.
        limits = self.limits
        if body is not self._body_watched:
            self._body_watched = body
            self._body_deadline = now + limits.body_timeout
            self._body_seen = body.received
            self._body_checked = now
            return
        if body.eof or body.error is not None:
            return
        if self._reading_paused:
            # We are not reading (the application has not taken what came): not the
            # client's time.
            self._body_deadline += now - self._body_checked
        gained = body.received - self._body_seen
        if gained:
            self._body_seen = body.received
            self._body_deadline = min(
                self._body_deadline + gained / limits.body_min_rate, now + limits.body_timeout
            )
        self._body_checked = now
        if now < self._body_deadline:
            return
        logger.info(
            "request body from %s too slow (%d byte(s) in); answering 408",
            self._client_text(),
            body.received,
        )
        self._parsing = None
        exchange.keep_alive = False
        if exchange.finished:
            # Answered already; only the rest of the body was awaited.
            self._close()
            return
        exchange.error_status = "408 Request Timeout"
        body.fail(RequestBodyTimeout("request body too slow"))
        self._set_pause(body=True)  # nothing more of it is wanted

    def _set_pause(self, *, body: bool | None = None, pipeline: bool | None = None) -> None:
        if body is not None:
            self._paused_for_body = body
        if pipeline is not None:
            self._paused_for_pipeline = pipeline
        want = self._paused_for_body or self._paused_for_pipeline or self._paused_for_writes
        if want != self._reading_paused and not self.disconnected:
            self._reading_paused = want
            if want:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def _release_fd(self) -> None:
        # Caller holds self.lock, so no worker is inside os.write() on this fd.
        if self.direct_fd >= 0:
            os.close(self.direct_fd)
            self.direct_fd = -1

    def _close(self) -> None:
        self.deadline = 0.0
        with self.lock:
            self._release_fd()
        if not self.disconnected:
            self.transport.close()
            left = self.transport.get_write_buffer_size()
            if left:
                # close() waits for the buffered response to be sent; a client that
                # never reads it would hold the connection for ever.
                self._linger_left = left
                asyncio.get_running_loop().call_later(
                    self.limits.send_timeout, self._drop_if_stalled
                )

    def _drop_if_stalled(self) -> None:
        if self.disconnected:
            return
        left = self.transport.get_write_buffer_size()
        if left and left == self._linger_left:
            logger.info(
                "%s took none of the last %d byte(s) of its response in %g s; dropping it",
                self._client_text(),
                left,
                self.limits.send_timeout,
            )
            self.transport.abort()
            return
        if not left:
            return  # all sent; connection_lost follows
        # Still taking bytes: look again later.
        self._linger_left = left
        asyncio.get_running_loop().call_later(self.limits.send_timeout, self._drop_if_stalled)

    def shutdown(self) -> None:
        """Close now if idle; otherwise after the requests already read are answered."""
        with self.lock:
            self.closing = True
            idle = self._active is None and not self._queue and not self._in_message
        if idle:
            self._close()
