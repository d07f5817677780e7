"""In-process tests of asyncwsgi/http/protocol.py: one HttpProtocol, no sockets.

Each test builds a ``ServerState`` on the running loop, connects an ``HttpProtocol`` to a
:class:`FakeTransport` that records every byte written and every pause/resume of reading,
and feeds request bytes with ``data_received()``. The application is a runner that
answers either on the loop (:class:`LoopRunner`, as daemon mode's front does) or from a
real worker thread (:class:`ThreadRunner`, as embedded mode does). The transport has no
socket, so a worker never writes to one itself: every byte goes through the loop, where
the fake sees it. Workers reach the loop through ``state.inbox``, so tests wait for a
condition with a deadline (:func:`until`), never for a fixed time.

The server's timer is stopped at once: timeouts are driven by calling
``check_deadline()`` with a chosen monotonic time, so no test waits for one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from asyncwsgi.config import Config
from asyncwsgi.errors import BadRequestBody, ClientDisconnected
from asyncwsgi.http.exchange import CONTINUE, HttpExchange
from asyncwsgi.http.protocol import LAST_CALL, HttpProtocol
from asyncwsgi.http.state import ServerState
from asyncwsgi.server.server import http_limits

# How long a condition that should come at once may take: generous, since a busy machine
# must not fail a correct server; a passing test never waits this long.
WAIT = 5.0
TEXT = [("Content-Type", "text/plain")]
PEER = ("192.0.2.7", 50123)
LOCAL = ("127.0.0.1", 8080)

Handler = Callable[[HttpExchange], None]


# --------------------------------------------------------------------------------------
# The fake transport, the runners and the harness
# --------------------------------------------------------------------------------------


class FakeTransport(asyncio.Transport):
    """What HttpProtocol uses of a transport, recording what it is asked to do.

    Like asyncio's own, ``close()`` and ``abort()`` call ``connection_lost`` on a later
    loop iteration (``close()`` only once the write buffer is empty). With ``high_water``
    set, written bytes stay "buffered" until :meth:`drain`, and ``pause_writing`` /
    ``resume_writing`` are called as a socket transport would.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: HttpProtocol) -> None:
        # No "socket": the worker-side direct writes stay off (direct_fd -1).
        super().__init__({"peername": PEER, "sockname": LOCAL, "sslcontext": None})
        self.loop = loop
        self.protocol = protocol
        self.data = bytearray()
        self.after_close = bytearray()  # written once close() or abort() was called
        self.reading: list[str] = []  # "pause" / "resume", in order
        self.reading_paused = False
        self.closed = False
        self.aborted = False
        self.lost = False
        self.high_water: int | None = None
        self.buffered = 0
        self.writing_paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            self.after_close += data
        self.data += data
        if self.high_water is not None:
            self.buffered += len(data)
            if self.buffered > self.high_water and not self.writing_paused:
                self.writing_paused = True
                self.protocol.pause_writing()

    def drain(self) -> None:
        """The client took everything buffered."""
        self.buffered = 0
        if self.writing_paused:
            self.writing_paused = False
            self.protocol.resume_writing()
        if self.closed:
            self.loop.call_soon(self._lose)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.buffered:
                self.loop.call_soon(self._lose)

    def abort(self) -> None:
        self.closed = self.aborted = True
        self.loop.call_soon(self._lose)

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        assert not self.reading_paused, "pause_reading() while paused"
        self.reading_paused = True
        self.reading.append("pause")

    def resume_reading(self) -> None:
        assert self.reading_paused, "resume_reading() while reading"
        self.reading_paused = False
        self.reading.append("resume")

    def is_reading(self) -> bool:
        return not self.reading_paused

    def get_write_buffer_size(self) -> int:
        return self.buffered


class LoopRunner:
    """Answers on the event loop, as daemon mode's front does: with ``answer`` inside
    ``submit`` when given, else later, by the test (the exchanges are in ``submitted``)."""

    def __init__(self, answer: Handler | None = None) -> None:
        self.answer = answer
        self.submitted: list[HttpExchange] = []

    def submit(self, exchange: HttpExchange) -> None:
        self.submitted.append(exchange)
        if self.answer is not None:
            self.answer(exchange)


class ThreadRunner:
    """Answers each request with ``handler`` on a worker thread of its own, as embedded
    mode does; what a handler raises is kept in ``errors``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.submitted: list[HttpExchange] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def submit(self, exchange: HttpExchange) -> None:
        self.submitted.append(exchange)
        thread = threading.Thread(target=self._run, args=(exchange,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _run(self, exchange: HttpExchange) -> None:
        try:
            self.handler(exchange)
        except BaseException as exc:
            self.errors.append(exc)

    @property
    def done(self) -> bool:
        return not any(thread.is_alive() for thread in self.threads)


Runner = LoopRunner | ThreadRunner


@dataclass
class Conn:
    state: ServerState
    protocol: HttpProtocol
    transport: FakeTransport

    def feed(self, *chunks: bytes) -> None:
        for data in chunks:
            self.protocol.data_received(data)

    @property
    def out(self) -> bytes:
        return bytes(self.transport.data)


@dataclass
class Harness:
    states: list[ServerState] = field(default_factory=list)
    runners: list[Runner] = field(default_factory=list)
    conns: list[Conn] = field(default_factory=list)

    def server(self, runner: Runner, **limits: Any) -> ServerState:
        # The server's defaults (from the settings table), with the test's changes.
        chosen = dataclasses.replace(http_limits(Config.build(app="unused.wsgi")), **limits)
        state = ServerState(asyncio.get_running_loop(), runner, chosen, on_finish=None)
        # Stop the periodic timer (the Date header is already made): the tests call
        # check_deadline() themselves, with the time they choose.
        state.close()
        self.states.append(state)
        self.runners.append(runner)
        return state

    def connect(self, state: ServerState) -> Conn:
        protocol = HttpProtocol(state)
        transport = FakeTransport(asyncio.get_running_loop(), protocol)
        protocol.connection_made(transport)
        conn = Conn(state, protocol, transport)
        self.conns.append(conn)
        return conn

    def open(self, runner: Runner, **limits: Any) -> Conn:
        return self.connect(self.server(runner, **limits))


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    for runner in h.runners:
        for thread in runner.threads if isinstance(runner, ThreadRunner) else []:
            thread.join(WAIT)
            assert not thread.is_alive(), "a worker thread is stuck"
    for conn in h.conns:
        # Whatever the test: once the server closed a connection, it wrote nothing more.
        assert conn.transport.after_close == b"", bytes(conn.transport.after_close)


async def until(condition: Callable[[], object], what: str = "the condition") -> None:
    """Let the loop run (worker callbacks through the inbox) until ``condition`` holds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


async def settle() -> None:
    """Run what is already scheduled on the loop (connection_lost after a close)."""
    for _ in range(3):
        await asyncio.sleep(0)


# --------------------------------------------------------------------------------------
# Requests and responses as bytes
# --------------------------------------------------------------------------------------


def get(path: str = "/", *headers: str, version: str = "1.1", method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/{version}"]
    if version == "1.1":
        lines.append("Host: test")
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def post(path: str, body: bytes, *headers: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def closes(self) -> bool:
        return self.headers.get("connection") == "close"


def parse(data: bytes, *, head: bool = False) -> tuple[Response, bytes]:
    """The first response in ``data`` and the bytes after it."""
    raw, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"incomplete head: {data!r}"
    status_line, *lines = raw.decode("latin-1").split("\r\n")
    version, code, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1", status_line
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(": ")
        assert colon and name.lower() not in headers, line
        headers[name.lower()] = value
    status = int(code)
    if head or status < 200 or status in (204, 304):
        return Response(status, headers, b""), rest
    if headers.get("transfer-encoding") == "chunked":
        assert "content-length" not in headers
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            assert rest[size : size + 2] == b"\r\n", rest
            body += rest[:size]
            rest = rest[size + 2 :]
            if size == 0:
                return Response(status, headers, body), rest
    if "content-length" in headers:
        size = int(headers["content-length"])
        assert len(rest) >= size, f"body cut short: {rest!r}"
        return Response(status, headers, rest[:size]), rest[size:]
    return Response(status, headers, rest), b""  # delimited by the close


def responses(data: bytes) -> list[Response]:
    found = []
    while data:
        response, data = parse(data)
        found.append(response)
    return found


def one_response(data: bytes) -> Response:
    response, rest = parse(data)
    assert rest == b"", f"bytes after the response: {rest!r}"
    return response


# --------------------------------------------------------------------------------------
# Applications
# --------------------------------------------------------------------------------------


def hello(exchange: HttpExchange) -> None:
    """On the loop: a fixed-length answer naming the path."""
    exchange.loop_respond("200 OK", TEXT, b"hello " + exchange.path, final=True)


def read_all(exchange: HttpExchange) -> bytes:
    parts = []
    while chunk := exchange.read_body(65536):
        parts.append(chunk)
    return b"".join(parts)


def echo(exchange: HttpExchange) -> None:
    """Worker thread: read the whole body, answer "METHOD PATH BODY"."""
    body = read_all(exchange)
    answer = exchange.method.encode() + b" " + exchange.path + b" " + body
    exchange.respond("200 OK", TEXT, answer, final=True)


def answer_unread(exchange: HttpExchange) -> None:
    """Worker thread: answer without touching the body."""
    exchange.respond("200 OK", TEXT, b"unread", final=True)


# --------------------------------------------------------------------------------------
# Responses, keep-alive and pipelining
# --------------------------------------------------------------------------------------


async def test_get_is_answered_with_status_line_length_date_and_server(harness: Harness) -> None:
    conn = harness.open(LoopRunner(hello))
    conn.feed(get("/x"))
    server_headers = conn.state.server_headers
    assert server_headers.startswith(b"Date: ") and b"\r\nServer: asyncwsgi\r\n" in server_headers
    assert conn.out == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n"
        + server_headers
        + b"\r\nhello /x"
    )
    assert not conn.transport.closed


async def test_exchange_carries_the_request_fields(harness: Harness) -> None:
    runner = LoopRunner()
    conn = harness.open(runner)
    conn.feed(get("/a%20b?x=1&y", "X-Thing: yes", method="DELETE"))
    (exchange,) = runner.submitted
    assert (exchange.method, exchange.path, exchange.query) == ("DELETE", b"/a%20b", b"x=1&y")
    assert exchange.http_version == "1.1"
    assert exchange.headers == [(b"Host", b"test"), (b"X-Thing", b"yes")]
    assert (exchange.client, exchange.server, exchange.scheme) == (PEER, LOCAL, "http")
    assert exchange.body is None and exchange.body_length == 0


async def test_keep_alive_serves_two_requests_answered_by_worker_threads(
    harness: Harness,
) -> None:
    conn = harness.open(ThreadRunner(echo))
    conn.feed(get("/one"))
    await until(lambda: b"/one" in conn.out, "the first response")
    conn.feed(post("/two", b"data"))
    await until(lambda: conn.out.endswith(b"POST /two data"), "the second response")
    first, second = responses(conn.out)
    assert (first.status, first.body) == (200, b"GET /one ")
    assert (second.status, second.body) == (200, b"POST /two data")
    assert not first.closes and not second.closes
    assert not conn.transport.closed
    # Idle again: the keep-alive timeout runs.
    assert conn.protocol.deadline > time.monotonic()


async def test_pipelined_requests_are_answered_in_order_with_reading_paused_meanwhile(
    harness: Harness,
) -> None:
    runner = LoopRunner()  # the test answers, one request at a time
    conn = harness.open(runner)
    conn.feed(get("/1") + get("/2") + get("/3"))
    # One request in flight; the two behind it wait, and nothing more is read meanwhile.
    assert [e.path for e in runner.submitted] == [b"/1"]
    assert conn.transport.reading == ["pause"]
    hello(runner.submitted[0])
    assert [e.path for e in runner.submitted] == [b"/1", b"/2"]
    assert conn.transport.reading_paused  # /3 still waits
    hello(runner.submitted[1])
    # The last queued request is under way: reading may go on.
    assert [e.path for e in runner.submitted] == [b"/1", b"/2", b"/3"]
    assert conn.transport.reading == ["pause", "resume"]
    hello(runner.submitted[2])
    assert [r.body for r in responses(conn.out)] == [b"hello /1", b"hello /2", b"hello /3"]


async def test_http10_without_keep_alive_closes_after_the_response(harness: Harness) -> None:
    conn = harness.open(LoopRunner(hello))
    conn.feed(get("/old", version="1.0"))
    response = one_response(conn.out)
    assert (response.status, response.body, response.closes) == (200, b"hello /old", True)
    assert conn.transport.closed
    await settle()
    assert conn.transport.lost and conn.protocol not in conn.state.connections


async def test_http10_keep_alive_stays_open_and_says_so(harness: Harness) -> None:
    conn = harness.open(LoopRunner(hello))
    conn.feed(get("/old", "Connection: keep-alive", version="1.0"))
    assert one_response(conn.out).headers["connection"] == "keep-alive"
    assert not conn.transport.closed


async def test_connection_close_closes_and_ignores_what_was_pipelined_after(
    harness: Harness,
) -> None:
    runner = ThreadRunner(echo)
    conn = harness.open(runner)
    conn.feed(get("/last", "Connection: close") + get("/ignored"))
    await until(lambda: conn.transport.lost, "the connection to close")
    response = one_response(conn.out)
    assert (response.body, response.closes) == (b"GET /last ", True)
    assert [e.path for e in runner.submitted] == [b"/last"]


async def test_connection_close_answered_inside_submit_ignores_what_follows(
    harness: Harness,
) -> None:
    # As SiteRunner's 404: the answer is written, and the connection closed, while the
    # parser is still inside the bytes that carry the next request.
    runner = LoopRunner(hello)
    conn = harness.open(runner)
    conn.feed(get("/last", "Connection: close") + get("/ignored") + b"GARBAGE\r\n\r\n")
    assert one_response(conn.out).closes and conn.transport.closed
    assert conn.transport.after_close == b""
    assert [e.path for e in runner.submitted] == [b"/last"]


async def test_head_gets_the_content_length_and_no_body(harness: Harness) -> None:
    conn = harness.open(LoopRunner(hello))
    conn.feed(get("/h", method="HEAD"))
    response, rest = parse(conn.out, head=True)
    assert response.status == 200
    assert response.headers["content-length"] == "8"  # what the GET would have had
    assert rest == b""
    assert not conn.transport.closed


async def test_streamed_response_from_a_worker_is_chunked(harness: Harness) -> None:
    def stream(exchange: HttpExchange) -> None:
        exchange.respond("200 OK", TEXT, b"a", final=False)
        exchange.write(b"bc")
        exchange.write(b"d", final=True)

    conn = harness.open(ThreadRunner(stream))
    conn.feed(get("/s"))
    await until(lambda: conn.out.endswith(b"0\r\n\r\n"), "the last chunk")
    response = one_response(conn.out)
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.body == b"abcd"
    assert not conn.transport.closed


# --------------------------------------------------------------------------------------
# Request bodies
# --------------------------------------------------------------------------------------


async def test_chunked_body_is_read_by_a_worker_across_several_data_received(
    harness: Harness,
) -> None:
    conn = harness.open(ThreadRunner(echo))
    conn.feed(b"POST /c HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
    conn.feed(b"lo\r\n")
    conn.feed(b"6\r\n world\r\n0\r")
    conn.feed(b"\n\r\n")
    await until(lambda: b"world" in conn.out, "the response")
    response = one_response(conn.out)
    assert response.body == b"POST /c hello world"
    assert not response.closes


async def test_trailer_fields_never_reach_the_request_headers(harness: Harness) -> None:
    # A trailer arrives after the head; it must not be taken for a header (here one a
    # trusted proxy's X-Forwarded-For would make REMOTE_ADDR of).
    runner = LoopRunner()
    conn = harness.open(runner)
    conn.feed(b"POST /t HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
    (exchange,) = runner.submitted
    before = list(exchange.headers)
    conn.feed(b"2\r\nhi\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\nHost: evil\r\n\r\n")
    assert exchange.headers == before
    assert exchange.body is not None and exchange.body.eof


async def test_http10_with_transfer_encoding_is_served_then_closed(harness: Harness) -> None:
    # RFC 9112 section 6.1: chunked framing from an HTTP/1.0 client is faulty; answer it
    # and close, whatever its Connection header says.
    runner = LoopRunner()
    conn = harness.open(runner)
    conn.feed(
        b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n" + get("/next", "Connection: keep-alive", version="1.0")
    )
    (exchange,) = runner.submitted
    assert exchange.body is not None and exchange.body.eof  # answered once read whole
    hello(exchange)
    response = one_response(conn.out)
    assert (response.status, response.closes) == (200, True)
    assert conn.transport.closed and conn.out.count(b"HTTP/1.1") == 1


async def test_an_absolute_form_targets_authority_is_the_host(harness: Harness) -> None:
    runner = LoopRunner()
    conn = harness.open(runner)
    conn.feed(b"GET http://good.test:8080/p?q=1 HTTP/1.1\r\nHost: evil.test\r\n\r\n")
    (exchange,) = runner.submitted
    assert (exchange.path, exchange.query) == (b"/p", b"q=1")
    assert [v for n, v in exchange.headers if n.lower() == b"host"] == [b"good.test:8080"]


async def test_whitespace_around_a_field_value_is_no_part_of_it(harness: Harness) -> None:
    # RFC 9112 section 5: OWS on either side of a value; the parser drops the leading.
    runner = LoopRunner()
    conn = harness.open(runner)
    conn.feed(b"POST / HTTP/1.1\r\nHost:\ttest \r\nX-A: 1 \t\r\nContent-Length: 2\t \r\n\r\nhi")
    (exchange,) = runner.submitted
    assert exchange.headers == [(b"Host", b"test"), (b"X-A", b"1"), (b"Content-Length", b"2")]
    assert exchange.body_length == 2


@pytest.mark.parametrize("target", [b"/m", b"http://test/m", b"test:443"])
async def test_connect_is_refused(harness: Harness, target: bytes) -> None:
    # A tunnel WSGI cannot serve; a 2xx to it would make the response body tunnel bytes.
    runner = LoopRunner()
    conn = harness.open(runner)
    conn.feed(b"CONNECT " + target + b" HTTP/1.1\r\nHost: test\r\n\r\n" + get("/next"))
    response = one_response(conn.out)
    assert (response.status, response.closes) == (400, True)
    assert runner.submitted == [] and conn.transport.closed


async def test_expect_100_continue_is_sent_when_the_application_reads(harness: Harness) -> None:
    conn = harness.open(ThreadRunner(echo))
    conn.feed(
        b"POST /e HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    # The client sends the body only after the go-ahead, which the worker's read asks for.
    await until(lambda: conn.out == CONTINUE, "100 Continue")
    conn.feed(b"hello")
    await until(lambda: conn.out.endswith(b"hello"), "the response")
    response = one_response(conn.out[len(CONTINUE) :])
    assert (response.status, response.body, response.closes) == (200, b"POST /e hello", False)


async def test_expect_100_continue_is_not_sent_when_the_application_answers_unread(
    harness: Harness,
) -> None:
    runner = ThreadRunner(answer_unread)
    conn = harness.open(runner)
    conn.feed(b"PUT /e HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    await until(lambda: conn.transport.closed, "the connection to close")
    # No go-ahead: the client never sends the body, so the connection cannot go on.
    assert CONTINUE not in conn.out
    response = one_response(conn.out)
    assert (response.body, response.closes) == (b"unread", True)


async def test_body_over_the_body_buffer_pauses_reading_until_the_worker_drains_it(
    harness: Harness,
) -> None:
    go = threading.Event()

    def gated_echo(exchange: HttpExchange) -> None:
        go.wait(WAIT)
        echo(exchange)

    conn = harness.open(ThreadRunner(gated_echo), body_buffer=16)
    body = bytes(range(65, 65 + 50))
    conn.feed(post("/big", body)[:-30])  # 20 bytes of the body: over the buffer
    assert conn.transport.reading == ["pause"]
    go.set()
    await until(lambda: not conn.transport.reading_paused, "reading to resume")
    conn.feed(body[-30:])
    await until(lambda: conn.out.endswith(body), "the response")
    assert one_response(conn.out).body == b"POST /big " + body
    assert not conn.transport.reading_paused
    assert conn.transport.reading[:2] == ["pause", "resume"]


async def test_client_leaving_while_a_worker_waits_for_the_body_raises_client_disconnected(
    harness: Harness,
) -> None:
    runner = ThreadRunner(echo)
    conn = harness.open(runner)
    conn.feed(post("/gone", b"0123456789")[:-7])  # 3 of 10 body bytes
    body = runner.submitted[0].body
    assert body is not None
    await until(lambda: body.buffered == 0, "the worker to take the first bytes")
    conn.protocol.connection_lost(ConnectionResetError())
    await until(lambda: runner.done, "the worker to end")
    assert [type(e) for e in runner.errors] == [ClientDisconnected]
    assert conn.protocol not in conn.state.connections
    assert conn.out == b""


def read_or_fail(exchange: HttpExchange) -> None:
    """Worker: read the body; if that raises, answer as the WSGI bridge does when the
    application lets an exception out (the HTTP layer may know better than 500)."""
    try:
        read_all(exchange)
    except BadRequestBody:
        exchange.send_error("500 Internal Server Error", b"oops\n")
        return
    exchange.respond("200 OK", TEXT, b"read", final=True)


@pytest.mark.parametrize(
    ("rest", "status"),
    [
        pytest.param(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 413, id="over-limit"),
        pytest.param(b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n", 400, id="bad-chunk-size"),
    ],
)
async def test_bad_chunked_body_fails_the_read_and_gets_its_own_status(
    harness: Harness, rest: bytes, status: int
) -> None:
    conn = harness.open(ThreadRunner(read_or_fail), limit_request_body=8)
    conn.feed(b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.feed(rest)
    await until(lambda: conn.transport.closed, "the connection to close")
    response = one_response(conn.out)
    assert (response.status, response.closes) == (status, True)


async def test_body_that_stops_coming_gets_408(harness: Harness) -> None:
    conn = harness.open(ThreadRunner(read_or_fail), body_timeout=20.0)
    conn.feed(post("/slow", b"x" * 100)[:-90])
    now = time.monotonic()
    conn.protocol.check_deadline(now)  # the server's timer first sees the body here
    conn.protocol.check_deadline(now + 19.9)
    assert not conn.transport.closed
    conn.protocol.check_deadline(now + 20.0)
    await until(lambda: conn.transport.closed, "the connection to close")
    response = one_response(conn.out)
    assert (response.status, response.closes) == (408, True)


async def test_unread_small_body_is_discarded_and_the_connection_kept(harness: Harness) -> None:
    conn = harness.open(ThreadRunner(answer_unread))
    conn.feed(post("/p", b"x" * 10)[:-6])
    await until(lambda: b"unread" in conn.out, "the response")
    # The rest of the body is read and thrown away, not taken for the next request.
    conn.feed(b"x" * 6 + get("/next"))
    await until(lambda: conn.out.count(b"HTTP/1.1 200 OK") == 2, "the second response")
    assert [r.closes for r in responses(conn.out)] == [False, False]


# --------------------------------------------------------------------------------------
# Requests refused by the HTTP layer
# --------------------------------------------------------------------------------------

REFUSALS = [
    pytest.param(b"GARBAGE\r\n\r\n", {}, 400, id="malformed-request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", {}, 400, id="header-without-colon"),
    pytest.param(get("/" + "a" * 40), {"limit_request_line": 32}, 414, id="target-too-long"),
    pytest.param(
        get("/", "A: 1", "B: 2", "C: 3"), {"limit_request_fields": 3}, 431, id="too-many-fields"
    ),
    pytest.param(
        get("/", "A: " + "x" * 40), {"limit_request_field_size": 32}, 431, id="field-too-large"
    ),
    pytest.param(post("/", b"x" * 9), {"limit_request_body": 8}, 413, id="body-over-limit"),
    pytest.param(
        get("/", "Content-Length: 1", "Content-Length: 2", method="POST"),
        {},
        400,
        id="conflicting-content-lengths",
    ),
    pytest.param(
        get("/", "Content-Length: 1", "Transfer-Encoding: chunked", method="POST"),
        {},
        400,
        id="content-length-and-transfer-encoding",
    ),
    pytest.param(
        get("/", "Transfer-Encoding: gzip, chunked", method="POST"), {}, 501, id="gzip-chunked"
    ),
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", {}, 400, id="no-host"),
    pytest.param(get("/", "Expect: teapot"), {}, 417, id="unknown-expectation"),
    pytest.param(b"GET / HTTP/2.0\r\nHost: test\r\n\r\n", {}, 505, id="http-2-0"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", {}, 400, id="host-with-a-blank"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", {}, 400, id="host-with-userinfo"),
]


@pytest.mark.parametrize(("data", "limits", "status"), REFUSALS)
async def test_refused_request_is_answered_by_the_server_and_closed(
    harness: Harness, data: bytes, limits: dict[str, int], status: int
) -> None:
    runner = LoopRunner(hello)
    conn = harness.open(runner, **limits)
    conn.feed(data)
    response = one_response(conn.out)
    assert (response.status, response.closes) == (status, True)
    assert response.body.startswith(str(status).encode())
    assert conn.transport.closed and runner.submitted == []


async def test_transfer_encoding_without_a_coding_is_refused_before_the_application(
    harness: Harness,
) -> None:
    runner = LoopRunner(hello)
    conn = harness.open(runner)
    conn.feed(b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: ,\r\n\r\n")
    assert runner.submitted == []
    assert one_response(conn.out).status == 400


async def test_refusal_after_a_pipelined_request_comes_after_its_answer(harness: Harness) -> None:
    runner = LoopRunner()
    conn = harness.open(runner)
    conn.feed(get("/good") + b"GARBAGE\r\n\r\n")
    assert conn.out == b"" and not conn.transport.closed
    hello(runner.submitted[0])
    good, bad = responses(conn.out)
    assert (good.status, good.closes) == (200, False)
    assert (bad.status, bad.closes) == (400, True)
    assert conn.transport.closed


async def test_runner_that_cannot_take_the_request_gets_503(harness: Harness) -> None:
    def refuse(exchange: HttpExchange) -> None:
        raise RuntimeError("no thread left")

    conn = harness.open(LoopRunner(refuse))
    conn.feed(get("/"))
    assert (one_response(conn.out).status, conn.transport.closed) == (503, True)


# --------------------------------------------------------------------------------------
# Timeouts (driven through check_deadline with a chosen time)
# --------------------------------------------------------------------------------------


async def test_head_not_complete_in_time_gets_408_and_close(harness: Harness) -> None:
    conn = harness.open(LoopRunner(hello), header_timeout=10.0)
    conn.feed(b"GET /slow HTTP/1.1\r\nHost: te")
    # The head's own deadline (it runs in every state, not only when the connection idles).
    deadline = conn.protocol._head_deadline
    conn.protocol.check_deadline(deadline - 0.001)
    assert conn.out == b"" and not conn.transport.closed
    conn.protocol.check_deadline(deadline)
    response = one_response(conn.out)
    assert (response.status, response.closes) == (408, True)
    assert conn.transport.closed


async def test_silent_connection_is_closed_at_the_header_deadline(harness: Harness) -> None:
    conn = harness.open(LoopRunner(hello), header_timeout=10.0)
    conn.protocol.check_deadline(time.monotonic() + 10.5)
    assert conn.transport.closed and conn.out == b""


async def test_idle_keep_alive_connection_closes_after_the_keep_alive_timeout(
    harness: Harness,
) -> None:
    conn = harness.open(LoopRunner(hello), keep_alive_timeout=5.0, header_timeout=60.0)
    conn.feed(get("/"))
    answered = conn.out
    deadline = conn.protocol.deadline
    assert deadline <= time.monotonic() + 5.0  # the keep-alive timeout, not the header one
    conn.protocol.check_deadline(deadline - 0.001)
    assert not conn.transport.closed
    conn.protocol.check_deadline(deadline)
    assert conn.transport.is_closing() and conn.out == answered  # closed without a word


async def test_busy_connection_does_not_time_out(harness: Harness) -> None:
    runner = LoopRunner()
    conn = harness.open(runner, header_timeout=1.0, keep_alive_timeout=1.0)
    conn.feed(get("/slow-app"))
    conn.protocol.check_deadline(time.monotonic() + 1000)
    assert not conn.transport.closed
    hello(runner.submitted[0])
    assert one_response(conn.out).status == 200


async def test_head_begun_during_a_response_still_times_out(harness: Harness) -> None:
    runner = LoopRunner()
    conn = harness.open(runner, header_timeout=10.0)
    conn.feed(get("/first") + b"GET /second HTTP/1.1\r\n")
    hello(runner.submitted[0])  # answered; /second's head is still incomplete
    conn.protocol.check_deadline(time.monotonic() + 3600)
    assert responses(conn.out)[-1].status == 408
    assert conn.transport.closed


# --------------------------------------------------------------------------------------
# Writing: a worker waits for a slow client
# --------------------------------------------------------------------------------------


def streamer(blocks: int, size: int, progress: list[int]) -> Handler:
    """Worker: a chunked response of ``blocks`` writes of ``size`` bytes; ``progress``
    counts the writes that returned."""

    def app(exchange: HttpExchange) -> None:
        exchange.respond("200 OK", TEXT, b"", final=False)
        for _ in range(blocks):
            exchange.write(b"x" * size)
            progress.append(1)
        exchange.write(b"", final=True)

    return app


async def test_worker_writing_waits_while_the_transport_is_paused_and_goes_on_after(
    harness: Harness,
) -> None:
    progress: list[int] = []
    # write_buffer: a worker runs at most this far ahead of the loop, so the pause is
    # seen after the second block whatever the threads' timing.
    runner = ThreadRunner(streamer(8, 10_000, progress))
    conn = harness.open(runner, write_buffer=4096)
    conn.transport.high_water = 16_000
    conn.feed(get("/stream"))
    await until(lambda: conn.transport.writing_paused, "pause_writing")
    assert conn.protocol.write_paused
    await asyncio.sleep(0.02)  # time to run ahead if it did not wait
    # Paused while the loop wrote block 2: the write of block 2 (or, had it looked just
    # before the pause, of block 3) waits.
    assert len(progress) <= 2 and not runner.done
    conn.transport.high_water = None  # the client now reads as fast as we write
    conn.transport.drain()  # resume_writing
    await until(lambda: runner.done, "the worker to finish")
    assert runner.errors == []
    assert one_response(conn.out).body == b"x" * 80_000


def big(exchange: HttpExchange) -> None:
    """On the loop: a finished 100 kB answer."""
    exchange.loop_respond("200 OK", TEXT, b"x" * 100_000, final=True)


async def test_closed_connection_whose_client_never_reads_is_dropped_after_send_timeout(
    harness: Harness,
) -> None:
    conn = harness.open(LoopRunner(big), send_timeout=0.01)
    conn.transport.high_water = 16_000  # the client reads nothing
    conn.feed(get("/big", "Connection: close"))
    assert conn.transport.closed and not conn.transport.aborted  # close() waits to flush
    # The server's timer (check_deadline) watches every connection's sending.
    give_up = time.monotonic() + 0.2
    while not conn.transport.aborted and time.monotonic() < give_up:
        conn.protocol.check_deadline(time.monotonic() + 3600)
        await asyncio.sleep(0.01)
    assert conn.transport.aborted


async def test_keep_alive_connection_whose_client_never_reads_is_dropped_after_send_timeout(
    harness: Harness,
) -> None:
    conn = harness.open(LoopRunner(big), send_timeout=0.01)
    conn.transport.high_water = 16_000
    conn.feed(get("/big"))
    assert conn.protocol.write_paused and not conn.transport.closed
    # Far past send_timeout, whether a timer of the connection or the server's tick
    # (check_deadline) is the one to notice.
    give_up = time.monotonic() + 0.2
    while not conn.transport.closed and time.monotonic() < give_up:
        conn.protocol.check_deadline(time.monotonic() + 3600)
        await asyncio.sleep(0.01)
    assert conn.transport.closed


async def test_client_leaving_while_a_worker_waits_to_write_raises_client_disconnected(
    harness: Harness,
) -> None:
    progress: list[int] = []
    runner = ThreadRunner(streamer(8, 10_000, progress))
    conn = harness.open(runner, write_buffer=4096)
    conn.transport.high_water = 16_000
    conn.feed(get("/stream"))
    await until(lambda: conn.transport.writing_paused, "pause_writing")
    conn.protocol.connection_lost(ConnectionResetError())
    await until(lambda: runner.done, "the worker to end")
    assert [type(e) for e in runner.errors] == [ClientDisconnected]


# --------------------------------------------------------------------------------------
# Shutdown and the connection limit
# --------------------------------------------------------------------------------------


async def test_half_closed_client_gets_its_response_then_the_connection_closes(
    harness: Harness,
) -> None:
    runner = LoopRunner()
    conn = harness.open(runner)
    conn.feed(get("/1"))
    assert conn.protocol.eof_received() is True  # keep the transport open to answer
    hello(runner.submitted[0])
    response = one_response(conn.out)
    assert (response.status, response.closes) == (200, True)
    assert conn.transport.closed


async def test_shutdown_gives_an_idle_connection_a_last_call(harness: Harness) -> None:
    # A request already on its way when the server stops is answered, with
    # "Connection: close"; with none, the connection closes after LAST_CALL.
    conn = harness.open(LoopRunner(hello))
    conn.feed(get("/"))
    conn.transport.data.clear()
    conn.protocol.shutdown()
    assert not conn.transport.closed
    conn.feed(get("/"))
    response = one_response(conn.out)
    assert (response.status, response.closes) == (200, True)
    assert conn.transport.closed

    idle = harness.open(LoopRunner(hello))
    idle.feed(get("/"))
    idle.protocol.shutdown()
    assert not idle.transport.closed
    await asyncio.sleep(LAST_CALL + 0.1)
    assert idle.transport.closed


async def test_a_connection_accepted_as_the_server_stops_is_stopped_too(
    harness: Harness,
) -> None:
    # Accepted while shutdown() went through the connections: the timer's next look
    # stops it as well, so it does not serve on with keep-alive until the hard abort.
    conn = harness.open(LoopRunner(hello))
    conn.state.shutting_down = True
    conn.protocol.check_deadline(time.monotonic())
    conn.feed(get("/"))
    response = one_response(conn.out)
    assert (response.status, response.closes) == (200, True)
    assert conn.transport.closed


async def test_shutdown_closes_a_busy_connection_after_its_response(harness: Harness) -> None:
    runner = LoopRunner()
    conn = harness.open(runner)
    conn.feed(get("/busy"))
    conn.protocol.shutdown()
    assert not conn.transport.closed
    hello(runner.submitted[0])
    response = one_response(conn.out)
    assert (response.status, response.closes) == (200, True)
    assert conn.transport.closed


async def test_shutdown_answers_the_pipelined_requests_already_read(harness: Harness) -> None:
    runner = LoopRunner()
    conn = harness.open(runner)
    conn.feed(get("/1") + get("/2"))
    conn.protocol.shutdown()
    hello(runner.submitted[0])
    hello(runner.submitted[1])
    assert [r.closes for r in responses(conn.out)] == [False, True]
    assert conn.transport.closed


async def test_connection_over_max_connections_gets_503(harness: Harness) -> None:
    state = harness.server(LoopRunner(hello), max_connections=1)
    first = harness.connect(state)
    second = harness.connect(state)
    response = one_response(second.out)
    assert (response.status, response.closes) == (503, True)
    assert second.transport.closed
    assert state.connections == {first.protocol}
    first.feed(get("/"))
    assert one_response(first.out).status == 200
