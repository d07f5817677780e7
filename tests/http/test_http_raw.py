"""Raw-socket tests of the HTTP/1.1 layer against the real server (docs/DESIGN.md,
"The request path").

Every test talks bytes to ``python -m asyncwsgi tests/apps/http_echo.wsgi`` so that
framing, pipelining, limits and timeouts are checked on the wire, not through a client
library that would smooth them over.
"""

from __future__ import annotations

import email.utils
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from tests.conftest import APPS, EXAMPLES, ServerProcess

ECHO = APPS / "http_echo.wsgi"
StartServer = Callable[..., ServerProcess]

# How long a test waits for something that should happen at once. Generous on purpose:
# a busy 2-core machine must not make a correct server fail.
WAIT = 5.0
# How long to wait for the answer to malformed input, which needs no application.
REJECT_WAIT = 2.0


# --------------------------------------------------------------------------------------
# A small HTTP/1.1 response reader that keeps what it read beyond one response
# --------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.header_list(name)
        return values[0] if values else None

    def header_list(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for n, v in self.headers if n.lower() == lname]

    @property
    def closes(self) -> bool:
        return "close" in (self.header("connection") or "").lower()


class Client:
    """A blocking socket plus the bytes received but not yet consumed."""

    def __init__(self, sock: socket.socket, timeout: float = WAIT) -> None:
        self.sock = sock
        self.buf = b""
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def _more(self) -> bool:
        """Receive more bytes; False when the server closed the connection."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        if not data:
            return False
        self.buf += data
        return True

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise ConnectionError(f"closed after {len(self.buf)} of {n} bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _take_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._more():
                raise ConnectionError(f"closed inside a line; have {self.buf!r}")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_response(self, *, head_request: bool = False) -> Response:
        """One response (a 1xx interim response counts as one)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                raise ConnectionError(f"closed before a complete head; have {self.buf!r}")
        raw_head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status_line, *lines = raw_head.decode("latin-1").split("\r\n")
        match = re.fullmatch(r"HTTP/1\.[01] (\d{3}) ?(.*)", status_line)
        assert match, f"bad status line {status_line!r}"
        status = int(match.group(1))
        headers = []
        for line in lines:
            name, sep, value = line.partition(":")
            assert sep and name == name.strip(), f"bad header line {line!r}"
            headers.append((name, value.strip()))
        response = Response(status, match.group(2), headers, b"", raw_head)
        if head_request or status < 200 or status in (204, 304):
            return response
        te = (response.header("transfer-encoding") or "").lower()
        length = response.header_list("content-length")
        if te:
            assert te == "chunked", te
            assert not length, "both Transfer-Encoding and Content-Length in a response"
            response.body = self._read_chunked()
        elif length:
            assert len(set(length)) == 1, length
            response.body = self._take(int(length[0]))
        else:
            # Delimited by the end of the connection.
            while self._more():
                pass
            response.body, self.buf = self.buf, b""
        return response

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self._take_line().split(b";")[0], 16)
            if size == 0:
                while self._take_line():  # trailer section
                    pass
                return body
            body += self._take(size)
            assert self._take(2) == b"\r\n", "chunk not followed by CRLF"

    def closed(self, timeout: float = WAIT) -> bool:
        """True when the server closes the connection within ``timeout`` without sending
        anything more; False when it stays open that long."""
        self.sock.settimeout(timeout)
        try:
            more = self._more()
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(WAIT)
        assert not more, f"unexpected bytes from the server: {self.buf!r}"
        return True

    def rest_until_closed(self, timeout: float = WAIT) -> bytes:
        """Everything not yet consumed, up to the server's close. Raises TimeoutError
        (keeping what arrived in ``buf``) if the server sends nothing for ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while self._more():
                pass
        finally:
            self.sock.settimeout(WAIT)
        data, self.buf = self.buf, b""
        return data


def start_echo(start_server: StartServer, *options: str) -> ServerProcess:
    # A short graceful timeout: a test that finds the server stuck on a request must not
    # also spend 30 s in teardown.
    return start_server(ECHO, "--graceful-timeout", "1", *options)


@pytest.fixture(scope="module")
def shared_echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One default echo server for the tests whose input the HTTP layer rejects by
    itself: they change no server state, and a server start is most of their cost."""
    args = [str(ECHO), "--bind", "127.0.0.1:0", "--no-access-log", "--graceful-timeout", "1"]
    server = ServerProcess(args, tmp_path_factory.mktemp("http-raw")).wait_ready()
    yield server
    server.stop()


def client(server: ServerProcess) -> Client:
    return Client(server.connect())


def get(path: str, *headers: str, version: str = "1.1", method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/{version}"]
    if version == "1.1":
        lines.append("Host: test")
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def post(path: str, body: bytes, *headers: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def echo(method: str, path: str, body: bytes = b"") -> bytes:
    """What http_echo.wsgi answers for a request it reads fully."""
    return f"{method} {path} {len(body)}:".encode() + body


def assert_rejected(raw: bytes, status: int) -> None:
    """``raw`` is all the server sent before closing: exactly one ``status`` response."""
    assert raw.startswith(f"HTTP/1.1 {status} ".encode()), raw[:200]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower(), head
    match = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
    assert match, head
    assert len(body) == int(match.group(1)), f"extra bytes after the response: {body!r}"


def send_and_read_all(server: ServerProcess, data: bytes) -> bytes:
    """Send ``data`` and return all the server sends before closing; fail (rather than
    hang) if it does not close soon: a rejection needs no application."""
    c = client(server)
    c.send(data)
    try:
        return c.rest_until_closed(REJECT_WAIT)
    except TimeoutError:
        pytest.fail(f"connection not closed within {REJECT_WAIT} s; got {c.buf!r}")
    finally:
        c.close()


# --------------------------------------------------------------------------------------
# Keep-alive and Connection
# --------------------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    for i in range(4):
        c.send(get(f"/req{i}"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == echo("GET", f"/req{i}")
        assert not r.closes
        c.send(post(f"/post{i}", b"x" * i))
        r = c.read_response()
        assert r.body == echo("POST", f"/post{i}", b"x" * i)
        assert not r.closes
    assert not c.closed(timeout=0.2)  # still open for more


def test_http10_without_keep_alive_gets_connection_close(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(get("/old", version="1.0"))
    r = c.read_response()
    assert r.status == 200
    assert r.body == echo("GET", "/old")
    assert r.header("connection") == "close"
    assert c.closed()


def test_http10_with_keep_alive_stays_open(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    for path in ("/one", "/two", "/three"):
        c.send(get(path, "Connection: keep-alive", version="1.0"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == echo("GET", path)
        assert (r.header("connection") or "").lower() == "keep-alive"
        # A 1.0 client cannot parse chunked: the body must be length-delimited.
        assert r.header("content-length") == str(len(r.body))
    assert not c.closed(timeout=0.2)


def test_http11_connection_close_from_client_closes_after_response(
    start_server: StartServer,
) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(get("/first"))
    assert c.read_response().body == echo("GET", "/first")
    c.send(get("/last", "Connection: close"))
    r = c.read_response()
    assert r.status == 200
    assert r.body == echo("GET", "/last")
    assert r.header("connection") == "close"
    assert c.closed()


# --------------------------------------------------------------------------------------
# Pipelining
# --------------------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    requests = [
        (get("/p1"), echo("GET", "/p1")),
        (get("/p2"), echo("GET", "/p2")),
        (post("/p3", b"body of three"), echo("POST", "/p3", b"body of three")),
        (get("/p4"), echo("GET", "/p4")),
        (post("/p5", b""), echo("POST", "/p5")),
        (get("/p6"), echo("GET", "/p6")),
        (get("/p7"), echo("GET", "/p7")),
    ]
    c.send(b"".join(data for data, _ in requests))
    for _, expected in requests:
        r = c.read_response()
        assert r.status == 200
        assert r.body == expected
        assert not r.closes
    assert c.buf == b""
    # The connection is still usable after the burst.
    c.send(get("/after"))
    assert c.read_response().body == echo("GET", "/after")


def test_pipelined_mixed_framing_head_chunked_and_close(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    chunked_post = (
        b"POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    c.send(
        get("/a")
        + get("/static", method="HEAD")
        + chunked_post
        + get("/stream")
        + get("/last", "Connection: close")
    )
    r = c.read_response()
    assert r.body == echo("GET", "/a")
    r = c.read_response(head_request=True)
    assert r.status == 200
    assert r.header("content-length") == str(len(b"the same body for GET and HEAD\n"))
    r = c.read_response()
    assert r.body == echo("POST", "/chunked", b"abcdefg")
    r = c.read_response()
    assert r.header("transfer-encoding") == "chunked"
    assert r.body == b"abbccc"
    r = c.read_response()
    assert r.body == echo("GET", "/last")
    assert r.closes
    assert c.rest_until_closed() == b""


def test_pipelined_request_after_connection_close_is_ignored(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(get("/a") + get("/b") + get("/last", "Connection: close") + get("/never"))
    for path in ("/a", "/b"):
        r = c.read_response()
        assert r.body == echo("GET", path)
        assert not r.closes
    r = c.read_response()
    assert r.body == echo("GET", "/last")
    assert r.closes
    # Bytes after the "Connection: close" request are not answered at all.
    assert c.rest_until_closed() == b""


def test_pipelined_requests_before_a_malformed_one_are_answered_first(
    start_server: StartServer,
) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(get("/a") + post("/b", b"bee") + get("/c") + b"GARBAGE\r\n\r\n")
    assert c.read_response().body == echo("GET", "/a")
    assert c.read_response().body == echo("POST", "/b", b"bee")
    r = c.read_response()
    assert r.body == echo("GET", "/c")
    if not r.closes:
        assert_rejected(c.rest_until_closed(), 400)


# --------------------------------------------------------------------------------------
# Chunked bodies
# --------------------------------------------------------------------------------------


def test_chunked_request_body_is_decoded(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    payload = b"hello, " + bytes(range(256)) + b" world\r\n0\r\n"
    wire = (
        b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"7;name=value\r\nhello, \r\n"  # a chunk extension is ignored
        + b"100\r\n"
        + bytes(range(256))
        + b"\r\n"
        + b"B\r\n world\r\n0\r\n\r\n"  # data that looks like a last chunk
        + b"0\r\nX-Trailer: yes\r\n\r\n"  # last chunk, a trailer field, end
    )
    # Split at awkward places: inside a size line, inside the data, inside CRLFs.
    cuts = [3, 50, 51, 52, 60, 200, 320, len(wire) - 5, len(wire) - 1]
    start = 0
    for cut in cuts:
        c.send(wire[start:cut])
        start = cut
    c.send(wire[start:])
    r = c.read_response()
    assert r.status == 200
    assert r.body == echo("POST", "/upload", payload)
    assert not r.closes
    c.send(get("/next"))
    assert c.read_response().body == echo("GET", "/next")


def test_chunked_request_body_large(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    block = bytes(range(256)) * 256  # 64 KiB
    chunks = [block] * 8  # 512 KiB: more than the server buffers before pausing
    wire = b"POST /big HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    wire += b"".join(b"%x\r\n%b\r\n" % (len(ch), ch) for ch in chunks) + b"0\r\n\r\n"
    c.send(wire)
    r = c.read_response()
    assert r.status == 200
    body = b"".join(chunks)
    assert r.body == echo("POST", "/big", body)


def test_large_content_length_body(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    body = bytes(range(256)) * 4096  # 1 MiB: the server must pause and resume reading
    c.send(post("/big", body))
    r = c.read_response()
    assert r.body == echo("POST", "/big", body)
    assert not r.closes


def test_invalid_chunk_size_gets_400(start_server: StartServer) -> None:
    server = start_echo(start_server)
    raw = send_and_read_all(
        server,
        b"POST /bad-chunk HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nzz\r\n",
    )
    assert_rejected(raw, 400)


def test_generator_response_is_chunked_for_http11(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(get("/stream"))
    # Read the raw bytes to check the exact framing, not just the decoded body.
    expected_body = b"1\r\na\r\n2\r\nbb\r\n3\r\nccc\r\n0\r\n\r\n"
    while b"\r\n\r\n" not in c.buf or not c.buf.endswith(expected_body):
        assert c._more(), c.buf
        assert len(c.buf) < 4096, c.buf
    head, _, body = c.buf.partition(b"\r\n\r\n")
    c.buf = b""
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    lower = head.lower()
    assert b"\r\ntransfer-encoding: chunked" in lower
    assert b"content-length" not in lower
    assert b"connection: close" not in lower
    assert body == expected_body
    # Keep-alive survives a chunked response.
    c.send(get("/stream"))
    assert c.read_response().body == b"abbccc"


def test_generator_response_to_http10_is_delimited_by_close(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(get("/stream", version="1.0"))
    raw = c.rest_until_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    lower = head.lower()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding" not in lower
    assert b"content-length" not in lower
    assert b"\r\nconnection: close" in lower
    assert body == b"abbccc"


def test_generator_response_to_http10_keep_alive_is_still_delimited_by_close(
    start_server: StartServer,
) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(get("/stream", "Connection: keep-alive", version="1.0"))
    raw = c.rest_until_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower()
    assert b"transfer-encoding" not in head.lower()
    assert body == b"abbccc"


def test_unread_large_body_gets_full_response_then_close(start_server: StartServer) -> None:
    # The app answers without reading 1 MiB; the server may not keep the connection,
    # but the client must still get the whole response (not a reset that eats it).
    server = start_echo(start_server)
    c = client(server)
    n = 1 << 20
    c.send(b"POST /noread HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % n)
    sender = threading.Thread(target=_send_quietly, args=(c.sock, b"x" * n), daemon=True)
    sender.start()
    r = c.read_response()
    sender.join(WAIT)
    assert r.status == 200
    assert r.body == b"did not read the body\n"
    assert r.closes


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:  # the server closed without reading it all: allowed
        pass


def test_absolute_form_request_target(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(b"GET http://test/abs/path?q=1 HTTP/1.1\r\nHost: test\r\n\r\n")
    assert c.read_response().body == echo("GET", "/abs/path")


# --------------------------------------------------------------------------------------
# Expect: 100-continue
# --------------------------------------------------------------------------------------

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def test_expect_100_continue_sent_when_the_app_reads(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    body = b"the body, sent only after 100 Continue"
    c.send(
        b"POST /upload HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    # The client has not sent the body yet: the interim response must come first.
    interim = c.read_response()
    assert interim.status == 100
    assert interim.raw_head + b"\r\n\r\n" == CONTINUE
    assert c.buf == b""
    c.send(body)
    r = c.read_response()
    assert r.status == 200
    assert r.body == echo("POST", "/upload", body)
    assert not r.closes
    c.send(get("/next"))
    assert c.read_response().body == echo("GET", "/next")


def test_expect_100_continue_not_sent_when_the_app_does_not_read(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(
        b"POST /noread HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    raw = c.rest_until_closed()
    assert b"100 Continue" not in raw
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower()
    assert body == b"did not read the body\n"


def test_expect_100_continue_with_chunked_body(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(
        b"POST /c HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    assert c.read_response().status == 100
    c.send(b"5\r\nhello\r\n0\r\n\r\n")
    r = c.read_response()
    assert r.body == echo("POST", "/c", b"hello")


def test_no_100_continue_for_http10(start_server: StartServer) -> None:
    # RFC 9110 10.1.1: a server must not send 100 Continue to an HTTP/1.0 client.
    server = start_echo(start_server)
    c = client(server)
    c.send(b"POST /ten HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
    raw = c.rest_until_closed()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw
    assert b"100 Continue" not in raw
    assert raw.endswith(b"\r\n\r\n" + echo("POST", "/ten", b"hello"))


def test_unsupported_expectation_gets_417(start_server: StartServer) -> None:
    server = start_echo(start_server)
    raw = send_and_read_all(server, post("/", b"hello", "Expect: something-else"))
    assert_rejected(raw, 417)


# --------------------------------------------------------------------------------------
# HEAD
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/static", "/static-length"])
def test_head_has_get_headers_and_no_body(start_server: StartServer, path: str) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(get(path))
    got = c.read_response()
    c.send(get(path, method="HEAD"))
    head = c.read_response(head_request=True)
    assert head.status == got.status == 200
    length = got.header("content-length")
    assert length is not None and int(length) > 0
    assert head.header("content-length") == length
    assert head.header("content-type") == got.header("content-type")
    assert head.header("transfer-encoding") is None
    # If the HEAD answer had carried body bytes, this would read them as a status line.
    c.send(get("/after-head"))
    after = c.read_response()
    assert after.status == 200
    assert after.body == echo("GET", "/after-head")


def test_head_for_app_with_explicit_content_length(start_server: StartServer) -> None:
    server = start_server(EXAMPLES / "hello.wsgi")
    c = client(server)
    c.send(get("/", method="HEAD") + get("/"))
    head = c.read_response(head_request=True)
    assert head.header("content-length") == "14"
    r = c.read_response()
    assert r.body == b"Hello, world!\n"


# --------------------------------------------------------------------------------------
# Malformed input and limits
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello
        b"GET / HTTP/1.1 extra\r\nHost: test\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: test\r\n\r\n",
    ],
    ids=["word", "tls", "extra-token", "bad-version"],
)
def test_garbage_request_line_gets_400_and_close(shared_echo: ServerProcess, data: bytes) -> None:
    server = shared_echo
    assert_rejected(send_and_read_all(server, data), 400)


@pytest.mark.parametrize(
    "header",
    [b"No colon here", b"Bad Name: x", b"X-Ctl: a\x00b", b" Leading: space"],
    ids=["no-colon", "space-in-name", "nul-in-value", "obs-fold-first"],
)
def test_bad_header_syntax_gets_400(shared_echo: ServerProcess, header: bytes) -> None:
    server = shared_echo
    raw = send_and_read_all(server, b"GET / HTTP/1.1\r\nHost: test\r\n" + header + b"\r\n\r\n")
    assert_rejected(raw, 400)


def test_http11_without_host_gets_400(shared_echo: ServerProcess) -> None:
    server = shared_echo
    assert_rejected(send_and_read_all(server, b"GET / HTTP/1.1\r\n\r\n"), 400)
    # HTTP/1.0 has no Host requirement.
    c = client(server)
    c.send(b"GET /ten HTTP/1.0\r\n\r\n")
    assert c.read_response().body == echo("GET", "/ten")


def test_two_host_headers_get_400(shared_echo: ServerProcess) -> None:
    server = shared_echo
    raw = send_and_read_all(server, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert_rejected(raw, 400)


def test_request_target_too_long_gets_414(start_server: StartServer) -> None:
    server = start_echo(start_server, "--limit-request-line", "100")
    ok = "/" + "a" * 99  # exactly at the limit
    c = client(server)
    c.send(get(ok))
    assert c.read_response().body == echo("GET", ok)
    raw = send_and_read_all(server, get("/" + "a" * 100))
    assert_rejected(raw, 414)


def test_too_many_header_fields_gets_431(start_server: StartServer) -> None:
    server = start_echo(start_server, "--limit-request-fields", "5")
    c = client(server)
    c.send(get("/ok", "A: 1", "B: 2", "C: 3", "D: 4"))  # Host + 4 = 5
    assert c.read_response().status == 200
    raw = send_and_read_all(server, get("/", "A: 1", "B: 2", "C: 3", "D: 4", "E: 5"))
    assert_rejected(raw, 431)


def test_header_field_too_large_gets_431(start_server: StartServer) -> None:
    server = start_echo(start_server, "--limit-request-field-size", "100")
    c = client(server)
    c.send(get("/ok", "X-Small: " + "y" * 50))
    assert c.read_response().status == 200
    raw = send_and_read_all(server, get("/", "X-Big: " + "y" * 200))
    assert_rejected(raw, 431)


def test_content_length_over_limit_gets_413_and_close(start_server: StartServer) -> None:
    server = start_echo(start_server, "--limit-request-body", "100")
    c = client(server)
    c.send(post("/ok", b"z" * 100))
    assert c.read_response().body == echo("POST", "/ok", b"z" * 100)
    # Only the head is sent: the server must decide from Content-Length alone.
    c = client(server)
    c.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 101\r\n\r\n")
    assert_rejected(c.rest_until_closed(), 413)


def test_chunked_body_growing_past_limit_gets_413(start_server: StartServer) -> None:
    server = start_echo(start_server, "--limit-request-body", "100")
    c = client(server)
    head = b"POST /grow HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    c.send(head + b"32\r\n" + b"x" * 50 + b"\r\n")
    c.send(b"32\r\n" + b"y" * 50 + b"\r\n")  # 100 bytes so far: still allowed
    c.send(b"1\r\nz\r\n")  # 101
    raw = c.rest_until_closed()
    assert_rejected(raw, 413)


def test_chunked_body_at_limit_is_accepted(start_server: StartServer) -> None:
    server = start_echo(start_server, "--limit-request-body", "100")
    c = client(server)
    body = b"x" * 100
    c.send(
        b"POST /fits HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"64\r\n" + body + b"\r\n0\r\n\r\n"
    )
    assert c.read_response().body == echo("POST", "/fits", body)


# --------------------------------------------------------------------------------------
# Request smuggling
# --------------------------------------------------------------------------------------


def test_content_length_with_transfer_encoding_gets_400_and_close(
    shared_echo: ServerProcess,
) -> None:
    server = shared_echo
    raw = send_and_read_all(
        server,
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    assert_rejected(raw, 400)
    assert b"smuggled" not in raw


def test_two_different_content_lengths_get_400(shared_echo: ServerProcess) -> None:
    server = shared_echo
    raw = send_and_read_all(
        server,
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    )
    assert_rejected(raw, 400)


@pytest.mark.parametrize("value", [b"5x", b"-5", b"+5", b"0x5", b"5 5", b"5,6"])
def test_invalid_content_length_gets_400(shared_echo: ServerProcess, value: bytes) -> None:
    server = shared_echo
    raw = send_and_read_all(
        server, b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: " + value + b"\r\n\r\nhello"
    )
    assert_rejected(raw, 400)


@pytest.mark.parametrize("coding", [b"gzip", b"chunked, gzip", b"identity"])
def test_transfer_encoding_not_ending_in_chunked_gets_400(
    start_server: StartServer, coding: bytes
) -> None:
    # RFC 9112 6.3: the body length cannot be known; 400 and close.
    server = start_echo(start_server)
    raw = send_and_read_all(
        server, b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: " + coding + b"\r\n\r\nhello"
    )
    assert_rejected(raw, 400)


def test_request_inside_a_body_is_not_answered(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    inner = b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n"
    c.send(post("/outer", inner) + get("/after", "Connection: close"))
    r = c.read_response()
    assert r.body == echo("POST", "/outer", inner)
    r = c.read_response()
    assert r.body == echo("GET", "/after")
    assert c.rest_until_closed() == b""


def test_request_inside_a_chunked_body_is_not_answered(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    inner = b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n"
    c.send(
        b"POST /outer HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%b\r\n0\r\n\r\n" % (len(inner), inner)
        + get("/after", "Connection: close")
    )
    assert c.read_response().body == echo("POST", "/outer", inner)
    assert c.read_response().body == echo("GET", "/after")
    assert c.rest_until_closed() == b""


def test_unread_body_is_not_parsed_as_a_request(start_server: StartServer) -> None:
    # The app ignores the body; the server must skip it, not parse it as a request.
    server = start_echo(start_server)
    c = client(server)
    inner = b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n"
    c.send(post("/noread", inner) + get("/after", "Connection: close"))
    r = c.read_response()
    assert r.status == 200
    assert r.body == b"did not read the body\n"
    if not r.closes:
        # The server may keep the connection by reading past the body; then the next
        # thing it answers must be the real second request.
        r = c.read_response()
        assert r.body == echo("GET", "/after")
    assert c.rest_until_closed() == b""


# --------------------------------------------------------------------------------------
# Timeouts and the connection cap
# --------------------------------------------------------------------------------------


def test_partial_head_times_out_with_408(start_server: StartServer) -> None:
    server = start_echo(start_server, "--header-timeout", "0.5")
    c = client(server)
    started = time.monotonic()
    c.send(b"GET /slow HTTP/1.1\r\nHost: test\r\nX-Partial: ")
    raw = c.rest_until_closed()  # raises TimeoutError after WAIT if never closed
    elapsed = time.monotonic() - started
    assert elapsed >= 0.4, f"closed after {elapsed:.2f} s, before the header timeout"
    if raw:
        assert_rejected(raw, 408)


def test_slowloris_trickling_bytes_still_times_out(start_server: StartServer) -> None:
    server = start_echo(start_server, "--header-timeout", "0.5")
    c = client(server)
    started = time.monotonic()
    c.send(b"GET /slow HTTP/1.1\r\nHost: test\r\nX-Trickle: ")
    # One header byte every 0.1 s never finishes a head; it must not keep the connection
    # open much past the header timeout (generous bound: 4x).
    answered = False
    c.sock.settimeout(0.1)
    while not answered and time.monotonic() - started < 2.0:
        try:
            c.sock.sendall(b"X")
            answered = not c._more() or bool(c.buf)
        except TimeoutError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            answered = True
    elapsed = time.monotonic() - started
    assert answered, "the connection was still open 2 s into a 0.5 s header timeout"
    assert elapsed >= 0.4
    c.sock.settimeout(WAIT)
    raw = c.rest_until_closed()
    if raw:
        assert_rejected(raw, 408)


def test_silent_connection_is_closed_after_header_timeout(start_server: StartServer) -> None:
    server = start_echo(start_server, "--header-timeout", "0.5")
    c = client(server)
    started = time.monotonic()
    raw = c.rest_until_closed()
    assert time.monotonic() - started >= 0.4
    if raw:
        assert_rejected(raw, 408)


def test_idle_keep_alive_connection_is_closed_after_timeout(start_server: StartServer) -> None:
    server = start_echo(start_server, "--keep-alive-timeout", "0.5")
    c = client(server)
    c.send(get("/once"))
    r = c.read_response()
    assert r.body == echo("GET", "/once")
    assert not r.closes
    answered = time.monotonic()
    assert c.closed(timeout=WAIT), "idle connection still open"
    assert time.monotonic() - answered >= 0.4


def test_keep_alive_timeout_does_not_cut_an_active_connection(start_server: StartServer) -> None:
    server = start_echo(start_server, "--keep-alive-timeout", "0.5")
    c = client(server)
    # Requests keep arriving more often than the timeout: the connection lives on.
    for i in range(4):
        c.send(get(f"/r{i}"))
        assert c.read_response().body == echo("GET", f"/r{i}")
        assert not c.closed(timeout=0.2)


def test_third_connection_over_max_connections_gets_503(start_server: StartServer) -> None:
    server = start_echo(start_server, "--max-connections", "2")
    first, second = client(server), client(server)
    for i, c in enumerate((first, second)):
        c.send(get(f"/held{i}"))
        assert c.read_response().status == 200
    third = client(server)
    raw = third.rest_until_closed()
    assert raw.startswith(b"HTTP/1.1 503 "), raw
    assert b"\r\nconnection: close" in raw.lower()
    # The two held connections are unaffected.
    first.send(get("/still"))
    assert first.read_response().body == echo("GET", "/still")
    # Once one closes, a new connection is served again (poll: the server notices the
    # close asynchronously).
    second.close()
    deadline = time.monotonic() + WAIT
    while True:
        c = client(server)
        c.send(get("/again"))
        r = c.read_response()
        if r.status == 200:
            assert r.body == echo("GET", "/again")
            break
        assert r.status == 503
        assert time.monotonic() < deadline, "a slot never came free"
        c.close()
        time.sleep(0.02)


# --------------------------------------------------------------------------------------
# Server headers and half-closed clients
# --------------------------------------------------------------------------------------

IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d\d:\d\d:\d\d GMT"
)


def test_date_and_server_headers(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    for request in (get("/"), get("/stream"), post("/p", b"x")):
        c.send(request)
        r = c.read_response()
        assert r.header("server") == "asyncwsgi"
        assert len(r.header_list("date")) == 1
        date = r.header("date")
        assert date is not None and IMF_FIXDATE.fullmatch(date), date
        when = email.utils.parsedate_to_datetime(date)
        assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 60
    # Errors the server answers itself carry them too.
    raw = send_and_read_all(server, b"BAD\r\n\r\n")
    assert re.search(rb"\r\nDate: " + IMF_FIXDATE.pattern.encode() + rb"\r\n", raw)
    assert b"\r\nServer: asyncwsgi\r\n" in raw


def test_half_closed_client_gets_full_response(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(post("/half", b"y" * 1000))
    c.sock.shutdown(socket.SHUT_WR)
    r = c.read_response()
    assert r.status == 200
    assert r.body == echo("POST", "/half", b"y" * 1000)
    assert c.closed()


def test_half_closed_client_gets_every_pipelined_response(start_server: StartServer) -> None:
    server = start_echo(start_server)
    c = client(server)
    c.send(get("/one") + post("/two", b"2" * 300) + get("/stream"))
    c.sock.shutdown(socket.SHUT_WR)
    assert c.read_response().body == echo("GET", "/one")
    assert c.read_response().body == echo("POST", "/two", b"2" * 300)
    assert c.read_response().body == b"abbccc"
    assert c.closed()
