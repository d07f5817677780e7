"""One request and its response: the fields every transport fills in, and the two sides
an exchange offers.

Rule: imports nothing of the package but this package; no asyncio, no sockets.

Every transport's exchange is a :class:`RequestHead` (the request line, headers and the
two ends of the connection, fixed once the head is parsed) and offers one or both sides:

* :class:`Exchange`, the *worker side*: what the WSGI bridge calls from the one worker
  thread that serves the request (read the body, send the response). The HTTP server's
  exchange, the ASGI adapter's and the daemon process's stream offer it.
* :class:`LoopExchange`, the *loop side*: the same answers given on the event loop, never
  blocking, for code that answers there (the daemon front, a site's router). The HTTP
  server's exchange and the ASGI adapter's daemon-mode exchange offer it.

Both sides are plain base classes; only :class:`LoopExchange` adds slots, so one class
can offer both (:class:`ServerExchange`, the HTTP server's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asyncwsgi.core.body import RequestBody


class RequestHead:
    """What was asked: the request line, the headers and the two ends of the connection."""

    __slots__ = (
        "client",
        "headers",
        "http_version",
        "method",
        "path",
        "query",
        "scheme",
        "script_name",
        "server",
    )

    method: str
    path: bytes  # raw, as received (percent-encoded)
    query: bytes  # raw, without the "?"
    http_version: str  # "1.1", "1.0", "2"
    headers: list[tuple[bytes, bytes]]  # as received: names in the client's case
    client: tuple[str, int] | None  # None on a UNIX socket
    server: tuple[str, int] | None  # None on a UNIX socket
    scheme: str  # "http" or "https"
    # Where the request is mounted (a site's WSGIScriptAlias, an ASGI root_path); None:
    # the runner's own mount point.
    script_name: str | None


class Exchange(RequestHead):
    """The worker side: the calls that answer a request from a worker thread.

    They build the response where they are called and block (never buffer without bound)
    while the client is slower than the application; a client that is gone makes them
    raise ``ClientDisconnected``.
    """

    __slots__ = ()

    @property
    def head_sent(self) -> bool:
        raise NotImplementedError

    @property
    def body_allowed(self) -> bool:
        """False once a head was sent for a response that carries no body (HEAD, 204,
        304): body chunks would be dropped, so the bridge stops asking for them."""
        raise NotImplementedError

    def read_body(self, size: int) -> bytes:
        """Up to ``size`` bytes of the request body (all there is for -1), waiting for at
        least one; ``b""`` at its end."""
        raise NotImplementedError

    def respond(
        self,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        final: bool,
        body_length: int = -1,
    ) -> None:
        """Send the status line and headers with the first part of the body; with
        ``final`` the response is complete after ``body``. ``body_length`` is the whole
        body's length when known before it is sent (it becomes the Content-Length when
        the application gave none)."""
        raise NotImplementedError

    def write(self, data: bytes, *, final: bool = False) -> None:
        """Send more of the body; blocks while the client is behind."""
        raise NotImplementedError

    def sendfile(self, file: Any, offset: int, count: int) -> None:
        """Send ``count`` bytes of a regular file from ``offset``, after the head, and end
        the response."""
        raise NotImplementedError

    def send_error(self, status: str, message: bytes) -> None:
        """Answer with a server-made error if nothing was sent yet, else abort."""
        raise NotImplementedError

    def abort(self) -> None:
        """End the response where it stands; the connection is closed."""
        raise NotImplementedError


class LoopExchange(RequestHead):
    """The loop side: the same answers given on the event loop, never blocking.

    Backpressure is the caller's job: it sends more only while :attr:`writable`, and
    :attr:`listener` is called when the client has taken what was queued (or went away).
    The request body, if any, is taken from :attr:`body` with ``take()``; its listener is
    called when more arrives.
    """

    __slots__ = ("body", "body_length", "finished", "listener")

    listener: Callable[[], None] | None
    finished: bool  # the response is complete (or aborted)
    body: RequestBody | None
    body_length: int  # 0: no body; n: Content-Length n; -1: chunked, length unknown

    @property
    def head_sent(self) -> bool:
        raise NotImplementedError

    @property
    def disconnected(self) -> bool:
        raise NotImplementedError

    @property
    def writable(self) -> bool:
        """The client takes more now; otherwise wait for :attr:`listener`."""
        raise NotImplementedError

    def loop_respond(
        self,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        final: bool,
        body_length: int = -1,
    ) -> None:
        raise NotImplementedError

    def loop_write(self, data: bytes, *, final: bool = False) -> None:
        raise NotImplementedError

    def loop_send_error(self, status: str, message: bytes) -> None:
        raise NotImplementedError

    def loop_abort(self) -> None:
        raise NotImplementedError

    def loop_time_out(self, status: str, message: bytes) -> None:
        """The request ran too long: answer ``status`` if nothing was sent yet, else end
        the response; the connection is closed either way, and the writes of the worker
        still running it fail quietly (``ClientDisconnected``)."""
        self.loop_send_error(status, message)


class ServerExchange(Exchange, LoopExchange):
    """An exchange that offers both sides: the HTTP server's. A runner may answer it from
    a worker thread (embedded mode) or on the loop (daemon mode), and a site's router
    hands it to either."""

    __slots__ = ()
