"""Daemon mode's front: the event loop forwards each request to a daemon process.

Everything here runs on the event loop thread. The HTTP layer hands over an exchange
(through the loop-side methods it offers runners that answer on the loop); a
:class:`DaemonRunner` picks a READY daemon process with a free thread -- a fresh one
first -- and a :class:`DaemonLink` (one per daemon process, over a UNIX socket pair)
turns the exchange into wire frames and the daemon's frames back into the response.
Requests wait in the front, not in a daemon, when every thread is busy, so a request is
never stuck behind a daemon that is about to be replaced or that died.

The script is checked here, as in embedded mode, once per event-loop tick, but on a
helper thread and without holding the request back: a change starts a rolling restart
of the group, and requests keep going to the old processes until the fresh ones are
READY.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, cast

from asyncwsgi.config import ProcessSettings
from asyncwsgi.daemon import wire
from asyncwsgi.errors import (
    BadRequestBody,
    ProtocolError,
    RequestBodyTooLarge,
)
from asyncwsgi.processes import Child, ChildState, ProcessGroup
from asyncwsgi.scripts.loader import is_script_path
from asyncwsgi.scripts.reloader import StatKey, stat_key
from asyncwsgi.wsgi.types import RequestHead

logger = logging.getLogger("asyncwsgi.error")

_BODY_CHUNK = 256 * 1024
_PLAIN = [("Content-Type", "text/plain; charset=utf-8")]


# --------------------------------------------------------------------------------------
# What the front needs of the HTTP layer (structural: the front never imports it)
# --------------------------------------------------------------------------------------


class FrontBody(Protocol):
    listener: Callable[[], None] | None
    eof: bool

    @property
    def buffered(self) -> int: ...
    @property
    def error(self) -> BaseException | None: ...
    @property
    def continue_pending(self) -> bool: ...
    def take(self, limit: int) -> bytes: ...
    def send_continue(self) -> None: ...


class FrontExchange(RequestHead, Protocol):
    """An exchange answered on the loop (the HTTP server's, or WSGIApp's in daemon mode)."""

    listener: Callable[[], None] | None
    finished: bool

    @property
    def body(self) -> Any: ...
    @property
    def body_length(self) -> int: ...
    @property
    def head_sent(self) -> bool: ...
    @property
    def disconnected(self) -> bool: ...
    @property
    def writable(self) -> bool: ...
    @property
    def script_name(self) -> str | None:
        """Where this request is mounted (an ASGI mount's root_path, a site's
        WSGIScriptAlias); None: the runner's own mount point."""
        ...

    def loop_respond(
        self,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        final: bool,
        body_length: int = -1,
    ) -> None: ...
    def loop_write(self, data: bytes, *, final: bool = False) -> None: ...
    def loop_send_error(self, status: str, message: bytes) -> None: ...
    def loop_abort(self) -> None: ...


def _answer(exchange: FrontExchange, status: str) -> None:
    """A server-made answer, unless the client is gone or the response has begun."""
    if exchange.disconnected or exchange.finished:
        return
    try:
        exchange.loop_send_error(status, status.encode("latin-1")[4:] + b"\n")
    except Exception:
        logger.exception("could not answer %s", status)
        exchange.loop_abort()


# --------------------------------------------------------------------------------------
# One request in flight on one daemon
# --------------------------------------------------------------------------------------


class _Stream:
    __slots__ = (
        "answered",
        "body",
        "body_open",
        "cancelled",
        "credit",
        "exchange",
        "id",
        "link",
        "owed",
        "started",
        "waiting_continue",
    )

    def __init__(self, link: DaemonLink, stream_id: int, exchange: FrontExchange) -> None:
        self.link = link
        self.id = stream_id
        self.exchange = exchange
        self.body: FrontBody | None = None
        self.body_open = False  # body bytes may still go to the daemon
        self.credit = 0  # request body bytes the daemon will take now
        self.owed = 0  # response credit to give back once the client has taken it
        self.waiting_continue = False
        self.cancelled = False
        self.answered = False  # the front answered the client itself (504)
        self.started = time.monotonic()

    # Called by the HTTP layer on the loop: body arrived, client left, or writable again.
    def poke(self) -> None:
        link = self.link
        if link.streams.get(self.id) is not self:
            return
        exchange = self.exchange
        if exchange.disconnected:
            if not self.cancelled:
                self.cancelled = True
                self.body_open = False
                link.send(wire.encode_cancel(self.id))
            return
        if self.body_open:
            self.pump()
        if self.owed and exchange.writable:
            owed, self.owed = self.owed, 0
            link.send(wire.encode_window(self.id, owed))

    def pump(self) -> None:
        body = self.body
        assert body is not None
        link = self.link
        while self.credit > 0:
            data = body.take(min(self.credit, _BODY_CHUNK))
            if not data:
                break
            self.credit -= len(data)
            link.send(wire.encode_body(self.id, data))
        if body.buffered:
            return
        error = body.error
        if error is not None:
            self.body_open = False
            if isinstance(error, RequestBodyTooLarge):
                reason = wire.BodyErrorReason.TOO_LARGE
            elif isinstance(error, BadRequestBody):
                reason = wire.BodyErrorReason.MALFORMED
            else:
                reason = wire.BodyErrorReason.DISCONNECTED
            link.send(wire.encode_body_error(self.id, reason, str(error)))
        elif body.eof:
            self.body_open = False
            link.send(wire.encode_body_end(self.id))

    def give_back(self, size: int) -> None:
        """The daemon spent ``size`` bytes of response credit; return it when the client
        can take more."""
        if self.exchange.writable:
            if size:
                self.link.send(wire.encode_window(self.id, size + self.owed))
                self.owed = 0
        else:
            self.owed += size


# --------------------------------------------------------------------------------------
# The connection to one daemon process
# --------------------------------------------------------------------------------------


class DaemonLink(asyncio.Protocol):
    def __init__(self, runner: DaemonRunner, child: Child) -> None:
        self.runner = runner
        self.child = child
        self.transport: asyncio.Transport | None = None
        self.decoder = wire.FrameDecoder(sent_by=wire.Side.DAEMON)
        self.streams: dict[int, _Stream] = {}
        self.threads = 0
        self.request_window = 0
        self.ready = False
        self.draining = False
        self._next_id = 0
        self._pending: list[bytes] = []  # frames sent before the transport was attached

    # -- sending -----------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            self._pending.append(data)
        elif not transport.is_closing():
            transport.write(data)

    def open_stream(self, exchange: FrontExchange) -> None:
        self._next_id = stream_id = (self._next_id % 0xFFFFFFFF) + 1
        stream = _Stream(self, stream_id, exchange)
        body: FrontBody | None = exchange.body
        inline = b""
        body_end = True
        expect = False
        if body is not None:
            expect = body.continue_pending
            if not expect:
                inline = body.take(self.request_window)
            body_end = body.eof and not body.buffered and body.error is None
            stream.body = body
            stream.body_open = not body_end
            stream.credit = 0 if expect else self.request_window - len(inline)
            stream.waiting_continue = expect
        mounted = exchange.script_name
        try:
            frame = wire.encode_request(
                stream_id,
                method=exchange.method,
                path=exchange.path,
                query=exchange.query,
                http_version=exchange.http_version,
                headers=exchange.headers,
                client=exchange.client,
                server=exchange.server,
                scheme=exchange.scheme,
                # "" (the root) is a mount point too.
                script_name=self.runner.script_name if mounted is None else mounted,
                body_length=exchange.body_length if body is not None else 0,
                expect_continue=expect,
                body=inline,
                body_end=body_end,
                response_window=wire.DEFAULT_RESPONSE_WINDOW,
            )
        except ValueError as exc:
            logger.info("request cannot be forwarded to a daemon: %s", exc)
            _answer(exchange, "400 Bad Request")
            return
        self.streams[stream_id] = stream
        child = self.child
        child.requests += 1
        self.send(frame)
        exchange.listener = stream.poke
        if body is not None and not body_end:
            body.listener = stream.poke
            if stream.credit:
                stream.pump()
        if child.max_requests and child.requests >= child.max_requests:
            child.group.replace(child, f"maximum requests ({child.max_requests}) reached")

    @property
    def in_flight(self) -> int:
        return len(self.streams)

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = transport = cast(asyncio.Transport, transport)
        pending, self._pending = self._pending, []
        if pending:
            transport.write(b"".join(pending))

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            logger.error(
                "daemon process %d broke the wire protocol (%s); stopping it", self.child.pid, exc
            )
            self.child.group.kill(self.child)
            if self.transport is not None:
                self.transport.abort()
            return
        handle = self._handle
        for frame in frames:
            try:
                handle(frame)
            except Exception:
                logger.exception("error handling a frame from daemon process %d", self.child.pid)
                stream = self.streams.get(getattr(frame, "stream_id", 0))
                if stream is not None:
                    # The client cannot get a sane answer now; free its place, close it.
                    stream.answered = True
                    if stream.exchange.head_sent:
                        stream.exchange.loop_abort()
                    else:
                        _answer(stream.exchange, "502 Bad Gateway")
                    last = isinstance(frame, (wire.ResponseEnd, wire.ResponseAbort)) or (
                        isinstance(frame, wire.ResponseHead) and frame.final
                    )
                    if last:
                        self._end(stream)
                    else:
                        self.send(wire.encode_cancel(stream.id))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail_all()

    # -- frames from the daemon --------------------------------------------------------

    def _handle(self, frame: wire.Frame) -> None:
        if isinstance(frame, (wire.ResponseHead, wire.ResponseBody, wire.ResponseEnd)):
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                return
            exchange = stream.exchange
            quiet = stream.answered or stream.cancelled or exchange.disconnected
            if isinstance(frame, wire.ResponseHead):
                if not quiet:
                    if frame.server_error:
                        exchange.loop_send_error(frame.status, frame.body)
                    else:
                        exchange.loop_respond(
                            frame.status,
                            frame.headers,
                            frame.body,
                            final=frame.final,
                            body_length=frame.body_length,
                        )
                if frame.final:
                    self._end(stream)
                elif not quiet:
                    stream.give_back(len(frame.body))
                elif frame.body:
                    self.send(wire.encode_window(stream.id, len(frame.body)))
            elif isinstance(frame, wire.ResponseBody):
                if not quiet:
                    exchange.loop_write(frame.data)
                    stream.give_back(len(frame.data))
                else:  # nobody takes it; keep the daemon's thread from blocking on credit
                    self.send(wire.encode_window(stream.id, len(frame.data)))
            else:
                if not quiet:
                    exchange.loop_write(b"", final=True)
                self._end(stream)
        elif isinstance(frame, wire.Window):
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                return
            stream.credit += frame.increment
            if stream.waiting_continue:
                stream.waiting_continue = False
                body = stream.body
                if body is not None:
                    body.send_continue()
            if stream.body_open:
                stream.pump()
        elif isinstance(frame, wire.ResponseAbort):
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                return
            self._end(stream)
            exchange = stream.exchange
            if stream.answered or stream.cancelled:
                return
            if frame.reason is wire.AbortReason.REFUSED and not exchange.head_sent:
                self.runner.retry(exchange)
            elif exchange.head_sent:
                exchange.loop_abort()
            else:
                _answer(exchange, "502 Bad Gateway")
        elif isinstance(frame, wire.Hello):
            self.threads = max(1, frame.threads)
            self.request_window = frame.request_window
            self.ready = True
            self.child.group.ready(self.child)
        elif isinstance(frame, wire.Retire):
            self.child.group.replace(self.child, f"it asked to be ({frame.reason.name})")
        elif isinstance(frame, wire.Ping):
            self.send(wire.encode_pong(frame.value))

    def _end(self, stream: _Stream) -> None:
        del self.streams[stream.id]
        stream.exchange.listener = None
        if stream.body is not None:
            stream.body.listener = None
        self.runner.slot_freed()

    # -- ending ------------------------------------------------------------------------

    def drain(self) -> None:
        if not self.draining:
            self.draining = True
            self.send(wire.encode_drain())

    def fail_all(self) -> None:
        """The daemon is gone: what it was running failed, with 502 where nothing was sent."""
        self.ready = False
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            exchange = stream.exchange
            exchange.listener = None
            if stream.body is not None:
                stream.body.listener = None
            if stream.answered or stream.cancelled or exchange.disconnected:
                continue
            if exchange.head_sent:
                exchange.loop_abort()
            else:
                _answer(exchange, "502 Bad Gateway")
        if streams:
            logger.error(
                "daemon process %d went away with %d request(s) in flight",
                self.child.pid,
                len(streams),
            )
            self.runner.slot_freed()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


# --------------------------------------------------------------------------------------
# The group: spawning daemons (the pool manager's launcher) and routing requests
# --------------------------------------------------------------------------------------


class DaemonRunner:
    """The application runner of daemon mode, and the launcher of its process group."""

    def __init__(
        self,
        *,
        app: str,
        group: str,
        settings: ProcessSettings,
        callable_name: str = "application",
        script_reloading: bool = True,
        script_name: str = "",
        forwarded_allow_ips: str = "127.0.0.1,::1",
        log_level: str = "info",
        title: str = "",
    ) -> None:
        self.app = os.path.abspath(app) if is_script_path(app) else app
        self.title = title
        self.script = self.app if is_script_path(app) else ""
        self.threads = settings.threads
        self.callable_name = callable_name
        self.script_reloading = script_reloading and bool(self.script)
        self.script_name = script_name.rstrip("/")
        self.forwarded_allow_ips = forwarded_allow_ips
        self.log_level = log_level
        self.request_timeout = settings.request_timeout
        self.group = ProcessGroup(
            group,
            self,
            settings,
            kind="daemon",
            target=app,
            on_change=self.slot_freed,
        )
        self.multiprocess = settings.processes > 1
        self.queue: deque[FrontExchange] = deque()
        self.stat_calls = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stat_key: StatKey | None = None
        self._stat_busy = False
        self._tick_checked = False
        self._stat_thread: ThreadPoolExecutor | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failure_logged = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the group and wait until every process is READY (``ScriptLoadError`` if
        the application does not load)."""
        self._loop = asyncio.get_running_loop()
        if self.script:
            self._stat_key = stat_key(self.script)
        await self.group.start()
        if self.request_timeout:
            self._timer = self._loop.call_later(self._timeout_interval, self._check_timeouts)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for exchange in self.queue:
            _answer(exchange, "503 Service Unavailable")
        self.queue.clear()
        await self.group.close()
        if self._stat_thread is not None:
            self._stat_thread.shutdown(wait=False)

    def restart(self, reason: str) -> None:
        self.group.restart(reason)

    # -- Launcher (called by the pool manager) -----------------------------------------

    def spawn(self, child: Child) -> subprocess.Popen[bytes]:
        from asyncwsgi.daemon.process import command

        front, back = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            argv = command(
                fd=back.fileno(),
                group=self.group.name,
                generation=child.generation,
                threads=self.threads,
                app=self.app,
                callable=self.callable_name,
                forwarded_allow_ips=self.forwarded_allow_ips,
                log_level=self.log_level,
                multiprocess=self.multiprocess,
                title=self.title,
            )
            process = subprocess.Popen(argv, pass_fds=[back.fileno()], stdin=subprocess.DEVNULL)
        except BaseException:
            front.close()
            raise
        finally:
            back.close()
        link = DaemonLink(self, child)
        child.data = link
        loop = self._loop
        assert loop is not None
        front.setblocking(False)
        task = loop.create_task(loop.connect_accepted_socket(lambda: link, front))
        task.add_done_callback(_report_connect_failure)
        return process

    def retire(self, child: Child) -> None:
        link: DaemonLink | None = child.data
        if link is not None:
            link.drain()

    def exited(self, child: Child) -> None:
        link: DaemonLink | None = child.data
        if link is not None:
            link.fail_all()
            link.close()

    # -- ApplicationRunner -------------------------------------------------------------

    def submit(self, exchange: FrontExchange) -> None:
        if self.script_reloading:
            self.check_script()
        if self.group.failed:
            self._refuse(exchange)
            return
        link = self._pick()
        if link is None:
            self.queue.append(exchange)
        else:
            link.open_stream(exchange)

    def retry(self, exchange: FrontExchange) -> None:
        """A daemon refused a request it never started: give it to another."""
        self.queue.appendleft(exchange)
        self.slot_freed()

    def slot_freed(self) -> None:
        queue = self.queue
        if self.group.failed:
            while queue:
                self._refuse(queue.popleft())
            return
        while queue:
            exchange = queue[0]
            if exchange.disconnected:
                queue.popleft()
                continue
            link = self._pick()
            if link is None:
                return
            queue.popleft()
            link.open_stream(exchange)

    def _pick(self) -> DaemonLink | None:
        best: DaemonLink | None = None
        best_key = (True, 0)
        for child in self.group.children:
            if child.state is not ChildState.READY:
                continue
            link: DaemonLink | None = child.data
            if link is None or not link.ready or link.draining:
                continue
            load = len(link.streams)
            if load >= link.threads:
                continue
            # Fresh processes first; among them the least busy.
            key = (child.stale, load)
            if best is None or key < best_key:
                best, best_key = link, key
        return best

    def _refuse(self, exchange: FrontExchange) -> None:
        if not self._failure_logged:
            self._failure_logged = True
            logger.error(
                "daemon group %r has no application to run (see the error above); "
                "answering 503 until the script changes",
                self.group.name,
            )
        _answer(exchange, "503 Service Unavailable")

    # -- script changes ----------------------------------------------------------------

    def check_script(self) -> None:
        """Restart the group if the script changed: one stat per loop tick, on a helper
        thread; requests do not wait for it. (``submit`` calls it when
        ``script_reloading`` is on; a site's mounts decide for themselves.)"""
        if self._tick_checked or self._stat_busy or not self.script:
            return
        loop = self._loop
        if loop is None:
            return
        if self._stat_thread is None:
            self._stat_thread = ThreadPoolExecutor(1, thread_name_prefix="asyncwsgi-stat")
        self._tick_checked = True
        self._stat_busy = True
        loop.call_soon(self._end_tick)
        self.stat_calls += 1
        future = loop.run_in_executor(self._stat_thread, stat_key, self.script)
        future.add_done_callback(self._stat_done)

    def _end_tick(self) -> None:
        self._tick_checked = False

    def _stat_done(self, future: asyncio.Future[StatKey | None]) -> None:
        self._stat_busy = False
        try:
            key = future.result()
        except Exception:
            logger.exception("could not stat %s", self.script)
            return
        if key == self._stat_key:
            return
        self._stat_key = key
        if key is None:
            logger.error("WSGI script %r is gone; the daemon group keeps running", self.script)
            return
        self._failure_logged = False
        self.group.restart(f"WSGI script {self.script!r} changed")
        self.slot_freed()

    # -- request timeouts --------------------------------------------------------------

    @property
    def _timeout_interval(self) -> float:
        return max(0.05, min(1.0, self.request_timeout / 4))

    def _check_timeouts(self) -> None:
        loop = self._loop
        assert loop is not None
        self._timer = loop.call_later(self._timeout_interval, self._check_timeouts)
        limit = time.monotonic() - self.request_timeout
        for child in list(self.group.children):
            link: DaemonLink | None = child.data
            if link is None:
                continue
            late = [s for s in link.streams.values() if s.started <= limit and not s.answered]
            for stream in late:
                stream.answered = True
                exchange = stream.exchange
                logger.error(
                    "request %s %s ran longer than %g s in daemon process %d; answering 504",
                    exchange.method,
                    exchange.path.decode("latin-1"),
                    self.request_timeout,
                    child.pid,
                )
                if exchange.head_sent:
                    exchange.loop_abort()
                else:
                    _answer(exchange, "504 Gateway Timeout")
                if not stream.cancelled:
                    stream.cancelled = True
                    stream.body_open = False
                    link.send(wire.encode_cancel(stream.id))
            if late:
                child.group.replace(child, "a request timed out")


def _report_connect_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("could not attach a daemon connection: %s", task.exception())
