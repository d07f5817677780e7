"""The daemon front in-process: ``DaemonLink`` and ``DaemonRunner`` with no daemon process.

A real :class:`DaemonRunner` (and so a real ``ProcessGroup``) is built, but its processes
are made by hand: a ``Child`` with a made-up pid and no ``Popen``, whose ``DaemonLink`` is
attached to a :class:`FakeTransport`. The test plays each daemon: it feeds the frames a
daemon would send (``wire.encode_*``) to ``link.data_received`` and decodes what the front
wrote with a ``FrameDecoder(sent_by=Side.FRONT)``, which also checks that every frame the
front sends is valid. Requests are :class:`FakeExchange` objects, the loop side
(``LoopExchange``) recording every answer, with ``writable`` and ``disconnected`` set by
the test; request bodies are real ``RequestBody`` objects the test feeds.

No process is ever started: the group's ``_spawn`` is a stub that adds a STARTING child
(recorded, so a replacement the group asks for is visible) and ``kill`` is recorded. The
group's own loop is left unset, so it arms no timers. The script-change tests use a real
file in ``tmp_path`` and the runner's real helper thread; they poll with a deadline, and
every test checks that it leaves no thread behind.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncwsgi.config import ProcessSettings
from asyncwsgi.core.body import RequestBody
from asyncwsgi.core.exchange import LoopExchange
from asyncwsgi.daemon import wire
from asyncwsgi.daemon.link import DaemonLink
from asyncwsgi.daemon.runner import KILL_AFTER, UNRESPONSIVE_AFTER, DaemonRunner
from asyncwsgi.errors import BadRequestBody, ClientDisconnected, RequestBodyTooLarge
from asyncwsgi.processes import Child, ChildState
from asyncwsgi.scripts.watch import stat_key

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 5.0  # for anything that should happen at once
GROUP = "g"
WINDOW = 4  # the request window the fake daemons grant: small, so bodies go past it
THREADS = 2  # threads each fake daemon says it has
# A frame header of type 0xff: no such frame type.
GARBAGE = b"\x00\x00\x00\x00\xff\x00\x00\x00\x00\x01"
BAD_GATEWAY = ("error", "502 Bad Gateway")


def queued(front: Front) -> list[Any]:
    """The exchanges waiting in the runner's queue, oldest first."""
    return [exchange for exchange, _ in front.runner.queue]


async def until(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:
    """Wait until ``predicate()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        await asyncio.sleep(0.002)


# --------------------------------------------------------------------------------------
# Fakes: the client's side (exchange, body) and the daemon's side (transport, frames)
# --------------------------------------------------------------------------------------


class FakeBody(RequestBody):
    """A request body the test feeds; counts the "100 Continue" it is asked to send."""

    def __init__(self, *chunks: bytes, eof: bool = False, expect_continue: bool = False) -> None:
        super().__init__(1 << 20, expect_continue=expect_continue)
        self.continues = 0
        for chunk in chunks:
            self.feed(chunk)
        if eof:
            self.feed_eof()

    def _continue(self) -> None:
        self.continues += 1


class FakeExchange(LoopExchange):
    """The loop side of one request: records what the front answers, in ``events``."""

    def __init__(
        self,
        path: bytes = b"/hello",
        *,
        method: str = "GET",
        query: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        script_name: str | None = None,
        body: RequestBody | None = None,
        body_length: int = 0,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.http_version = "1.1"
        self.headers = [(b"Host", b"example.org")] if headers is None else headers
        self.client = ("10.0.0.1", 50000)
        self.server = ("127.0.0.1", 8000)
        self.scheme = "http"
        self.script_name = script_name
        self.body = body
        self.body_length = body_length
        self.listener = None
        self.finished = False
        self.events: list[tuple[Any, ...]] = []
        self.is_writable = True  # the client takes more now
        self.gone = False  # the client went away
        self.fail_respond = False  # loop_respond raises, as on a broken connection
        self._head = False

    @property
    def head_sent(self) -> bool:
        return self._head

    @property
    def disconnected(self) -> bool:
        return self.gone

    @property
    def writable(self) -> bool:
        return self.is_writable and not self.gone

    def loop_respond(
        self,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        final: bool,
        body_length: int = -1,
    ) -> None:
        if self.fail_respond:
            raise RuntimeError("the connection broke")
        assert not self._head, "two response heads"
        self._head = True
        self.finished = final
        self.events.append(("respond", status, headers, body, final, body_length))

    def loop_write(self, data: bytes, *, final: bool = False) -> None:
        assert self._head and not self.finished, "a write outside a response"
        self.finished = final
        self.events.append(("write", data, final))

    def loop_send_error(self, status: str, message: bytes) -> None:
        assert not self._head and not self.finished, "an error answer after a response began"
        self._head = self.finished = True
        self.events.append(("error", status))

    def loop_abort(self) -> None:
        self.finished = True
        self.events.append(("abort",))


class FakeTransport:
    """What the front writes to one daemon. ``abort()`` behaves as asyncio's: closing at
    once, ``connection_lost`` on a later loop callback."""

    def __init__(self, protocol: DaemonLink) -> None:
        self.protocol = protocol
        self.buffer = bytearray()
        self.aborted = False
        self.lost = False  # connection_lost has been called

    def write(self, data: bytes) -> None:
        assert not self.aborted, "write after abort"
        self.buffer += data

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            asyncio.get_running_loop().call_soon(self._lose)

    def _lose(self) -> None:
        self.lost = True
        self.protocol.connection_lost(None)


class FakeDaemon:
    """One daemon process as the front sees it, played by the test."""

    def __init__(self, runner: DaemonRunner, child: Child) -> None:
        self.child = child
        self.link = DaemonLink(runner, child)
        child.data = self.link
        self.transport = FakeTransport(self.link)
        self.link.connection_made(self.transport)  # type: ignore[arg-type]
        self.decoder = wire.FrameDecoder(sent_by=wire.Side.FRONT)

    def hello(
        self,
        *,
        threads: int = THREADS,
        request_window: int = WINDOW,
        generation: int | None = None,
        group: str = GROUP,
    ) -> None:
        self.feed(
            wire.encode_hello(
                pid=self.child.pid,
                generation=self.child.generation if generation is None else generation,
                threads=threads,
                request_window=request_window,
                group=group,
            )
        )

    def feed(self, data: bytes) -> None:
        self.link.data_received(data)

    def sent(self) -> list[wire.Frame]:
        """The frames the front sent this daemon since the last call."""
        data = bytes(self.transport.buffer)
        self.transport.buffer.clear()
        return self.decoder.feed(data)

    def requests(self) -> list[wire.Request]:
        frames = self.sent()
        assert all(isinstance(f, wire.Request) for f in frames), frames
        return frames  # type: ignore[return-value]

    def respond(self, stream_id: int, body: bytes = b"ok", *, final: bool = True) -> None:
        self.feed(wire.encode_response_head(stream_id, "200 OK", [], body, final=final))


class Front:
    """A runner whose group never starts a process, and the fake daemons of its group."""

    def __init__(self, runner: DaemonRunner) -> None:
        self.runner = runner
        self.group = runner.group
        self.spawned: list[Child] = []  # what the group asked to start
        self.killed: list[Child] = []
        self._pids = itertools.count(1001)

    def spawn(self) -> None:
        # Stands in for ProcessGroup._spawn: the child the group wants, with no process.
        child = Child(self.group, self.group.generation)
        child.pid = next(self._pids)
        self.group.children.append(child)
        self.spawned.append(child)

    def add(self, generation: int | None = None) -> FakeDaemon:
        """A STARTING process of the group (nothing said yet)."""
        child = Child(self.group, self.group.generation if generation is None else generation)
        child.pid = next(self._pids)
        self.group.children.append(child)
        return FakeDaemon(self.runner, child)

    def start(self, count: int, **hello: Any) -> list[FakeDaemon]:
        """``count`` READY daemons. All are in the group before any says HELLO, so the
        group, at strength, asks for no other process."""
        daemons = [self.add() for _ in range(count)]
        for daemon in daemons:
            daemon.hello(**hello)
        return daemons

    def submit(self, *paths: bytes) -> list[FakeExchange]:
        exchanges = [FakeExchange(path) for path in paths]
        for exchange in exchanges:
            self.runner.submit(exchange)
        return exchanges


def make_runner(
    *,
    processes: int = 1,
    app: str = "pkg.mod:app",
    script_reloading: bool = False,
    script_name: str = "",
    request_timeout: float = 0.0,
) -> DaemonRunner:
    settings = ProcessSettings(
        processes=processes,
        threads=THREADS,
        request_timeout=request_timeout,
        graceful_timeout=1.0,
        shutdown_timeout=1.0,
    )
    return DaemonRunner(
        app=app,
        group=GROUP,
        settings=settings,
        callable_name="application",
        script_reloading=script_reloading,
        forwarded_allow_ips="",
        log_level="info",
        script_name=script_name,
    )


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + TIMEOUT
    while left := [t for t in threading.enumerate() if t not in before]:
        if time.monotonic() > deadline:
            pytest.fail(f"threads left behind: {left}")
        time.sleep(0.005)


@pytest.fixture
def make_front(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Front]]:
    runners: list[DaemonRunner] = []

    def make(**options: Any) -> Front:
        runner = make_runner(**options)
        # What start() sets, short of starting the group (timeouts and stats need it).
        runner._loop = asyncio.get_running_loop()
        front = Front(runner)
        monkeypatch.setattr(runner.group, "_spawn", front.spawn)
        monkeypatch.setattr(runner.group, "kill", front.killed.append)
        runners.append(runner)
        return front

    yield make
    for runner in runners:
        for timer in (runner._timer, runner._liveness):
            if timer is not None:
                timer.cancel()
        if runner._stat_thread is not None:
            runner._stat_thread.shutdown(wait=True)


# --------------------------------------------------------------------------------------
# HELLO
# --------------------------------------------------------------------------------------


async def test_hello_makes_the_link_ready(make_front: Callable[..., Front]) -> None:
    front = make_front()
    daemon = front.add()
    [exchange] = front.submit(b"/early")
    # Not READY yet: the request waits in the front, not on the daemon's socket.
    assert queued(front) == [exchange]
    assert daemon.sent() == []

    daemon.hello(threads=3, request_window=1234)

    assert daemon.link.ready
    assert (daemon.link.threads, daemon.link.request_window) == (3, 1234)
    assert daemon.child.state is ChildState.READY
    [request] = daemon.requests()  # the group's on_change handed the queue over
    assert request.path == b"/early"
    assert not front.runner.queue
    assert front.spawned == [] and front.killed == []


@pytest.mark.parametrize(
    ("generation_offset", "group"),
    [(1, GROUP), (-1, GROUP), (0, "other")],
    ids=["newer-generation", "older-generation", "other-group"],
)
async def test_hello_from_another_process_is_a_protocol_error(
    make_front: Callable[..., Front], generation_offset: int, group: str
) -> None:
    front = make_front()
    front.group.generation = 2  # so that an older generation is a valid number
    daemon = front.add()
    daemon.hello(generation=daemon.child.generation + generation_offset, group=group)

    assert front.killed == [daemon.child]
    assert daemon.transport.aborted
    assert not daemon.link.ready
    assert daemon.child.state is ChildState.STARTING
    await until(lambda: daemon.transport.lost)


# --------------------------------------------------------------------------------------
# Requests and responses
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runner_mount", "exchange_mount", "expected"),
    [("/mount/", None, "/mount"), ("/mount", "/site", "/site"), ("/mount", "", "")],
    ids=["runner-mount", "exchange-mount", "exchange-root"],
)
async def test_request_without_body_is_one_frame(
    make_front: Callable[..., Front],
    runner_mount: str,
    exchange_mount: str | None,
    expected: str,
) -> None:
    front = make_front(script_name=runner_mount)
    [daemon] = front.start(1)
    headers = [(b"Host", b"example.org"), (b"X-Thing", b"a b")]
    exchange = FakeExchange(
        b"/a%20b", method="DELETE", query=b"x=1&y", headers=headers, script_name=exchange_mount
    )
    front.runner.submit(exchange)

    assert daemon.sent() == [
        wire.Request(
            stream_id=1,
            method="DELETE",
            path=b"/a%20b",
            query=b"x=1&y",
            http_version="1.1",
            headers=headers,
            client=("10.0.0.1", 50000),
            server=("127.0.0.1", 8000),
            scheme="http",
            script_name=expected,
            body_length=0,
            expect_continue=False,
            body=b"",
            body_end=True,
            response_window=wire.DEFAULT_RESPONSE_WINDOW,
        )
    ]
    assert daemon.child.requests == 1
    assert exchange.listener is not None  # the stream hears of a disconnect


async def test_final_response_head_answers_and_frees_the_slot(
    make_front: Callable[..., Front],
) -> None:
    front = make_front()
    [daemon] = front.start(1)
    first, _, third = front.submit(b"/1", b"/2", b"/3")
    assert [r.path for r in daemon.requests()] == [b"/1", b"/2"]
    assert queued(front) == [third]

    headers = [("Content-Type", "text/plain")]
    daemon.feed(wire.encode_response_head(1, "200 OK", headers, b"hi", final=True))

    assert first.events == [("respond", "200 OK", headers, b"hi", True, -1)]
    assert first.listener is None
    assert 1 not in daemon.link.streams
    [request] = daemon.requests()  # the freed thread takes the waiting request at once
    assert (request.stream_id, request.path) == (3, b"/3")
    assert not front.runner.queue


async def test_requests_beyond_the_threads_wait_in_order(
    make_front: Callable[..., Front],
) -> None:
    front = make_front()
    [daemon] = front.start(1)
    _, _, gone, fourth, fifth = front.submit(b"/1", b"/2", b"/3", b"/4", b"/5")
    daemon.sent()
    assert len(front.runner.queue) == 3
    gone.gone = True  # a client that left while waiting is never sent

    daemon.respond(2)
    assert [r.path for r in daemon.requests()] == [b"/4"]
    assert queued(front) == [fifth]
    assert gone.events == []

    daemon.respond(1)
    assert [r.path for r in daemon.requests()] == [b"/5"]
    assert not front.runner.queue
    assert fourth.events == [] and len(daemon.link.streams) == THREADS


async def test_fresh_processes_are_picked_first(make_front: Callable[..., Front]) -> None:
    front = make_front(processes=2)
    front.group.generation = 2  # a rolling restart is under way
    old = front.add(generation=1)
    fresh = front.add(generation=2)
    old.hello()
    fresh.hello()

    front.submit(b"/1", b"/2", b"/3", b"/4")
    assert [r.path for r in fresh.requests()] == [b"/1", b"/2"]
    assert [r.path for r in old.requests()] == [b"/3", b"/4"]

    old.respond(1)
    fresh.respond(1)
    # Both have a free thread again: the fresh one gets the next request.
    front.submit(b"/5")
    assert [r.path for r in fresh.requests()] == [b"/5"]
    assert old.sent() == []


async def test_the_least_busy_process_is_picked(make_front: Callable[..., Front]) -> None:
    front = make_front(processes=2)
    a, b = front.start(2, threads=3)
    front.submit(b"/1", b"/2", b"/3")  # a tie goes to the first in the group
    assert [r.path for r in a.requests()] == [b"/1", b"/3"]
    assert [r.path for r in b.requests()] == [b"/2"]
    front.submit(b"/4")  # a has two, b one
    assert [r.path for r in b.requests()] == [b"/4"]

    a.respond(1)
    a.respond(2)
    front.submit(b"/5")  # a has none, b two
    assert [r.path for r in a.requests()] == [b"/5"]
    assert b.sent() == []


async def test_a_failed_group_answers_503(make_front: Callable[..., Front]) -> None:
    front = make_front()
    front.start(1)
    front.group.failed = True
    [exchange] = front.submit(b"/1")
    assert exchange.events == [("error", "503 Service Unavailable")]


# --------------------------------------------------------------------------------------
# Request bodies: credit, end, errors, 100-continue
# --------------------------------------------------------------------------------------


def body_exchange(body: FakeBody, length: int) -> FakeExchange:
    return FakeExchange(b"/upload", method="POST", body=body, body_length=length)


async def test_a_small_body_goes_inline(make_front: Callable[..., Front]) -> None:
    front = make_front()
    [daemon] = front.start(1)
    body = FakeBody(b"ab", eof=True)
    front.runner.submit(body_exchange(body, 2))

    [request] = daemon.requests()
    assert (request.body_length, request.body, request.body_end) == (2, b"ab", True)
    assert body.listener is None  # nothing more to send


async def test_a_body_is_sent_only_within_credit(make_front: Callable[..., Front]) -> None:
    front = make_front()
    [daemon] = front.start(1, request_window=WINDOW)
    body = FakeBody(b"abcdefgh")
    front.runner.submit(body_exchange(body, 10))

    [request] = daemon.requests()
    # The request window's worth rides in the REQUEST; nothing more until a WINDOW.
    assert (request.body, request.body_end, request.body_length) == (b"abcd", False, 10)

    daemon.feed(wire.encode_window(1, 3))
    assert daemon.sent() == [wire.Body(1, b"efg")]
    daemon.feed(wire.encode_window(1, 10))
    assert daemon.sent() == [wire.Body(1, b"h")]
    body.feed(b"ij")  # credit left: sent as it arrives
    assert daemon.sent() == [wire.Body(1, b"ij")]
    body.feed_eof()
    assert daemon.sent() == [wire.BodyEnd(1)]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RequestBodyTooLarge("over 10 bytes"), wire.BodyErrorReason.TOO_LARGE),
        (BadRequestBody("bad chunk size"), wire.BodyErrorReason.MALFORMED),
        (ClientDisconnected("client went away"), wire.BodyErrorReason.DISCONNECTED),
    ],
    ids=["too-large", "malformed", "disconnected"],
)
async def test_a_body_error_is_sent_with_its_reason(
    make_front: Callable[..., Front], error: Exception, reason: wire.BodyErrorReason
) -> None:
    front = make_front()
    [daemon] = front.start(1)
    body = FakeBody(b"ab")
    front.runner.submit(body_exchange(body, -1))
    assert daemon.requests()[0].body == b"ab"

    body.fail(error)
    assert daemon.sent() == [wire.BodyError(1, reason, str(error))]
    body.feed(b"late")  # nothing follows the error
    assert daemon.sent() == []


async def test_expect_continue_waits_for_the_first_window(
    make_front: Callable[..., Front],
) -> None:
    front = make_front()
    [daemon] = front.start(1)
    body = FakeBody(expect_continue=True)
    front.runner.submit(body_exchange(body, 5))

    [request] = daemon.requests()
    assert request.expect_continue
    assert (request.body, request.body_end) == (b"", False)
    body.feed(b"hel")  # a client that did not wait: still no credit for it
    assert daemon.sent() == []
    assert body.expect_continue and body.continues == 0

    daemon.feed(wire.encode_window(1, 5))  # the application reads: now "100 Continue"
    assert not body.expect_continue and body.continues == 1
    assert daemon.sent() == [wire.Body(1, b"hel")]
    body.feed(b"lo")
    body.feed_eof()
    assert daemon.sent() == [wire.Body(1, b"lo"), wire.BodyEnd(1)]
    daemon.feed(wire.encode_window(1, 5))  # later WINDOWs send no second "100 Continue"
    assert body.continues == 1


# --------------------------------------------------------------------------------------
# Responses: credit, disconnects, aborts
# --------------------------------------------------------------------------------------


async def test_response_credit_is_given_back_as_the_client_takes_it(
    make_front: Callable[..., Front],
) -> None:
    front = make_front()
    [daemon] = front.start(1)
    [exchange] = front.submit(b"/stream")
    daemon.sent()

    daemon.respond(1, b"abc", final=False)
    assert exchange.events == [("respond", "200 OK", [], b"abc", False, -1)]
    assert daemon.sent() == [wire.Window(1, 3)]
    daemon.feed(wire.encode_response_body(1, b"defg"))
    assert daemon.sent() == [wire.Window(1, 4)]

    # A slow client: the bytes go to the exchange, but the credit is owed.
    exchange.is_writable = False
    daemon.feed(wire.encode_response_body(1, b"hi"))
    daemon.feed(wire.encode_response_body(1, b"jkl"))
    assert daemon.sent() == []
    assert exchange.listener is not None
    exchange.listener()  # woken while still not writable: still owed
    assert daemon.sent() == []

    exchange.is_writable = True
    exchange.listener()
    assert daemon.sent() == [wire.Window(1, 5)]
    exchange.listener()
    assert daemon.sent() == []

    daemon.feed(wire.encode_response_end(1))
    assert [e[1] for e in exchange.events[1:]] == [b"defg", b"hi", b"jkl", b""]
    assert exchange.events[-1] == ("write", b"", True)
    assert daemon.link.streams == {}


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("200 OK", [("X-Split", "a\r\nSet-Cookie: evil=1")]),
        ("200 OK", [("X Test", "1")]),
        ("200 OK", [("", "1")]),
        ("000 Zero", []),
        ("999 Nine", []),
        ("200 OK\r\nX-Injected: 1", []),
    ],
    ids=["crlf-in-value", "space-in-name", "empty-name", "status-000", "status-999", "crlf"],
)
@pytest.mark.parametrize("final", [True, False], ids=["final", "streamed"])
async def test_a_response_head_that_cannot_be_sent_answers_502(
    make_front: Callable[..., Front],
    caplog: pytest.LogCaptureFixture,
    status: str,
    headers: list[tuple[str, str]],
    final: bool,
) -> None:
    # A daemon runs application code: its response head gets the checks embedded mode
    # gives start_response, and nothing of it reaches the client's connection.
    front = make_front()
    [daemon] = front.start(1)
    [exchange] = front.submit(b"/split")
    daemon.sent()

    daemon.feed(wire.encode_response_head(1, status, headers, b"body", final=final))

    assert exchange.events == [BAD_GATEWAY]
    assert "response head that cannot be sent" in caplog.text
    if final:  # the stream is over: no credit to return
        assert daemon.sent() == []
        assert daemon.link.streams == {}
    else:  # the daemon is told to stop; what it sends meanwhile goes nowhere
        assert daemon.sent() == [wire.Cancel(1), wire.Window(1, 4)]
        daemon.feed(wire.encode_response_body(1, b"more"))
        daemon.feed(wire.encode_response_end(1))
        assert exchange.events == [BAD_GATEWAY]
        assert daemon.link.streams == {}
    assert front.killed == []  # the daemon is not at fault beyond this response


async def test_a_daemon_past_its_response_credit_is_killed(
    make_front: Callable[..., Front],
) -> None:
    # The front holds what a daemon pushes to the credit it granted: a daemon that sends
    # more is broken (or hostile), and the front does not buffer it.
    front = make_front()
    [daemon] = front.start(1)
    [exchange] = front.submit(b"/flood")
    daemon.sent()
    exchange.is_writable = False  # a client that reads nothing: no credit comes back

    daemon.respond(1, b"h", final=False)
    chunk = b"x" * 65536
    sent = 1
    while sent + len(chunk) <= wire.DEFAULT_RESPONSE_WINDOW:
        daemon.feed(wire.encode_response_body(1, chunk))
        sent += len(chunk)
    assert front.killed == []
    remaining = wire.DEFAULT_RESPONSE_WINDOW - sent
    daemon.feed(wire.encode_response_body(1, b"y" * remaining))  # exactly the window
    assert front.killed == []
    assert daemon.sent() == []  # all of it owed, nothing granted

    daemon.feed(wire.encode_response_body(1, b"z"))  # one byte over

    assert front.killed == [daemon.child]
    assert daemon.transport.aborted
    written = sum(len(e[1]) for e in exchange.events if e[0] == "write")
    assert written + 1 == wire.DEFAULT_RESPONSE_WINDOW  # the extra byte went nowhere
    await until(lambda: daemon.transport.lost)
    assert exchange.events[-1] == ("abort",)


async def test_credit_granted_is_credit_the_daemon_may_spend(
    make_front: Callable[..., Front],
) -> None:
    front = make_front()
    [daemon] = front.start(1)
    [exchange] = front.submit(b"/stream")
    daemon.sent()
    window = wire.DEFAULT_RESPONSE_WINDOW

    daemon.respond(1, b"a" * window, final=False)  # the whole window at once
    assert daemon.sent() == [wire.Window(1, window)]  # the client took it: all back
    daemon.feed(wire.encode_response_body(1, b"b" * window))
    assert daemon.sent() == [wire.Window(1, window)]
    daemon.feed(wire.encode_response_end(1))
    assert front.killed == []
    assert exchange.events[-1] == ("write", b"", True)


async def test_a_client_disconnect_sends_cancel(make_front: Callable[..., Front]) -> None:
    front = make_front()
    [daemon] = front.start(1)
    [exchange] = front.submit(b"/slow")
    daemon.sent()

    exchange.gone = True
    assert exchange.listener is not None
    exchange.listener()
    assert daemon.sent() == [wire.Cancel(1)]
    exchange.listener()
    assert daemon.sent() == []  # one CANCEL per stream

    # What the daemon sent meanwhile goes nowhere, and its credit comes straight back
    # so the daemon's thread is not left blocked.
    daemon.respond(1, b"xx", final=False)
    assert daemon.sent() == [wire.Window(1, 2)]
    daemon.feed(wire.encode_response_abort(1, wire.AbortReason.CANCELLED))
    assert exchange.events == []
    assert daemon.link.streams == {}


async def test_a_refused_request_is_retried_on_another_process(
    make_front: Callable[..., Front],
) -> None:
    front = make_front(processes=2)
    a, b = front.start(2)
    [exchange] = front.submit(b"/1")
    assert [r.path for r in a.requests()] == [b"/1"]
    front.runner.retire(a.child)  # a daemon refuses requests once it was told to drain
    assert a.sent() == [wire.Drain()]

    a.feed(wire.encode_response_abort(1, wire.AbortReason.REFUSED))

    [request] = b.requests()
    assert request.path == b"/1"
    assert exchange.events == []
    assert a.link.streams == {}


async def test_a_refused_request_is_retried_with_its_whole_body(
    make_front: Callable[..., Front],
) -> None:
    front = make_front(processes=2)
    a, b = front.start(2, request_window=WINDOW)
    body = FakeBody(b"ab", eof=True)
    front.runner.submit(body_exchange(body, 2))
    assert a.requests()[0].body == b"ab"
    front.runner.retire(a.child)
    a.sent()

    a.feed(wire.encode_response_abort(1, wire.AbortReason.REFUSED))

    # b gets the whole body, not "0 bytes of a 2-byte body and that is all".
    [request] = b.requests()
    assert (request.body, request.body_end) == (b"ab", True)


async def test_a_refused_request_is_retried_with_the_body_bytes_pumped_too(
    make_front: Callable[..., Front],
) -> None:
    front = make_front(processes=2)
    a, b = front.start(2)
    body = FakeBody(b"abc")  # more than the first window (WINDOW), and more to come
    front.runner.submit(body_exchange(body, 10))
    [first] = a.requests()
    assert first.body == b"abc" and not first.body_end
    body.feed(b"defg")
    assert body.listener is not None
    body.listener()
    assert a.sent() == [wire.Body(1, b"d")]  # the rest of the window's credit
    front.runner.retire(a.child)
    a.sent()

    a.feed(wire.encode_response_abort(1, wire.AbortReason.REFUSED))

    [retried] = b.requests()
    assert retried.body == b"abcd" and not retried.body_end
    b.feed(wire.encode_window(1, 6))
    assert b.sent() == [wire.Body(1, b"efg")]
    body.feed(b"hij")
    body.feed_eof()
    body.listener()
    assert b.sent() == [wire.Body(1, b"hij"), wire.BodyEnd(1)]


async def test_a_lost_connection_fails_the_requests_in_flight(
    make_front: Callable[..., Front],
) -> None:
    front = make_front()
    [daemon] = front.start(1)
    started, waiting, third = front.submit(b"/1", b"/2", b"/3")
    daemon.respond(1, b"part", final=False)

    daemon.link.connection_lost(None)

    assert started.events[-1] == ("abort",)  # the response had begun: close the client
    assert waiting.events == [BAD_GATEWAY]
    assert not daemon.link.ready and daemon.link.streams == {}
    # No daemon can take the queued request or a new one: they wait for a replacement.
    [new] = front.submit(b"/4")
    assert queued(front) == [third, new]
    assert third.events == [] and new.events == []


async def test_garbage_from_a_daemon_kills_it(make_front: Callable[..., Front]) -> None:
    front = make_front()
    [daemon] = front.start(1)
    [exchange] = front.submit(b"/1")

    daemon.feed(GARBAGE)

    assert front.killed == [daemon.child]
    assert daemon.transport.aborted
    # The aborted connection is lost a moment later, and the request with it.
    await until(lambda: daemon.transport.lost)
    assert exchange.events == [BAD_GATEWAY]


async def test_a_broken_daemon_gets_no_new_request(make_front: Callable[..., Front]) -> None:
    front = make_front()
    [daemon] = front.start(1)
    daemon.feed(GARBAGE)
    # Another connection's request parsed in the same loop iteration, before the
    # transport's connection_lost callback has run.
    [exchange] = front.submit(b"/after")
    await until(lambda: daemon.transport.lost)

    assert exchange.events == []  # not 502: it never reached a daemon
    assert queued(front) == [exchange]


@pytest.mark.parametrize("final", [True, False], ids=["final", "streamed"])
async def test_a_frame_handler_error_answers_502(
    make_front: Callable[..., Front], caplog: pytest.LogCaptureFixture, final: bool
) -> None:
    front = make_front()
    [daemon] = front.start(1)
    [exchange] = front.submit(b"/1")
    daemon.sent()
    exchange.fail_respond = True

    daemon.respond(1, b"xy", final=final)

    assert exchange.events == [BAD_GATEWAY]
    assert "error handling a frame from daemon process" in caplog.text
    if final:  # that was the stream's last frame
        assert daemon.sent() == []
        assert daemon.link.streams == {}
        return
    assert daemon.sent() == [wire.Cancel(1)]
    daemon.feed(wire.encode_response_body(1, b"more"))  # dropped, its credit returned
    assert daemon.sent() == [wire.Window(1, 4)]
    daemon.feed(wire.encode_response_abort(1, wire.AbortReason.CANCELLED))
    assert exchange.events == [BAD_GATEWAY]
    assert daemon.link.streams == {}


# --------------------------------------------------------------------------------------
# Process replacement: RETIRE, request_timeout
# --------------------------------------------------------------------------------------


async def test_retire_replaces_the_process(make_front: Callable[..., Front]) -> None:
    front = make_front()
    [old] = front.start(1)

    old.feed(wire.encode_retire(wire.RetireReason.SIGNAL))

    assert "asked" in old.child.doomed
    [child] = front.spawned  # replacement first
    assert child.generation == old.child.generation
    front.submit(b"/1")  # the old process serves until its replacement is READY
    assert [r.path for r in old.requests()] == [b"/1"]

    new = FakeDaemon(front.runner, child)
    new.hello()
    assert old.sent() == [wire.Drain()]
    assert old.child.state is ChildState.RETIRING
    front.submit(b"/2")
    assert [r.path for r in new.requests()] == [b"/2"]


# --------------------------------------------------------------------------------------
# Liveness: PING, PONG, unresponsive, killed
# --------------------------------------------------------------------------------------


def look_after(runner: DaemonRunner, *daemons: FakeDaemon, silent: float = 0.0) -> None:
    """One liveness round of the runner, as if each daemon's PING out had gone unanswered
    for ``silent`` seconds (and the loop itself was on time)."""
    now = time.monotonic()
    for daemon in daemons:
        if daemon.link.ping_sent:
            daemon.link.ping_sent = now - silent
    runner._last_look = now
    runner._check_liveness()


async def test_daemons_are_pinged_one_ping_at_a_time(make_front: Callable[..., Front]) -> None:
    front = make_front()
    [daemon] = front.start(1)
    look_after(front.runner)
    assert daemon.sent() == [wire.Ping(1)]
    look_after(front.runner, daemon, silent=1.0)
    assert daemon.sent() == []  # one PING out at a time
    daemon.feed(wire.encode_pong(1))
    assert daemon.link.ping_sent == 0
    look_after(front.runner)
    assert daemon.sent() == [wire.Ping(2)]
    daemon.feed(wire.encode_pong(1))  # an old value answers nothing
    assert daemon.link.ping_sent != 0


async def test_a_silent_daemon_gets_no_new_request_and_is_replaced(
    make_front: Callable[..., Front], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncwsgi.error")
    front = make_front(processes=2)
    stopped, live = front.start(2)
    look_after(front.runner)
    live.feed(wire.encode_pong(1))
    look_after(front.runner, stopped, silent=UNRESPONSIVE_AFTER + 0.5)
    assert live.sent() == [wire.Ping(1), wire.Ping(2)] and stopped.sent() == [wire.Ping(1)]

    assert stopped.link.unresponsive and not live.link.unresponsive
    assert "has not answered for 3.5 s" in caplog.text
    assert stopped.child.doomed == "it does not answer"
    assert len(front.spawned) == 1  # its replacement, started at once
    assert front.killed == []
    exchanges = front.submit(b"/1", b"/2", b"/3")
    assert [r.path for r in live.requests()] == [b"/1", b"/2"]
    assert [f for f in stopped.sent() if isinstance(f, wire.Request)] == []
    assert queued(front) == [exchanges[2]]  # waits rather than hang there

    # It answers after all (SIGCONT): it takes work again until its replacement is READY.
    stopped.feed(wire.encode_pong(1))
    assert not stopped.link.unresponsive
    assert "answers again" in caplog.text
    assert [r.path for r in stopped.requests()] == [b"/3"]


async def test_a_daemon_silent_for_long_is_killed(
    make_front: Callable[..., Front], caplog: pytest.LogCaptureFixture
) -> None:
    front = make_front()
    [daemon] = front.start(1)
    [exchange] = front.submit(b"/hangs")
    look_after(front.runner)
    look_after(front.runner, daemon, silent=UNRESPONSIVE_AFTER)
    assert front.killed == []
    look_after(front.runner, daemon, silent=KILL_AFTER)
    assert front.killed == [daemon.child]
    assert f"daemon process {daemon.child.pid} has not answered for 30.0 s" in caplog.text
    assert not daemon.link.ready
    daemon.link.connection_lost(None)  # as the SIGKILL ends it
    assert exchange.events == [BAD_GATEWAY]


async def test_a_silent_daemon_is_killed_once_its_replacement_is_ready(
    make_front: Callable[..., Front],
) -> None:
    # What runs on a stopped process gets 502 now, not after graceful_timeout and
    # shutdown_timeout, which a stopped process cannot use.
    front = make_front()
    [daemon] = front.start(1)
    [exchange] = front.submit(b"/stuck")
    look_after(front.runner)
    look_after(front.runner, daemon, silent=UNRESPONSIVE_AFTER)
    assert daemon.link.unresponsive and front.killed == []
    daemon.child.state = ChildState.RETIRING  # as the group retires it for its replacement
    look_after(front.runner, daemon, silent=UNRESPONSIVE_AFTER + 1)
    assert front.killed == [daemon.child]
    daemon.link.connection_lost(None)
    assert exchange.events == [BAD_GATEWAY]


async def test_a_late_loop_judges_nobody(make_front: Callable[..., Front]) -> None:
    # The loop itself was held up: the PONG may be waiting unread on the socket.
    front = make_front()
    [daemon] = front.start(1)
    look_after(front.runner)
    daemon.link.ping_sent -= KILL_AFTER
    front.runner._last_look = time.monotonic() - 5.0
    front.runner._check_liveness()
    assert not daemon.link.unresponsive and front.killed == []


def check_timeouts(runner: DaemonRunner) -> None:
    """What the runner's timer does when it fires (the armed one is spent)."""
    if runner._timer is not None:
        runner._timer.cancel()
    runner._check_timeouts()


@pytest.mark.parametrize("head_sent", [False, True], ids=["nothing-sent", "response-begun"])
async def test_request_timeout_answers_504_and_replaces_the_process(
    make_front: Callable[..., Front], head_sent: bool
) -> None:
    front = make_front(request_timeout=5.0)
    [daemon] = front.start(1)
    late, fresh = front.submit(b"/late", b"/fresh")
    daemon.sent()
    if head_sent:
        daemon.respond(1, b"part", final=False)
        daemon.sent()
    daemon.link.streams[1].started -= 10.0  # began longer ago than request_timeout

    check_timeouts(front.runner)

    if head_sent:
        assert late.events[-1] == ("abort",)
    else:
        assert late.events == [("error", "504 Gateway Timeout")]
    assert daemon.sent() == [wire.Cancel(1)]
    assert fresh.events == []
    assert daemon.child.doomed == "a request timed out"
    assert len(front.spawned) == 1
    assert front.runner._timer is not None  # the next check is armed

    # The thread is busy until the daemon ends the stream; that ends it quietly.
    check_timeouts(front.runner)
    assert daemon.sent() == []
    daemon.feed(wire.encode_response_abort(1, wire.AbortReason.CANCELLED))
    assert len(late.events) == 1 + head_sent
    assert list(daemon.link.streams) == [2]


# --------------------------------------------------------------------------------------
# Script changes: one stat per tick, on the helper thread
# --------------------------------------------------------------------------------------


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "app.wsgi"
    path.write_text("application = None\n")
    return path


def watching(make_front: Callable[..., Front], script: Path) -> tuple[DaemonRunner, list[str]]:
    """A runner for ``script``, with the script's stat recorded as start() does and the
    group's restarts recorded instead of made."""
    runner = make_front(app=str(script), script_reloading=True).runner
    runner._script_key = stat_key(runner.script)
    restarts: list[str] = []
    runner.group.restart = restarts.append  # type: ignore[method-assign]
    return runner, restarts


async def look(runner: DaemonRunner) -> None:
    """One check of the script, in a tick of its own, waited for to the end."""
    await asyncio.sleep(0)  # a new tick: a new stat
    runner.check_script()
    # The look is done when its future's callback ran; what it scheduled (the
    # restart) was queued before that callback.
    await until(lambda: not runner._watch._busy)
    await asyncio.sleep(0)


async def test_an_unchanged_script_restarts_nothing(
    make_front: Callable[..., Front], script: Path
) -> None:
    runner, restarts = watching(make_front, script)
    for _ in range(3):
        await look(runner)
    assert restarts == []
    assert runner.stat_calls == 3


async def test_a_changed_script_restarts_the_group_once(
    make_front: Callable[..., Front], script: Path
) -> None:
    runner, restarts = watching(make_front, script)
    await look(runner)
    assert restarts == []

    script.write_text("application = 'a new version, of another size'\n")
    await look(runner)
    assert len(restarts) == 1
    assert str(script) in restarts[0]

    await look(runner)
    await look(runner)
    assert len(restarts) == 1
    assert runner.stat_calls == 4


async def test_requests_of_one_tick_share_one_stat(
    make_front: Callable[..., Front], script: Path
) -> None:
    runner, restarts = watching(make_front, script)
    exchanges = [FakeExchange(f"/{i}".encode()) for i in range(3)]
    for exchange in exchanges:
        runner.submit(exchange)  # no process READY: they wait, and each asks for a look
    await until(lambda: not runner._watch._busy)
    assert runner.stat_calls == 1
    assert restarts == []
    assert [exchange for exchange, _ in runner.queue] == exchanges
