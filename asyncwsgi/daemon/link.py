"""The front's connection to one daemon process, and the requests in flight on it.

Everything here runs on the event loop thread. A :class:`DaemonLink` (one per daemon
process, over a UNIX socket pair) turns each exchange it is given into wire frames and the
daemon's frames back into the response, through the exchange's loop side
(:class:`~asyncwsgi.core.exchange.LoopExchange`). Flow control both ways is credit: the
front sends request body bytes only as the daemon grants them, and grants response credit
back only as the client takes what was sent (docs/DESIGN.md, "Daemon mode").
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, cast

from asyncwsgi.core.body import RequestBody
from asyncwsgi.core.exchange import LoopExchange
from asyncwsgi.core.head import check_headers, check_status, seen_good
from asyncwsgi.daemon import wire
from asyncwsgi.errors import BadRequestBody, ProtocolError, RequestBodyTooLarge
from asyncwsgi.processes import Child

if TYPE_CHECKING:
    from asyncwsgi.daemon.runner import DaemonRunner

logger = logging.getLogger("asyncwsgi.error")

_BODY_CHUNK = 256 * 1024


def answer(exchange: LoopExchange, status: str) -> None:
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


class FrontStream:
    """One request in flight on one daemon, as the front sees it."""

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
        "room",
        "sent",
        "started",
        "waiting_continue",
    )

    def __init__(self, link: DaemonLink, stream_id: int, exchange: LoopExchange) -> None:
        self.link = link
        self.id = stream_id
        self.exchange = exchange
        self.body: RequestBody | None = None
        self.body_open = False  # body bytes may still go to the daemon
        self.credit = 0  # request body bytes the daemon will take now
        self.owed = 0  # response credit to give back once the client has taken it
        # Response body bytes the daemon may still send: the REQUEST's window plus every
        # WINDOW since, less what it sent. A daemon runs application code, so the front
        # holds it to this rather than buffer whatever it pushes.
        self.room = wire.DEFAULT_RESPONSE_WINDOW
        # The body bytes sent until the daemon shows it took the request (any frame of
        # the stream but a refusal): a refused request is retried with all of them. At
        # most the first window, as more needs the daemon's WINDOW. None: taken.
        self.sent: list[bytes] | None = []
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
            self.grant(owed)

    def pump(self) -> None:
        body = self.body
        assert body is not None
        link = self.link
        while self.credit > 0:
            data = body.take(min(self.credit, _BODY_CHUNK))
            if not data:
                break
            self.credit -= len(data)
            if self.sent is not None:
                self.sent.append(data)
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

    def spend(self, size: int) -> None:
        """The daemon sent ``size`` response body bytes: within its credit, or it breaks
        the protocol."""
        self.room = room = self.room - size
        if room < 0:
            raise ProtocolError(
                f"stream {self.id}: response body {-self.room} byte(s) over the credit granted"
            )

    def grant(self, size: int) -> None:
        if size:
            self.room += size
            self.link.send(wire.encode_window(self.id, size))

    def give_back(self, size: int) -> None:
        """The daemon spent ``size`` bytes of response credit; return it when the client
        can take more."""
        if self.exchange.writable:
            self.grant(size + self.owed)
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
        self.streams: dict[int, FrontStream] = {}
        self.threads = 0
        self.request_window = 0
        self.ready = False
        self.draining = False
        # Liveness: when the PING not answered yet was sent (0: none out), its value,
        # and whether the runner gave up waiting (no new requests until it answers).
        self.ping_sent = 0.0
        self.unresponsive = False
        self.idle_since = time.monotonic()  # when its last request ended (inactivity)
        self._ping_value = 0
        self._next_id = 0
        self._pending: list[bytes] = []  # frames sent before the transport was attached

    # -- sending -----------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            self._pending.append(data)
        elif not transport.is_closing():
            transport.write(data)

    def ping(self, now: float) -> float:
        """Send a PING unless one is out; how long the one out has gone unanswered."""
        if self.ping_sent:
            return now - self.ping_sent
        self._ping_value += 1
        self.ping_sent = now
        self.send(wire.encode_ping(self._ping_value))
        return 0.0

    def open_stream(self, exchange: LoopExchange) -> None:
        self._next_id = stream_id = (self._next_id % 0xFFFFFFFF) + 1
        stream = FrontStream(self, stream_id, exchange)
        body: RequestBody | None = exchange.body
        inline = b""
        body_end = True
        expect = False
        if body is not None:
            expect = body.expect_continue
            if not expect:
                inline = body.take(self.request_window)
                stream.sent = [inline]
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
            answer(exchange, "400 Bad Request")
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
            self._broken(exc)
            return
        handle = self._handle
        for frame in frames:
            try:
                handle(frame)
            except ProtocolError as exc:
                self._broken(exc)
                return
            except Exception:
                logger.exception("error handling a frame from daemon process %d", self.child.pid)
                stream = self.streams.get(getattr(frame, "stream_id", 0))
                if stream is not None:
                    # The client cannot get a sane answer now; free its place, close it.
                    stream.answered = True
                    if stream.exchange.head_sent:
                        stream.exchange.loop_abort()
                    else:
                        answer(stream.exchange, "502 Bad Gateway")
                    last = isinstance(frame, (wire.ResponseEnd, wire.ResponseAbort)) or (
                        isinstance(frame, wire.ResponseHead) and frame.final
                    )
                    if last:
                        self._end(stream)
                    elif not stream.cancelled:
                        stream.cancelled = True
                        self.send(wire.encode_cancel(stream.id))

    def _broken(self, exc: ProtocolError) -> None:
        logger.error(
            "daemon process %d broke the wire protocol (%s); stopping it", self.child.pid, exc
        )
        # No new request for it: connection_lost, which says so too, comes a tick later.
        self.ready = False
        self.child.group.kill(self.child)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail_all()

    # -- frames from the daemon --------------------------------------------------------

    def _handle(self, frame: wire.Frame) -> None:
        if isinstance(frame, (wire.ResponseHead, wire.ResponseBody, wire.ResponseEnd)):
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                return
            stream.sent = None  # the daemon took the request
            exchange = stream.exchange
            if isinstance(frame, wire.ResponseHead):
                if frame.body:
                    stream.spend(len(frame.body))
                if (
                    not seen_good(frame.status, frame.headers)
                    and not (stream.answered or stream.cancelled)
                    and not self._head_is_valid(frame)
                ):
                    stream.answered = True
                    answer(exchange, "502 Bad Gateway")
                    if not frame.final:
                        stream.cancelled = True
                        self.send(wire.encode_cancel(stream.id))
                quiet = stream.answered or stream.cancelled or exchange.disconnected
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
                else:  # nobody takes it; keep the daemon's thread from blocking on credit
                    stream.grant(len(frame.body))
            elif isinstance(frame, wire.ResponseBody):
                stream.spend(len(frame.data))
                if not (stream.answered or stream.cancelled or exchange.disconnected):
                    exchange.loop_write(frame.data)
                    stream.give_back(len(frame.data))
                else:  # nobody takes it; keep the daemon's thread from blocking on credit
                    stream.grant(len(frame.data))
            else:
                if not (stream.answered or stream.cancelled or exchange.disconnected):
                    exchange.loop_write(b"", final=True)
                self._end(stream)
        elif isinstance(frame, wire.Window):
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                return
            stream.sent = None  # the daemon took the request
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
            if frame.reason is wire.AbortReason.REFUSED and stream.sent is not None:
                # Never started: another daemon gets it, with the body bytes sent here.
                if stream.body is not None:
                    stream.body.unread(b"".join(stream.sent))
                self.runner.retry(exchange)
            elif exchange.head_sent:
                exchange.loop_abort()
            else:
                answer(exchange, "502 Bad Gateway")
        elif isinstance(frame, wire.Hello):
            child = self.child
            if (frame.generation, frame.group) != (child.generation, child.group.name):
                raise ProtocolError(
                    f"HELLO says generation {frame.generation} of group {frame.group!r}; "
                    f"the process was started as generation {child.generation} of group "
                    f"{child.group.name!r}"
                )
            self.threads = max(1, frame.threads)
            self.request_window = frame.request_window
            self.ready = True
            child.group.ready(child)
        elif isinstance(frame, wire.Pong):
            if frame.value == self._ping_value:
                self.ping_sent = 0.0
                if self.unresponsive:
                    self.unresponsive = False
                    logger.info("daemon process %d answers again", self.child.pid)
                    self.runner.slot_freed()
        elif isinstance(frame, wire.Retire):
            self.child.group.replace(self.child, f"it asked to be ({frame.reason.name})")

    def _head_is_valid(self, frame: wire.ResponseHead) -> bool:
        """The checks embedded mode applies to start_response, applied to a daemon's
        response head: a daemon runs application code and is trusted no more. (What
        :func:`seen_good` passes needs no more.)"""
        try:
            check_status(frame.status)
            check_headers(frame.headers)
        except (TypeError, ValueError) as exc:
            logger.error(
                "daemon process %d sent a response head that cannot be sent (%s); answering 502",
                self.child.pid,
                exc,
            )
            return False
        return True

    def _end(self, stream: FrontStream) -> None:
        del self.streams[stream.id]
        if not self.streams:
            self.idle_since = time.monotonic()
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
                answer(exchange, "502 Bad Gateway")
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
