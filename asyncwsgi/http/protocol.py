"""One HTTP/1.1 connection: parsing, pipelining, flow control and timeouts.

:class:`HttpProtocol` runs on the event loop and is the only code that touches the
transport, with one exception that is the point of the design: a worker thread finishing
a response may write it to the socket itself (:meth:`HttpProtocol.write_direct`) when the
loop owes the connection nothing, so the loop is not woken for it. The exchange of each
request (``asyncwsgi.http.exchange``) reaches the connection only through the methods
headed "exchange side" below.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import threading
import time
from collections import deque
from typing import Any, cast

import httptools

from asyncwsgi.errors import (
    BadRequestBody,
    ClientDisconnected,
    RequestBodyTimeout,
    RequestBodyTooLarge,
)
from asyncwsgi.http.exchange import HttpBody, HttpExchange
from asyncwsgi.http.framing import simple_response
from asyncwsgi.http.request import Reject, body_framing, split_target, with_host
from asyncwsgi.http.state import HttpLimits, ServerState

logger = logging.getLogger("asyncwsgi.error")

# A response may be sent while the request body is still arriving; the connection stays
# usable only if what is left of the body is small enough to read and throw away.
_DRAIN_LIMIT = 64 * 1024
# At shutdown an idle keep-alive connection gets this long (s) to send a request already
# on its way (answered with "Connection: close"); closing at once would reset it.
LAST_CALL = 0.5
_OWS = (0x20, 0x09)  # space, horizontal tab


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
        self._active: HttpExchange | None = None
        self._queue: deque[HttpExchange] = deque()
        self._parsing: HttpExchange | None = None
        self._in_message = False  # between message begin and headers complete
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        # Idle: when the connection closes if no request begins (keep-alive, or the first
        # request of a new connection); 0: none.
        self.deadline = 0.0
        # A request head begun: when it must be complete (header_timeout from its first
        # byte, whatever else the connection is doing; time we are not reading does not
        # count); 0: no head in progress.
        self._head_deadline = 0.0
        self._head_checked = 0.0
        self._pending_reject: tuple[str, str] | None = None
        # The client must take what it is sent: bytes given to the transport, of those
        # the ones it had taken at the last sign of progress, and since when it has taken
        # none (send_timeout).
        self._handed = 0
        self._taken = 0
        self._stalled_since = 0.0
        # The request body being read, and when it must have come further (body_timeout).
        self._body_watched: HttpBody | None = None
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
            # Not one of the server's connections: nobody would watch it, so it may not
            # linger; a client that does not read the 503 at once loses it.
            if transport.get_write_buffer_size():
                transport.abort()
            else:
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
                exchange.loop_wake_writer()
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
            self._active.loop_wake_writer()
        if self._paused_for_writes:
            self._paused_for_writes = False
            self._next_request()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Reject as exc:
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
            if isinstance(cause, Reject):
                self._reject(cause.status, str(cause))
            else:
                self._reject("400 Bad Request", f"malformed request: {exc}")

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        now = time.monotonic()
        self.deadline = 0.0
        self._head_deadline = now + self.limits.header_timeout
        self._head_checked = now

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.limit_request_line:
            raise Reject("414 URI Too Long", "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        if value and value[-1] in _OWS:
            # RFC 9112 section 5: whitespace around a value is not part of it (the parser
            # drops the leading side only).
            value = value.rstrip(b" \t")
        headers.append((name, value))
        self._header_bytes += len(name) + len(value) + 4
        limits = self.limits
        if len(headers) > limits.limit_request_fields:
            raise Reject("431 Request Header Fields Too Large", "too many header fields")
        if len(name) + len(value) > limits.limit_request_field_size:
            raise Reject("431 Request Header Fields Too Large", "header field too large")
        if self._header_bytes > limits.limit_request_field_size * 8:
            raise Reject("431 Request Header Fields Too Large", "header section too large")

    def on_headers_complete(self) -> None:
        self._in_message = False
        self.deadline = self._head_deadline = 0.0
        parser = self.parser
        method = parser.get_method().decode("ascii")
        if method == "CONNECT":
            # A tunnel, which WSGI cannot serve; and a 2xx to it would make the response
            # body tunnel bytes (RFC 9110 section 9.3.6).
            raise Reject("400 Bad Request", "CONNECT is not served")
        version = parser.get_http_version()
        headers = self._headers
        # Trailer fields of a chunked body come through on_header too: into a list of
        # their own, never into the request's headers.
        self._headers = []
        body_length, expect_continue = body_framing(
            headers, version, self.limits.limit_request_body
        )
        path, query, authority = split_target(self._url)
        if authority is not None:
            headers = with_host(headers, authority)
        keep_alive = parser.should_keep_alive()
        if version == "1.0" and body_length < 0:
            # RFC 9112 section 6.1: chunked from a 1.0 client is faulty framing; close after.
            keep_alive = False
        body = HttpBody(self, expect_continue) if body_length else None
        exchange = HttpExchange(
            self,
            method,
            path,
            query,
            version,
            headers,
            keep_alive,
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
            raise Reject("413 Content Too Large", "request body over the limit")
        if exchange.finished:
            # Answered already: this is the small remainder we read to keep the
            # connection, or more of a body nobody will read.
            body.received += len(data)
            return
        body.feed(data)  # over its buffer, it pauses reading (pause_body)

    def on_message_complete(self) -> None:
        exchange = self._parsing
        self._parsing = None
        if exchange is not None and exchange.body is not None:
            exchange.body.feed_eof()
        if exchange is not None and exchange.finished and exchange is not self._active:
            # The response went out before the body finished arriving.
            self._next_request()

    # -- requests and responses --------------------------------------------------------

    def _start(self, exchange: HttpExchange) -> None:
        try:
            self.state.runner.submit(exchange)
        except Exception:
            logger.exception("could not hand a request to the application")
            self.write(
                simple_response(
                    "503 Service Unavailable",
                    b"Service Unavailable\n",
                    self.state.server_headers,
                    close=True,
                )
            )
            self._close()

    # -- exchange side: what the exchange of a request calls ------------------------------

    def write(self, data: bytes) -> None:
        """Loop side: give bytes to the transport, counted (send_timeout watches them)."""
        self._handed += len(data)
        self.transport.write(data)

    def post_io(self, fn: Any, a: Any, b: Any) -> None:
        """Worker side: post a loop callback that writes for this connection."""
        self.posted += 1
        self.state.inbox.post(fn, a, b)

    def write_direct(self, exchange: HttpExchange, data: bytes, final: bool) -> bool:
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
                    self.post_io(self.loop_write_final, exchange, rest)
                else:
                    exchange.posted += len(rest)
                    self.post_io(self.loop_write, exchange, rest)
                return True
            if not final:
                return True
            head = exchange.head
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
            self.post_io(self.loop_write_final, exchange, b"")
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

    def loop_write(self, exchange: HttpExchange, data: bytes) -> None:
        """Loop side, posted by the worker: response bytes the socket did not take."""
        try:
            if self.disconnected:
                return
            self.write(data)
        finally:
            self.executed += 1  # after the write: see http.exchange._loop_send_continue
        exchange.loop_written(len(data))

    def loop_write_final(self, exchange: HttpExchange, data: bytes) -> None:
        """Loop side, posted by the worker: the last bytes of the response."""
        try:
            if self.disconnected:
                return
            if data:
                self.write(data)
        finally:
            self.executed += 1  # after the write: see http.exchange._loop_send_continue
        self.loop_finished(exchange)

    def loop_finished(self, exchange: HttpExchange) -> None:
        """Loop side: the last bytes of ``exchange`` are in the transport; close the
        connection or go on with the next request."""
        head = exchange.head
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

    def abort_connection(self) -> None:
        """Loop side: end the response where it stands and close the connection."""
        # transport.abort(), not close(): a client that stopped reading would keep a
        # close() waiting forever to flush.
        self.deadline = 0.0
        with self.lock:
            already = self.disconnected
            self.disconnected = True
            self._release_fd()
        if not already:
            self.transport.abort()

    def pause_body(self) -> None:
        """Loop side: the request body's buffer is full; read no more until it drains."""
        self._set_pause(body=True)

    def resume_body(self) -> None:
        """Loop side: the application took enough of the request body; read on."""
        self._set_pause(body=False)

    def keep_alive_after(self, exchange: HttpExchange) -> bool:
        """Whether the connection may stay open after ``exchange``'s response (decided
        when its head is built, on whichever thread builds it)."""
        if not exchange.keep_alive:
            return False
        if self.closing and not self._queue and self._pending_reject is None:
            # Nothing read after this request waits for an answer: close after it.
            return False
        body = exchange.body
        if body is None or body.eof:
            return True
        if body.expect_continue:
            # The client is waiting for our go-ahead; it will never send that body now.
            return False
        return exchange.body_length >= 0 and exchange.body_length - body.received <= _DRAIN_LIMIT

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
        self.write(simple_response(status, body, self.state.server_headers, close=True))
        self._close()

    def _client_text(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unix socket"

    def check_deadline(self, now: float) -> None:
        """Called by the server's timer: end a connection that has outlived its state's
        deadline (docs/DESIGN.md, "Limits and timeouts")."""
        if self.disconnected:
            return
        self._check_sending(now)
        parsing = self._parsing
        if parsing is not None and parsing.body is not None and not self.disconnected:
            self._check_body(parsing, parsing.body, now)
        if self._head_deadline and not self.disconnected:
            self._check_head(now)
        if self.state.shutting_down and not self.closing:
            self.shutdown()  # accepted as the server began to stop
        if self._active is not None or self._queue or self.disconnected:
            return
        deadline = self.deadline
        if deadline and now >= deadline and not self._in_message:
            self.deadline = 0.0
            self._close()

    def _check_sending(self, now: float) -> None:
        # In every state: a client that takes none of what it was sent for send_timeout
        # holds the connection (and the response buffered for it) for nothing.
        buffered = self.transport.get_write_buffer_size()
        if not buffered:
            self._stalled_since = 0.0
            return
        taken = self._handed - buffered
        if taken != self._taken or not self._stalled_since:
            self._taken = taken
            self._stalled_since = now
            return
        if now - self._stalled_since < self.limits.send_timeout:
            return
        logger.info(
            "%s took none of the last %d byte(s) of its response in %g s; dropping it",
            self._client_text(),
            buffered,
            self.limits.send_timeout,
        )
        self.abort_connection()

    def _check_head(self, now: float) -> None:
        # A head must be complete within header_timeout of its first byte, also when it
        # began behind a request still being answered; time we do not read is not the
        # client's.
        if self._reading_paused:
            self._head_deadline += now - self._head_checked
        self._head_checked = now
        if now < self._head_deadline:
            return
        self._head_deadline = 0.0
        self._reject("408 Request Timeout", "request headers not received in time")

    def _check_body(self, exchange: HttpExchange, body: HttpBody, now: float) -> None:
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
        # A response still buffered goes on being sent; check_deadline drops a client
        # that stops taking it (send_timeout).
        self.deadline = 0.0
        with self.lock:
            self._release_fd()
        if not self.disconnected:
            self.transport.close()

    def shutdown(self) -> None:
        """Close after the requests already read are answered; if idle, after a last
        call of :data:`LAST_CALL` seconds for a request already on its way."""
        with self.lock:
            self.closing = True
            idle = self._active is None and not self._queue and not self._in_message
        if idle:
            self.deadline = time.monotonic() + LAST_CALL
            asyncio.get_running_loop().call_later(LAST_CALL, self._last_call_over)

    def _last_call_over(self) -> None:
        with self.lock:
            idle = self._active is None and not self._queue and not self._in_message
        if idle and not self.disconnected:
            self._close()
