"""``WSGIApp(daemon=...)``: the request goes to a daemon process group, answered on the loop.

Everything here runs on the host's (asyncio) event loop. The daemon front
(:class:`~asyncwsgi.daemon.runner.DaemonRunner`) drives an :class:`AsgiLoopExchange`
through the same loop side (:class:`~asyncwsgi.core.exchange.LoopExchange`) as the HTTP
server's exchanges: its calls become ASGI messages, and the request body is read from
``receive()`` only as fast as the daemon takes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from asyncwsgi.asgi.exchange import BODY_BUFFER, MESSAGE_COST, WRITE_BUFFER
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
from asyncwsgi.config import ProcessSettings, check_setting, default
from asyncwsgi.core.body import RequestBody
from asyncwsgi.core.exchange import LoopExchange
from asyncwsgi.core.head import INTERNAL_ERROR, PLAIN_TEXT, content_length
from asyncwsgi.errors import ClientDisconnected, ConfigError
from asyncwsgi.settings import table

logger = logging.getLogger("asyncwsgi.error")


# Settings of the server's that daemon= takes besides the process settings.
_DAEMON_EXTRA = {"group": "wsgiapp", "log_level": default("log_level")}


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
    if isinstance(options.get("log_level"), str):
        options["log_level"] = options["log_level"].lower()  # as the daemons' own logging
    for name, value in options.items():
        check_setting(name, value, prefix="daemon: ")
    extra = {name: options.pop(name, default) for name, default in _DAEMON_EXTRA.items()}
    settings = ProcessSettings(**{"threads": threads, **options})
    return settings, extra["group"], extra["log_level"]


def body_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The Content-Length the host passed on (it framed the body by it), else -1."""
    for name, value in headers:
        if name == b"content-length":
            try:
                return content_length(value.decode("latin-1"))
            except ValueError:
                return -1
    return -1


class AsgiFrontBody(RequestBody):
    """The request body, read from ``receive()`` only as fast as the daemon takes it."""

    __slots__ = ("go", "room")

    def __init__(self, expect_continue: bool) -> None:
        super().__init__(BODY_BUFFER, expect_continue=expect_continue)
        self.room = asyncio.Event()  # set while the buffer has room for more
        self.room.set()
        self.go = asyncio.Event()  # set once the body may be read (100-continue)
        if not expect_continue:
            self.go.set()

    def feed_message(self, data: bytes, more: bool) -> None:
        self.feed(data)
        if not more:
            self.feed_eof()

    def _paused(self) -> None:
        self.room.clear()

    def _continue(self) -> None:
        # ASGI hosts send "100 Continue" themselves on the first receive().
        self.go.set()

    def _drained(self, *, loop_side: bool) -> None:
        self.room.set()


class AsgiLoopExchange(LoopExchange):
    """One ASGI request for the daemon front: loop-side calls become ASGI messages."""

    __slots__ = (
        "_allowed",
        "_head",
        "_length_left",
        "_lost",
        "_outbox",
        "_queued",
        "_send",
        "_wake",
        "done",
        "scope",
    )

    body: AsgiFrontBody | None

    def __init__(self, scope: Scope, send: Send) -> None:
        self.scope = scope
        fill_request(self, scope)
        self.body = None
        self.body_length = 0
        if expects_body(self.headers, self.http_version):
            self.body_length = body_length(self.headers)
            self.body = AsgiFrontBody(expects_continue(self.headers))
        self.listener: Callable[[], None] | None = None
        self.finished = False  # the last message is queued
        self._lost = False
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
    def disconnected(self) -> bool:
        return self._lost

    @property
    def writable(self) -> bool:
        return not self.disconnected and self._queued < WRITE_BUFFER

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
            self.loop_send_error("500 Internal Server Error", INTERNAL_ERROR)
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
        self.loop_respond(status, PLAIN_TEXT, message, final=True)

    def loop_abort(self) -> None:
        if not self.finished:
            self.finished = True
            self._outbox.append(None)
            self._wake.set()

    def _queue(self, message: Message) -> None:
        if self.disconnected:
            return
        self._outbox.append(message)
        self._queued += len(message.get("body", b"")) + MESSAGE_COST
        self._wake.set()

    def lost(self) -> None:
        if not self._lost:
            self._lost = True
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
                    self._queued -= len(message.get("body", b"")) + MESSAGE_COST
                    if message["type"] == "http.response.body" and not message["more_body"]:
                        return
                    if before >= WRITE_BUFFER > self._queued and self.listener is not None:
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
                        body.feed_message(message.get("body", b""), bool(message.get("more_body")))
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
