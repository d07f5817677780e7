"""``asyncwsgi.WSGIApp``: a WSGI application served as an ASGI 3 application.

The rule of this module is the line between two kinds of thread, as in the HTTP server:

* WORKER SIDE: the public methods of :class:`_Exchange` (the ``Exchange`` protocol of
  ``asyncwsgi.wsgi.types``) and :meth:`_RequestBody.read` run on a pool thread, inside
  ``call_application``. They never call ``send`` or ``receive``: they queue finished ASGI
  messages, and wake the event loop through a :class:`_Link`, which batches the wake-ups
  of every request into one thread-safe call. They block (never buffer without bound)
  when the client is slower than the application, and raise ``ClientDisconnected`` once
  the request is over on the loop side, so no worker waits for a request that is gone.
* LOOP SIDE: :class:`WSGIApp`'s ``__call__``, every ``_loop_*`` method and the links'
  ``_drain`` run on the host's event loop; they are the only code that touches ``send``
  and ``receive``.

A request costs one hop in (a job on the pool's queue) and, for a one-piece response,
one wake-up back, shared with every other response that finished meanwhile. Two links
carry the wake-ups: :class:`_AsyncioLink` (``call_soon_threadsafe`` and futures, for
asyncio hosts such as uvicorn and granian) and :class:`_AnyioLink` (anyio's event loop
token and ``anyio.Event``, for trio hosts such as hypercorn's trio worker). Everything
else is shared by both.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

import anyio
import anyio.lowlevel

from asyncwsgi.chunks import take
from asyncwsgi.config import Config, ProcessSettings, check_setting
from asyncwsgi.daemon.front import DaemonRunner
from asyncwsgi.errors import BadRequestBody, ClientDisconnected, ConfigError, ScriptLoadError
from asyncwsgi.scripts.loader import is_script_path, load_target
from asyncwsgi.scripts.reloader import ScriptSource, StaticSource
from asyncwsgi.settings import entry, table
from asyncwsgi.wsgi.environ import base_environ, build_environ
from asyncwsgi.wsgi.pool import ThreadPool
from asyncwsgi.wsgi.response import FileWrapper, call_application
from asyncwsgi.wsgi.types import AppSource, Environ, WSGIApplication

logger = logging.getLogger("asyncwsgi.error")

Message = dict[str, Any]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Response bytes queued for the loop before a writing worker waits for the host to take
# them. Each message also costs _MESSAGE_COST, so a stream of tiny chunks cannot queue
# an unbounded number of messages either.
_WRITE_BUFFER = 256 * 1024
_WRITE_LOW = _WRITE_BUFFER // 2  # ... and goes on once the queue is down to this
_MESSAGE_COST = 512
# Request body read ahead of the application before we stop calling receive(); the host
# then stops reading from the socket, and the client is held back.
_BODY_BUFFER = 256 * 1024
# How long a worker waits for more request body or for the host to take response bytes.
# Disconnects wake it at once; this only bounds a host that never answers at all.
_IO_WAIT = 60.0
_FILE_BLOCK = 64 * 1024
_ERROR_500 = b"Internal Server Error\n"
# The server's own default (see the settings table in asyncwsgi.config).
DEFAULT_THREADS: int = entry(Config, "threads").default

# Headers that describe the connection; PEP 3333 forbids applications to send them and
# the ASGI host owns them ("Connection: close" is passed on as a wish to close).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
     "proxy-authenticate", "proxy-authorization"}
)  # fmt: skip


# --------------------------------------------------------------------------------------
# Pure helpers: scope values in, WSGI/ASGI values out (no threads, no loop)
# --------------------------------------------------------------------------------------


def request_path(scope: Scope) -> bytes:
    """The request path as raw bytes, the form ``build_environ`` takes.

    ``raw_path`` is used when it agrees with ``path`` (it keeps bytes that are not UTF-8,
    which ``path`` has lost); otherwise ``path`` (a framework may have rewritten it),
    with ``%`` escaped so that decoding it again gives the same text.
    """
    path: str = scope["path"]
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        encoded = path.encode("utf-8", "surrogateescape")
    raw = scope.get("raw_path")
    if raw is not None:
        if raw == encoded:
            return bytes(raw)
        if b"%" in raw and unquote_to_bytes(raw).decode("utf-8", "replace") == path:
            return bytes(raw)
    return encoded.replace(b"%", b"%25") if b"%" in encoded else encoded


def script_name_of(scope: Scope) -> str:
    """SCRIPT_NAME from the ASGI ``root_path``: UTF-8 bytes as latin-1 text (PEP 3333)."""
    root: str = scope.get("root_path") or ""
    return root.encode("utf-8", "surrogateescape").decode("latin-1").rstrip("/")


def status_allows_body(status_code: int) -> bool:
    return not (100 <= status_code < 200 or status_code in (204, 304))


def response_start(
    status: str,
    headers: list[tuple[str, str]],
    *,
    is_head: bool,
    body_length: int,
) -> tuple[Message, int, bool]:
    """The ``http.response.start`` message of a WSGI status and header list.

    Returns the message, the Content-Length the body must have (-1: not known) and
    whether the body is sent at all. ``body_length`` is the length of the whole body when
    it is already known (a one-piece response); it becomes the Content-Length when the
    application gave none, so hosts need not chunk it. Header names are lowercased and
    values stripped, as ASGI hosts require. Raises ``ValueError`` for a Content-Length
    that is not a number or two that differ, before anything is sent.
    """
    status_code = int(status[:3])
    allowed = not is_head and status_allows_body(status_code)
    content_length = -1
    out: list[tuple[bytes, bytes]] = []
    append = out.append
    for name, value in headers:
        lname = name.lower()
        if lname in _HOP_BY_HOP:
            if lname == "connection" and "close" in value.lower():
                append((b"connection", b"close"))
            continue
        value = value.strip(" \t")
        if lname == "content-length":
            # int() would also take "+5", "1_000" or non-ASCII digits; HTTP takes 1*DIGIT.
            if not (value.isascii() and value.isdigit()):
                raise ValueError(f"invalid Content-Length header {value!r}")
            if content_length >= 0 and int(value) != content_length:
                raise ValueError("the application sent two different Content-Length headers")
            if content_length >= 0:
                continue
            content_length = int(value)
            if not allowed and not is_head:
                # 204/304: hosts would wait for that many body bytes, which must not come.
                continue
        append((lname.encode("latin-1"), value.encode("latin-1")))
    if content_length < 0 and body_length >= 0 and (allowed or (is_head and body_length > 0)):
        # A HEAD answer carries the length the GET would have had.
        content_length = body_length
        append((b"content-length", str(body_length).encode("ascii")))
    message = {"type": "http.response.start", "status": status_code, "headers": out}
    return message, content_length if allowed else -1, allowed


def _expects_body(headers: list[tuple[bytes, bytes]], http_version: str) -> bool:
    length: bytes | None = None
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            chunked = True
    if length is not None:
        return length.strip() != b"0"
    if chunked:
        return True
    # HTTP/1.x frames every body with one of the two; HTTP/2 and 3 need neither.
    return not http_version.startswith("1.")


def _expects_continue(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name == b"expect" and value.strip().lower() == b"100-continue" for name, value in headers
    )


# --------------------------------------------------------------------------------------
# Links: the one way from a worker thread back to the event loop
# --------------------------------------------------------------------------------------


class _Link(Protocol):
    """One event loop, as the requests served on it see it."""

    def post(self, exchange: _Exchange) -> None:
        """Worker side: have ``exchange._loop_wake()`` run on the loop soon."""

    def waiter(self) -> Any:
        """Loop side: a new one-shot thing to wait on."""

    def wake(self, waiter: Any) -> None:
        """Loop side: release whoever waits on ``waiter``."""

    def wait(self, waiter: Any) -> Awaitable[Any]:
        """Loop side: the awaitable that waits on ``waiter``."""


class _Batcher:
    """The shared half of both links: exchanges posted by workers, drained in batches.

    One scheduled drain wakes however many exchanges were posted before the loop got
    round to it; a worker schedules one only when none is pending.
    """

    __slots__ = ("_items", "_scheduled")

    def __init__(self) -> None:
        self._items: deque[_Exchange] = deque()
        self._scheduled = False

    # -- worker side -------------------------------------------------------------------

    def post(self, exchange: _Exchange) -> None:
        self._items.append(exchange)
        if not self._scheduled:
            self._scheduled = True
            try:
                self._schedule()
            except Exception:  # the loop is closed: nobody is left to answer
                self._scheduled = False

    def _schedule(self) -> None:
        raise NotImplementedError

    # -- loop side ---------------------------------------------------------------------

    def _drain(self) -> None:
        # Reset first: an exchange posted from now on is either seen by this drain or
        # schedules a new one.
        self._scheduled = False
        items = self._items
        popleft = items.popleft
        while items:
            try:
                popleft()._loop_wake()
            except Exception:
                logger.exception("error waking a request on the event loop")


class _AsyncioLink(_Batcher):
    """asyncio: ``call_soon_threadsafe`` to wake the loop, futures to wait on."""

    __slots__ = ("_call_soon_threadsafe", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self._call_soon_threadsafe = loop.call_soon_threadsafe

    def _schedule(self) -> None:
        self._call_soon_threadsafe(self._drain)

    def waiter(self) -> asyncio.Future[None]:
        return self.loop.create_future()

    def wake(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():  # it may have been cancelled with its task
            waiter.set_result(None)

    def wait(self, waiter: asyncio.Future[None]) -> Awaitable[None]:
        return waiter


class _AnyioLink(_Batcher):
    """A loop that is not asyncio's (trio): its event loop token to wake it, anyio events.

    anyio runs on asyncio (served by :class:`_AsyncioLink`) and trio, so the native token
    it hands out here is a ``TrioToken``, whose ``run_sync_soon`` is the loop's
    thread-safe door.
    """

    __slots__ = ("_run_sync_soon",)

    def __init__(self, token: anyio.lowlevel.EventLoopToken) -> None:
        super().__init__()
        native: Any = token.native_token
        self._run_sync_soon: Callable[[Callable[[], None]], object] = native.run_sync_soon

    def _schedule(self) -> None:
        self._run_sync_soon(self._drain)

    def waiter(self) -> anyio.Event:
        return anyio.Event()

    def wake(self, waiter: anyio.Event) -> None:
        waiter.set()

    def wait(self, waiter: anyio.Event) -> Awaitable[None]:
        return waiter.wait()


class _Cancellable(Protocol):
    def cancel(self) -> Any: ...


Spawn = Callable[[Callable[[Receive], Coroutine[Any, Any, None]], Receive], _Cancellable]


# --------------------------------------------------------------------------------------
# WORKER SIDE (with its loop-side feeder): the request body
# --------------------------------------------------------------------------------------


class _RequestBody:
    """Body bytes passed from the loop (producer) to one worker thread (consumer)."""

    __slots__ = ("_chunks", "_cond", "_error", "_exchange", "_offset", "_size", "eof", "paused")

    def __init__(self, exchange: _Exchange) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # bytes of the first chunk already read
        self._size = 0  # bytes buffered and not yet read
        self._error: BaseException | None = None
        self._exchange = exchange
        self.eof = False
        # Set by the loop when the buffer is full, cleared by the worker as it drains it;
        # while set, the loop calls no receive().
        self.paused = False

    # -- loop side ---------------------------------------------------------------------

    def feed(self, data: bytes, more: bool) -> None:
        with self._cond:
            if data:
                self._chunks.append(data)
                self._size += len(data)
            if not more:
                self.eof = True
            elif self._size > _BODY_BUFFER:
                self.paused = True
            self._cond.notify()

    def cut(self, more: bool) -> None:
        """Drop body bytes nobody will read in time (the buffer is full and the response
        has started); a later read() gets what was buffered, then an error — never a
        silently short body."""
        with self._cond:
            if self._error is None:
                self._error = BadRequestBody(
                    "request body discarded: it was not read before the response started"
                )
            self._cond.notify()

    def fail(self, exc: BaseException) -> None:
        """End the body with an error; bytes already received are still read first."""
        with self._cond:
            if not self.eof and self._error is None:
                self._error = exc
            self._cond.notify()

    # -- worker side -------------------------------------------------------------------

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (all that is buffered if ``size`` < 0), waiting for at
        least one; ``b""`` once the body has ended."""
        resume = False
        with self._cond:
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
            # Hosts hand over big messages (uvicorn: all it buffered); a block is cut
            # from the first at an offset, so its rest is not copied again per read.
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
            if self.paused and self._size <= _BODY_BUFFER // 2:
                self.paused = False
                resume = True
        if resume:
            self._exchange._signal()
        return data


# --------------------------------------------------------------------------------------
# One request and its response
# --------------------------------------------------------------------------------------


class _ScopeRequest:
    """The request side of an exchange, from the ASGI scope (the ``RequestHead`` shape)."""

    __slots__ = (
        "client",
        "headers",
        "http_version",
        "method",
        "path",
        "query",
        "scheme",
        "scope",
        "server",
    )

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path = request_path(scope)
        self.query: bytes = scope.get("query_string") or b""
        self.http_version: str = scope.get("http_version") or "1.1"
        self.headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        self.client: tuple[str, int] | None = scope.get("client")
        server = scope.get("server")
        # A UNIX socket reports (path, None): no port of its own, so use the Host header.
        self.server: tuple[str, int] | None = server if server and server[1] is not None else None
        self.scheme: str = scope.get("scheme") or "http"


class _Exchange(_ScopeRequest):
    """One ASGI ``http`` request as the WSGI bridge sees it.

    The request attributes are fixed at creation. The response methods are for the one
    worker thread that serves the request; the ``_loop_*`` methods for the event loop.
    """

    __slots__ = (
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
        "body_allowed",
        "disconnected",
        "done",
        "finished",
    )

    def __init__(self, scope: Scope, link: _Link) -> None:
        super().__init__(scope)
        self._link = link
        # Worker -> loop: ASGI messages to send, in order; None means "abort".
        self._outbox: deque[Message | None] = deque()
        self._signalled = False  # a wake-up of this exchange is pending on the loop
        self._started = False
        self.finished = False  # the worker has queued its last message
        self.body_allowed = True
        self._length_left = -1  # body bytes the Content-Length still promises; -1: none
        self._overrun = False
        self._posted = 0  # bytes (plus message costs) queued by the worker
        self._sent = 0  # of those, bytes the host has taken (loop writes it)
        self._writer: threading.Event | None = None
        self._body: _RequestBody | None = None
        self._body_known = False  # the worker has decided whether there is a body
        self._watch = False  # the response streams: the loop should watch for a disconnect
        # Loop side.
        self.disconnected = False  # the client is gone or the request was abandoned
        self.done = False  # the loop side has finished with this request
        self._sender_waiter: Any = None
        self._receiver_waiter: Any = None
        self._receiver: _Cancellable | None = None

    # -- worker side: the Exchange protocol --------------------------------------------

    @property
    def head_sent(self) -> bool:
        return self._started

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
        start, self._length_left, self.body_allowed = response_start(
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
        if self._body_known or not _expects_continue(self.headers):
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
        if not self.body_allowed or count <= 0:
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
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        self.respond(status, headers, message, final=True)

    def abort(self) -> None:
        """End the response where it stands; the host closes the connection."""
        if not self.finished:
            self.finished = True
            self._outbox.append(None)
            self._signal()

    # -- worker side: internals --------------------------------------------------------

    def _open_body(self) -> _RequestBody | None:
        self._body_known = True
        if not _expects_body(self.headers, self.http_version):
            return None
        body = self._body = _RequestBody(self)
        if self.disconnected or self.done:
            # The loop side is over and will never feed it (it checks _body after
            # setting these flags, so one of the two threads sees the other).
            body.fail(ClientDisconnected("the request is over"))
        self._signal()  # the loop starts receiving
        return body

    def _signal(self) -> None:
        if not self._signalled:
            self._signalled = True
            self._link.post(self)

    def _send(self, data: bytes, final: bool) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        if not self.body_allowed:
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
        self._posted += len(data) + _MESSAGE_COST
        self._signal()
        if self._posted - self._sent > _WRITE_BUFFER:
            self._wait_writable()

    def _wait_writable(self) -> None:
        waiter = self._writer
        if waiter is None:
            waiter = self._writer = threading.Event()
        deadline = time.monotonic() + _IO_WAIT
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
                        self._sent += len(message["body"]) + _MESSAGE_COST
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
                            body.cut(more)
                        else:
                            body.feed(message.get("body", b""), more)
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


# --------------------------------------------------------------------------------------
# Daemon mode: the request goes to a daemon process group, answered on the loop
# --------------------------------------------------------------------------------------
# Everything in this section runs on the host's (asyncio) event loop. The daemon front
# (asyncwsgi.daemon.front) drives these two objects through the same loop-side calls it
# makes on the HTTP server's exchanges.

# Settings of the server's that daemon= takes besides the process settings.
_DAEMON_EXTRA = {"group": "wsgiapp", "log_level": "info"}


def daemon_settings(daemon: object, threads: int) -> tuple[ProcessSettings, str, str]:
    """Validate WSGIApp's ``daemon=``: True, a number of processes, or a mapping of
    process-group settings (the names of the server's settings). Returns the process
    settings, the group name and the daemons' log level."""
    names = [e.name for e in table(ProcessSettings)] + list(_DAEMON_EXTRA)
    if daemon is True:
        options: dict[str, Any] = {}
    elif isinstance(daemon, int) and not isinstance(daemon, bool):
        options = {"processes": daemon}
    elif isinstance(daemon, dict):
        options = dict(daemon)
    else:
        raise ConfigError(
            "daemon: pass True, a number of processes, or a dict of process-group settings "
            f"({', '.join(names)})"
        )
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ConfigError(f"daemon: unknown setting {unknown[0]!r}")
    for name, value in options.items():
        check_setting(name, value, prefix="daemon: ")
    extra = {name: options.pop(name, default) for name, default in _DAEMON_EXTRA.items()}
    settings = ProcessSettings(**{"threads": threads, **options})
    return settings, extra["group"], extra["log_level"]


class _FrontBody:
    """The request body, read from ``receive()`` only as fast as the daemon takes it."""

    def __init__(self, front: _FrontExchange, expect_continue: bool) -> None:
        self._front = front
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._expect_continue = expect_continue
        self.error: BaseException | None = None
        self.eof = False
        self.listener: Callable[[], None] | None = None
        self.room = asyncio.Event()  # set while the buffer has room for more
        self.room.set()
        self.go = asyncio.Event()  # set once the body may be read (100-continue)
        if not expect_continue:
            self.go.set()

    @property
    def buffered(self) -> int:
        return self._size

    @property
    def continue_pending(self) -> bool:
        return self._expect_continue

    def send_continue(self) -> None:
        # ASGI hosts send "100 Continue" themselves on the first receive().
        self._expect_continue = False
        self.go.set()

    def take(self, limit: int) -> bytes:
        chunks = self._chunks
        if not chunks or limit <= 0:
            return b""
        data = take(chunks, limit, self._size)
        self._size -= len(data)
        if self._size < _BODY_BUFFER:
            self.room.set()
        return data

    def feed(self, data: bytes, more: bool) -> None:
        if data:
            self._chunks.append(data)
            self._size += len(data)
            if self._size >= _BODY_BUFFER:
                self.room.clear()
        if not more:
            self.eof = True
        self._poke()

    def fail(self, exc: BaseException) -> None:
        if not self.eof and self.error is None:
            self.error = exc
            self._poke()

    def _poke(self) -> None:
        if self.listener is not None:
            self.listener()


class _FrontExchange(_ScopeRequest):
    """One ASGI request for the daemon front: loop-side calls become ASGI messages."""

    def __init__(self, scope: Scope, send: Send) -> None:
        super().__init__(scope)
        self.script_name = script_name_of(scope)
        self.body: _FrontBody | None = None
        self.body_length = 0
        if _expects_body(self.headers, self.http_version):
            self.body_length = -1
            for name, value in self.headers:
                if name == b"content-length" and value.strip().isdigit():
                    self.body_length = int(value)
            self.body = _FrontBody(self, _expects_continue(self.headers))
        self.listener: Callable[[], None] | None = None
        self.finished = False  # the last message is queued
        self.disconnected = False
        self._send = send
        self._outbox: deque[Message | None] = deque()
        self._queued = 0
        self._head = False
        self._allowed = True
        self._length_left = -1
        self._wake = asyncio.Event()
        self.done = asyncio.Event()

    @property
    def head_sent(self) -> bool:
        return self._head

    @property
    def writable(self) -> bool:
        return not self.disconnected and self._queued < _WRITE_BUFFER

    def loop_respond(
        self,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        final: bool,
        body_length: int = -1,
    ) -> None:
        if self._head:
            raise RuntimeError("response head already sent")
        if final and body_length < 0:
            body_length = len(body)
        try:
            start, self._length_left, self._allowed = response_start(
                status, headers, is_head=self.method == "HEAD", body_length=body_length
            )
        except ValueError as exc:
            logger.error("bad response from the daemon for %s: %s", self.method, exc)
            self.loop_send_error("500 Internal Server Error", _ERROR_500)
            return
        self._head = True
        self._queue(start)
        self.loop_write(body, final=final)

    def loop_write(self, data: bytes, *, final: bool = False) -> None:
        if not self._allowed:
            data = b""
        elif self._length_left >= 0:
            data = data[: self._length_left]
            self._length_left -= len(data)
        if data or final:
            self._queue({"type": "http.response.body", "body": data, "more_body": not final})
        if final:
            self.finished = True

    def loop_send_error(self, status: str, message: bytes) -> None:
        if self._head:
            self.loop_abort()
            return
        self.loop_respond(
            status, [("Content-Type", "text/plain; charset=utf-8")], message, final=True
        )

    def loop_abort(self) -> None:
        if not self.finished:
            self.finished = True
            self._outbox.append(None)
            self._wake.set()

    def _queue(self, message: Message) -> None:
        if self.disconnected:
            return
        self._outbox.append(message)
        self._queued += len(message.get("body", b"")) + _MESSAGE_COST
        self._wake.set()

    def lost(self) -> None:
        if not self.disconnected:
            self.disconnected = True
            if self.body is not None:
                self.body.fail(ClientDisconnected("client disconnected"))
            self._wake.set()
            if self.listener is not None:
                self.listener()

    async def pump(self) -> None:
        """Send what is queued until the response is complete, aborted or abandoned."""
        outbox = self._outbox
        try:
            while True:
                while outbox:
                    message = outbox.popleft()
                    if message is None:
                        raise ClientDisconnected("the response could not be completed")
                    await self._send(message)
                    before = self._queued
                    self._queued -= len(message.get("body", b"")) + _MESSAGE_COST
                    if message["type"] == "http.response.body" and not message["more_body"]:
                        return
                    if before >= _WRITE_BUFFER > self._queued and self.listener is not None:
                        self.listener()
                if self.disconnected:
                    return
                self._wake.clear()
                await self._wake.wait()
        except OSError:
            self.lost()
        finally:
            self.done.set()

    async def receive_loop(self, receive: Receive) -> None:
        """Feed the body as the daemon takes it, then watch for the client leaving."""
        body = self.body
        try:
            if body is not None:
                await body.go.wait()
                while not body.eof and not self.disconnected:
                    await body.room.wait()
                    message = await receive()
                    kind = message.get("type")
                    if kind == "http.request":
                        body.feed(message.get("body", b""), bool(message.get("more_body")))
                    elif kind == "http.disconnect":
                        self.lost()
                        return
            while not self.done.is_set():
                message = await receive()
                if message.get("type") == "http.disconnect":
                    self.lost()
                    return
        except Exception as exc:
            logger.debug("receive() failed for %s: %r", self.scope.get("path"), exc)
            self.lost()


# --------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------


class WSGIApp:
    """An ASGI 3 application that serves a WSGI application from a thread pool.

    ``app`` is a WSGI script file (reloaded when it changes, as DESIGN.md section 1
    says, unless ``script_reloading`` is False), ``package.module:attr``, or a WSGI
    callable. The pool of ``threads`` worker threads starts with the first request or
    the lifespan startup and stops at the lifespan shutdown or :meth:`close`.
    """

    def __init__(
        self,
        app: str | os.PathLike[str] | WSGIApplication,
        *,
        script_reloading: bool = True,
        threads: int = DEFAULT_THREADS,
        callable: str = "application",
        daemon: object = None,
    ) -> None:
        check_setting("script_reloading", script_reloading)
        check_setting("threads", threads)
        check_setting("callable", callable)
        self.threads = threads
        # The host may run several worker processes that we cannot see: say so.
        self._base = base_environ(file_wrapper=FileWrapper, multiprocess=True)
        self._pool: ThreadPool | None = None
        self._busy: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._asyncio_link: _AsyncioLink | None = None
        self._anyio_links: dict[int, tuple[object, _AnyioLink]] = {}
        self.source: AppSource
        self._daemons: DaemonRunner | None = None
        self._daemons_started: asyncio.Future[None] | None = None
        if daemon is not None and daemon is not False:
            settings, group, log_level = daemon_settings(daemon, threads)
            if not isinstance(app, (str, os.PathLike)) or not os.fspath(app):
                raise ConfigError(
                    "app: a daemon group imports the application in other processes, so it "
                    "needs a script path or 'module:attr', not a callable"
                )
            target = os.fspath(app)
            if is_script_path(target) and not os.path.isfile(target):
                raise ConfigError(f"app: no such script file {target!r}")
            self._daemons = DaemonRunner(
                app=target,
                group=group,
                settings=settings,
                callable_name=callable,
                script_reloading=script_reloading,
                forwarded_allow_ips="",
                log_level=log_level,
            )
            self.source = StaticSource(_no_app)
            return
        source: AppSource
        if isinstance(app, (str, os.PathLike)):
            target = os.fspath(app)
            if not target:
                raise ConfigError("app: give a script path, package.module:attr or a callable")
            if is_script_path(target):
                source = ScriptSource(target, callable_name=callable, reloading=script_reloading)
            else:
                source = StaticSource(load_target(target, callable))
        elif builtins.callable(app):
            source = StaticSource(app)
        else:
            raise ConfigError("app: must be a path, 'module:attr' or a WSGI callable")
        self.source = source

    @property
    def busy_threads(self) -> int:
        """Worker threads running a request now (for monitoring, and leak tests)."""
        return len(self._busy)

    def close(self, timeout: float | None = 10.0) -> list[str]:
        """Stop the worker threads once the requests queued so far are done.

        Blocks up to ``timeout`` for each thread; returns the names of threads still
        running. The next request starts a new pool.
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return []
        stuck = pool.shutdown(timeout)
        if stuck:
            logger.warning("WSGIApp: %d worker thread(s) still busy at shutdown", len(stuck))
        return stuck

    # -- loop side ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and self._daemons is not None:
            await self._http_daemon(scope, receive, send)
        elif kind == "http":
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not asyncio: trio, through anyio
                await self._http_anyio(scope, receive, send)
                return
            # The asyncio hot path, inline: one exchange, one job for the pool, and the
            # pump that sends what the worker queues.
            link = self._asyncio_link
            if loop is not self._loop or link is None:
                link = self._asyncio_link = _AsyncioLink(loop)
                self._loop = loop
            exchange = _Exchange(scope, link)
            self._submit(exchange)
            await exchange._loop_pump(send, receive, _asyncio_spawn)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # WSGI has no websockets: refuse the handshake (the host answers 403).
            message = await receive()
            if message.get("type") == "websocket.connect":
                await send({"type": "websocket.close", "code": 1000})
        else:
            raise NotImplementedError(f"WSGIApp does not handle ASGI {kind!r} scopes")

    async def _http_anyio(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = anyio.lowlevel.current_token()
        native = token.native_token
        entry = self._anyio_links.get(id(native))
        if entry is None or entry[0] is not native:
            entry = (native, _AnyioLink(token))
            self._anyio_links = {id(native): entry}  # one loop at a time; drop old ones
        exchange = _Exchange(scope, entry[1])
        self._submit(exchange)
        error: Exception | None = None
        async with anyio.create_task_group() as group:

            def spawn(fn: Callable[[Receive], Coroutine[Any, Any, None]], arg: Receive) -> Any:
                group.start_soon(fn, arg)
                return group.cancel_scope

            try:
                await exchange._loop_pump(send, receive, spawn)
            except Exception as exc:  # raised below, not wrapped in an ExceptionGroup
                error = exc
            group.cancel_scope.cancel()
        if error is not None:
            raise error

    async def _http_daemon(self, scope: Scope, receive: Receive, send: Send) -> None:
        runner = self._daemons
        assert runner is not None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "WSGIApp(daemon=...) runs its process group on an asyncio event loop; "
                "this host runs trio"
            ) from None
        await self._start_daemons()
        exchange = _FrontExchange(scope, send)
        receiver = loop.create_task(exchange.receive_loop(receive))
        try:
            runner.submit(exchange)
            await exchange.pump()
        finally:
            receiver.cancel()
            if not exchange.finished:
                # Cancelled by the host, or send() failed: the daemon's thread must hear.
                exchange.lost()

    async def _start_daemons(self) -> None:
        started = self._daemons_started
        if started is None:
            started = self._daemons_started = asyncio.get_running_loop().create_future()
            runner = self._daemons
            assert runner is not None
            try:
                await runner.start()
            except BaseException as exc:
                self._daemons_started = None
                started.set_exception(exc)
                started.exception()  # retrieved: later requests try again
                raise
            started.set_result(None)
        await asyncio.shield(started)

    async def aclose(self) -> None:
        """Stop the daemon process group (daemon mode) gracefully."""
        runner, started = self._daemons, self._daemons_started
        if runner is not None and started is not None:
            self._daemons_started = None
            await runner.close()

    def _submit(self, exchange: _Exchange) -> None:
        pool = self._pool
        if pool is None:
            pool = self._start_pool()
        pool.submit(self._serve, exchange, self.source.ticket())

    def _start_pool(self) -> ThreadPool:
        pool = self._pool = ThreadPool(self.threads, name="asyncwsgi-asgi")
        return pool

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            kind = message.get("type")
            if kind == "lifespan.startup":
                try:
                    if self._daemons is not None:
                        await self._start_daemons()
                    elif self._pool is None:
                        self._start_pool()
                except Exception as exc:
                    logger.exception("WSGIApp could not start its worker threads")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                if self._daemons is not None:
                    await self.aclose()
                # Joining threads blocks: do it off the loop.
                await anyio.to_thread.run_sync(self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- worker side -------------------------------------------------------------------

    def _serve(self, exchange: _Exchange, ticket: object) -> None:
        if exchange.done or exchange.disconnected:
            return  # the client left while the request waited for a thread
        busy = self._busy
        ident = threading.get_ident()
        busy.add(ident)
        try:
            try:
                app = self.source.resolve(ticket)
            except ScriptLoadError:
                exchange.send_error("500 Internal Server Error", _ERROR_500)
                return
            scope = exchange.scope
            if scope.get("root_path"):
                environ: Environ = build_environ(exchange, self._base, script_name_of(scope))
            else:
                environ = build_environ(exchange, self._base)
            # The ASGI scope, for applications that need what only it has (as a2wsgi).
            environ["asgi.scope"] = scope
            call_application(app, environ, exchange)
        except ClientDisconnected:
            pass
        except Exception:
            logger.exception("error serving %s %s", exchange.method, exchange.scope.get("path"))
        finally:
            if not exchange.finished and not exchange.disconnected:
                # Whatever happened, the loop side must not wait for this request forever.
                exchange.abort()
            busy.discard(ident)


def _no_app(environ: Environ, start_response: Any) -> list[bytes]:  # pragma: no cover
    raise RuntimeError("daemon mode: the application runs in the daemon processes")


def _asyncio_spawn(fn: Callable[[Receive], Coroutine[Any, Any, None]], arg: Receive) -> Any:
    return asyncio.get_running_loop().create_task(fn(arg))
