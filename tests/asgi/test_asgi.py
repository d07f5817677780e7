"""``asyncwsgi.WSGIApp`` in-process: PEP 3333 through ASGI, flow control, disconnects,
lifespan and script reloading, under asyncio and trio.

Requests go through ``httpx.ASGITransport`` where a whole response is enough, and
through a scripted host (plain ``receive``/``send`` coroutines) where the test must
control when body bytes arrive, when ``send`` is slow or fails, or when the client goes.
Each test runs its coroutine with ``anyio.run`` on the backend it is parametrized with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

import anyio
import httpx
import pytest

from asyncwsgi import WSGIApp
from asyncwsgi.asgi.scope import request_path, response_start
from asyncwsgi.errors import ConfigError, ScriptLoadError
from tests.apps import asgi_wsgi_apps as apps

Message = dict[str, Any]
BACKENDS = ["asyncio", "trio"]


# -- helpers -----------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bridge() -> Iterator[WSGIApp]:
    app = WSGIApp(apps.application, threads=4)
    yield app
    app.close()


@pytest.fixture(autouse=True)
def _clear_events() -> None:
    apps.EVENTS.clear()


def run(backend: str, fn: Callable[[], Awaitable[None]]) -> None:
    anyio.run(fn, backend=backend)


def client(app: Any, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def bridge_threads() -> int:
    return sum(t.name.startswith("asyncwsgi-asgi") for t in threading.enumerate())


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """``wait_until`` for async tests: polls without blocking the event loop."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


def scope_for(
    path: str,
    *,
    method: str = "GET",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    root_path: str = "",
) -> Message:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": root_path,
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


class Host:
    """A scripted ASGI host for one request.

    ``body`` chunks are delivered by ``receive`` (each after ``delay`` seconds); then
    ``receive`` blocks until the test calls :meth:`disconnect` (or returns
    ``http.disconnect`` at once with ``disconnect_after_body``). ``send`` records
    messages, sleeps ``send_delay`` per message, raises ``OSError`` from message number
    ``fail_send_at`` on, and blocks forever with ``block_send``.
    """

    def __init__(
        self,
        body: list[bytes] | None = None,
        *,
        delay: float = 0.0,
        disconnect_after_body: bool = False,
        send_delay: float = 0.0,
        fail_send_at: int = -1,
        block_send: bool = False,
        disconnect_after_sends: int = -1,
    ) -> None:
        self.body = list(body or [])
        self.delay = delay
        self.disconnect_after_body = disconnect_after_body
        self.send_delay = send_delay
        self.fail_send_at = fail_send_at
        self.block_send = block_send
        self.disconnect_after_sends = disconnect_after_sends
        self.messages: list[Message] = []
        self.receives = 0
        self._gone: anyio.Event | None = None

    def disconnect(self) -> None:
        if self._gone is None:
            self._gone = anyio.Event()
        self._gone.set()

    async def receive(self) -> Message:
        self.receives += 1
        if self.delay:
            await anyio.sleep(self.delay)
        if self.body:
            chunk = self.body.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.body)}
        if self.receives == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        if not self.disconnect_after_body:
            if self._gone is None:
                self._gone = anyio.Event()
            await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if len(self.messages) == self.fail_send_at:
            raise OSError("host: connection lost")
        if self.block_send and message["type"] == "http.response.body":
            await anyio.sleep_forever()
        if self.send_delay:
            await anyio.sleep(self.send_delay)
        self.messages.append(message)
        if len(self.messages) == self.disconnect_after_sends:
            self.disconnect()

    @property
    def status(self) -> int | None:
        for message in self.messages:
            if message["type"] == "http.response.start":
                return int(message["status"])
        return None

    @property
    def headers(self) -> dict[bytes, bytes]:
        for message in self.messages:
            if message["type"] == "http.response.start":
                return dict(message["headers"])
        return {}

    @property
    def body_bytes(self) -> bytes:
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )

    @property
    def complete(self) -> bool:
        return any(
            m["type"] == "http.response.body" and not m.get("more_body") for m in self.messages
        )


async def chunked(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    """``data`` in pieces of the given sizes (cycled), to cross chunk borders."""
    i = pos = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        yield data[pos : pos + size]
        pos += size
        i += 1


# -- construction --------------------------------------------------------------------------


def test_daemon_mode_needs_an_importable_application() -> None:
    with pytest.raises(ConfigError, match="not a callable"):
        WSGIApp(apps.application, daemon={"processes": 2, "threads": 8})


@pytest.mark.parametrize(
    ("daemon", "match"),
    [
        ({"processes": 0}, "daemon: processes: must be a positive whole number, not 0"),
        ({"procesess": 2}, "unknown setting 'procesess'"),
        ({"threads": "8"}, "daemon: threads: must be a positive whole number, not '8'"),
        ({"graceful_timeout": -1}, "graceful_timeout: must be a positive number of seconds"),
        ("yes", "pass True, a number of processes"),
    ],
)
def test_bad_daemon_settings_are_named(daemon: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        WSGIApp("asgi_wsgi_apps:application", daemon=daemon)


def test_daemon_log_level_is_taken_in_any_case() -> None:
    # The daemons' logging takes "DEBUG" as well as "debug", as it always did.
    app = WSGIApp("asgi_wsgi_apps:application", daemon={"log_level": "DEBUG"})
    assert app._daemons is not None and app._daemons.log_level == "debug"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"threads": 0}, "threads"),
        ({"threads": True}, "threads"),
        ({"callable": "not an identifier"}, "callable"),
        ({"script_reloading": "yes"}, "script_reloading"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        WSGIApp(apps.application, **options)


def test_a_script_that_does_not_load_fails_at_construction(tmp_path: Path) -> None:
    script = tmp_path / "broken.wsgi"
    script.write_text("def application(:\n")
    with pytest.raises(ScriptLoadError):
        WSGIApp(str(script))
    with pytest.raises(ScriptLoadError):
        WSGIApp(tmp_path / "missing.wsgi")


def test_module_attr_target_and_callable_name(backend: str) -> None:
    app = WSGIApp("tests.apps.asgi_wsgi_apps", callable="app_hello", threads=1)

    async def main() -> None:
        async with client(app) as c:
            response = await c.get("/anything")
        assert response.text == "Hello, world!\n"

    try:
        run(backend, main)
    finally:
        app.close()


# -- pure helpers ------------------------------------------------------------------------


def test_request_path_prefers_raw_path_when_it_agrees() -> None:
    scope = scope_for("/caf\xe9")
    scope["raw_path"] = b"/caf%C3%A9"
    assert request_path(scope) == b"/caf%C3%A9"
    # Bytes that are not UTF-8 survive only in raw_path.
    scope = scope_for("/a\ufffdb")
    scope["raw_path"] = b"/a%FFb"
    assert request_path(scope) == b"/a%FFb"
    # A rewritten path wins over a stale raw_path; a literal % stays literal.
    scope = scope_for("/100%")
    scope["raw_path"] = b"/other"
    assert request_path(scope) == b"/100%25"


def test_response_start_framing() -> None:
    start, length, allowed = response_start(
        "200 OK",
        [("Content-Type", "text/plain"), ("Connection", "close"), ("Keep-Alive", "5")],
        is_head=False,
        body_length=5,
    )
    assert start["headers"] == [
        (b"content-type", b"text/plain"),
        (b"connection", b"close"),
        (b"content-length", b"5"),
    ]
    assert (length, allowed) == (5, True)
    start, length, allowed = response_start(
        "304 Not Modified", [("Content-Length", "99")], is_head=False, body_length=0
    )
    assert start["headers"] == [] and (length, allowed) == (-1, False)
    start, _, allowed = response_start("200 OK", [], is_head=True, body_length=14)
    assert start["headers"] == [(b"content-length", b"14")] and not allowed
    with pytest.raises(ValueError, match="Content-Length"):
        response_start("200 OK", [("Content-Length", "+5")], is_head=False, body_length=-1)
    with pytest.raises(ValueError, match="two different"):
        response_start(
            "200 OK", [("Content-Length", "5"), ("Content-Length", "6")], is_head=False,
            body_length=-1,
        )  # fmt: skip


# -- PEP 3333 through ASGI -----------------------------------------------------------------


def test_hello(bridge: WSGIApp, backend: str) -> None:
    async def main() -> None:
        async with client(bridge) as c:
            response = await c.get("/hello")
        assert response.status_code == 200
        assert response.text == "Hello, world!\n"
        assert response.headers["content-type"] == "text/plain"
        assert response.headers["content-length"] == "14"

    run(backend, main)


def test_environ_from_the_scope(bridge: WSGIApp, backend: str) -> None:
    async def main() -> None:
        async with client(bridge, root_path="/mnt") as c:
            response = await c.post(
                "/mnt/environ?x=1%202&y",
                content=b"abc",
                headers={
                    "Content-Type": "text/x-test",
                    "X-Custom": "one",
                    "X_Forwarded_For": "evil",
                    "Cookie": "a=1",
                },
            )
        env = response.json()
        assert env["REQUEST_METHOD"] == "POST"
        assert env["SCRIPT_NAME"] == "/mnt"
        assert env["PATH_INFO"] == "/environ"
        assert env["QUERY_STRING"] == "x=1%202&y"
        assert env["REQUEST_URI"] == "/mnt/environ?x=1%202&y"
        assert env["CONTENT_TYPE"] == "text/x-test"
        assert env["CONTENT_LENGTH"] == "3"
        assert env["HTTP_X_CUSTOM"] == "one"
        assert env["HTTP_COOKIE"] == "a=1"
        # An underscore header would pose as X-Forwarded-For: dropped, as by the server.
        assert "HTTP_X_FORWARDED_FOR" not in env
        assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
        assert env["wsgi.url_scheme"] == "http"
        assert env["wsgi.input_terminated"] is True
        assert env["wsgi.version"] == [1, 0]
        assert env["SERVER_NAME"] == "testserver" and env["SERVER_PORT"] == "80"
        assert env["REMOTE_ADDR"] == "127.0.0.1"

    run(backend, main)


def test_path_info_is_percent_decoded_latin1_of_utf8(backend: str) -> None:
    seen: list[dict[str, str]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append({k: environ[k] for k in ("SCRIPT_NAME", "PATH_INFO", "REQUEST_URI")})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    bridge = WSGIApp(app, threads=1)

    async def main() -> None:
        async with client(bridge, root_path="/m\xfcnt") as c:
            await c.get("/m%C3%BCnt/caf%C3%A9/a%2Fb")
            # A path outside root_path (a host that strips the prefix itself) is kept.
            await c.get("/elsewhere")

    try:
        run(backend, main)
    finally:
        bridge.close()
    assert seen == [
        {
            "SCRIPT_NAME": "/m\xc3\xbcnt",
            "PATH_INFO": "/caf\xc3\xa9/a/b",
            "REQUEST_URI": "/m%C3%BCnt/caf%C3%A9/a%2Fb",
        },
        {"SCRIPT_NAME": "/m\xc3\xbcnt", "PATH_INFO": "/elsewhere", "REQUEST_URI": "/elsewhere"},
    ]


LINES = b"".join(b"line %d %s\n" % (i, b"x" * (i * 37 % 300)) for i in range(400)) + b"tail"


@pytest.mark.parametrize("sizes", [[1], [7, 1, 300], [65536]])
def test_body_reading_across_chunk_borders(bridge: WSGIApp, backend: str, sizes: list[int]) -> None:
    expected_lines = LINES.splitlines(keepends=True)

    async def main() -> None:
        async with client(bridge) as c:
            echo = await c.post("/echo", content=chunked(LINES, sizes))
            blocks = await c.post("/read-blocks?n=1000", content=chunked(LINES, sizes))
            lines = await c.post("/readlines", content=chunked(LINES, sizes))
            iterated = await c.post("/iterate", content=chunked(LINES, sizes))
        assert echo.content == LINES
        assert blocks.json() == {
            "blocks": -(-len(LINES) // 1000),
            "exact": True,
            "sha": hashlib.sha256(LINES).hexdigest(),
        }
        assert [line.encode("latin-1") for line in lines.json()] == expected_lines
        assert [line.encode("latin-1") for line in iterated.json()] == expected_lines

    run(backend, main)


def test_readlines_hint_counts_bytes(bridge: WSGIApp, backend: str) -> None:
    # a2wsgi returns `hint` lines; PEP 3333/io say: stop once the lines total >= hint bytes.
    async def main() -> None:
        async with client(bridge) as c:
            response = await c.post("/readlines?hint=3", content=b"a\nb\nc\nd\n")
            big = await c.post("/readlines?hint=10", content=b"0123456789abc\nnext\n")
        assert response.json() == ["a\n", "b\n"]
        assert big.json() == ["0123456789abc\n"]

    run(backend, main)


@pytest.mark.parametrize(
    ("size", "first"), [(100, "first line\n"), (4, "firs"), (-1, "first line\n")]
)
def test_readline_before_any_body_waits_for_data(
    bridge: WSGIApp, backend: str, size: int, first: str
) -> None:
    # a2wsgi's readline(size) returns b"" when its buffer is empty: a truncated line.
    body = [b"first ", b"line\nsecond line\n"]

    async def main() -> None:
        host = Host(body, delay=0.05)
        scope = scope_for(
            "/readline",
            method="POST",
            query=b"size=%d" % size,
            headers=[(b"content-length", b"%d" % sum(map(len, body)))],
        )
        await bridge(scope, host.receive, host.send)
        assert host.status == 200
        data = json.loads(host.body_bytes)
        assert data["first"] == first
        assert len(first) + data["rest"] == sum(map(len, body))

    run(backend, main)


def test_disconnect_while_reading_the_body_is_an_error_in_read(
    bridge: WSGIApp, backend: str
) -> None:
    # a2wsgi hands the application a silently truncated body.
    async def main() -> None:
        host = Host([b"x" * 1000, b"y" * 1000], disconnect_after_body=True)
        scope = scope_for("/read-outcome", method="POST", headers=[(b"content-length", b"5000")])

        async def receive() -> Message:
            message = await host.receive()
            if message["type"] == "http.request" and not message["more_body"]:
                message["more_body"] = True  # the client promised 5000 bytes
            return message

        await bridge(scope, receive, host.send)
        assert not host.complete

    run(backend, main)
    wait_until(lambda: bridge.busy_threads == 0)
    assert apps.EVENTS == ["read error ClientDisconnected"]


def test_exc_info_before_the_head_replaces_the_response(bridge: WSGIApp, backend: str) -> None:
    async def main() -> None:
        async with client(bridge) as c:
            response = await c.get("/exc-info")
        assert response.status_code == 503
        assert response.text == "replaced by exc_info\n"
        assert "x-first" not in response.headers

    run(backend, main)


def test_exc_info_after_the_head_ends_the_response(
    bridge: WSGIApp, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        host = Host()
        await bridge(scope_for("/exc-info-late"), host.receive, host.send)
        assert host.status == 200
        assert host.body_bytes == b"first part\n"
        assert not host.complete  # the host closes the connection

    with caplog.at_level(logging.ERROR, "asyncwsgi.error"):
        run(backend, main)
    assert "error in WSGI application" in caplog.text


def test_application_errors(bridge: WSGIApp, backend: str) -> None:
    async def main() -> None:
        async with client(bridge) as c:
            before = await c.get("/error-before")
        assert before.status_code == 500
        assert before.text == "Internal Server Error\n"
        host = Host()
        await bridge(scope_for("/error-after"), host.receive, host.send)
        assert host.status == 200 and host.body_bytes == b"one\ntwo\n"
        assert not host.complete

    run(backend, main)
    wait_until(lambda: apps.count("close error-after") == 1)


def test_write_callable_and_close(bridge: WSGIApp, backend: str) -> None:
    async def main() -> None:
        async with client(bridge) as c:
            written = await c.get("/write")
            streamed = await c.get("/stream?n=3")
        assert written.text == "written then returned\n"
        assert streamed.text == "chunk 0\nchunk 1\nchunk 2\n"
        assert "content-length" not in streamed.headers  # streamed: the host frames it

    run(backend, main)
    wait_until(lambda: apps.count("close stream") == 1)


def test_head_status_and_length_rules(bridge: WSGIApp, backend: str) -> None:
    async def main() -> None:
        host = Host()
        await bridge(scope_for("/hello", method="HEAD"), host.receive, host.send)
        assert host.status == 200 and host.body_bytes == b"" and host.complete
        assert host.headers[b"content-length"] == b"14"
        for code in ("204", "304"):
            host = Host()
            await bridge(
                scope_for("/status", query=b"code=" + code.encode()), host.receive, host.send
            )
            assert host.status == int(code) and host.body_bytes == b"" and host.complete
            assert b"content-length" not in host.headers
        host = Host()
        await bridge(scope_for("/long"), host.receive, host.send)
        assert host.body_bytes == b"12345" and host.complete
        host = Host()
        await bridge(scope_for("/short"), host.receive, host.send)
        assert host.body_bytes == b"12345" and not host.complete  # the host closes

    run(backend, main)


def test_headers_are_lowercased_and_hop_by_hop_dropped(bridge: WSGIApp, backend: str) -> None:
    async def main() -> None:
        host = Host()
        await bridge(scope_for("/headers"), host.receive, host.send)
        start = host.messages[0]
        assert start["headers"] == [
            (b"content-type", b"text/plain"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
            (b"x-mixed-case", b"Value"),
            (b"content-length", b"8"),
        ]

    run(backend, main)


def test_file_wrapper(bridge: WSGIApp, backend: str) -> None:
    async def main() -> None:
        async with client(bridge) as c:
            response = await c.get("/file?size=300000")
        assert response.headers["content-length"] == "300000"
        assert response.content == bytes(i % 251 for i in range(300000))

    run(backend, main)


def test_wsgiref_validator_passes(backend: str, caplog: pytest.LogCaptureFixture) -> None:
    bridge = WSGIApp(validator(apps.application), threads=2)

    async def main() -> None:
        async with client(bridge) as c:
            for method, path, body in [
                ("GET", "/hello", b""),
                ("POST", "/upload", LINES),
                ("POST", "/readlines", LINES),
                ("POST", "/read-blocks?n=333", LINES),
                ("GET", "/stream?n=4", b""),
                ("GET", "/write", b""),
                ("GET", "/file?size=1000", b""),
                ("GET", "/environ", b""),
            ]:
                response = await c.request(method, path, content=body)
                assert response.status_code == 200, (path, response.text)

    try:
        with caplog.at_level(logging.ERROR, "asyncwsgi.error"):
            run(backend, main)
    finally:
        bridge.close()
    assert "AssertionError" not in caplog.text


# -- flow control --------------------------------------------------------------------------


def test_a_slow_host_holds_the_worker_back(backend: str) -> None:
    produced = 0

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        nonlocal produced
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        while True:
            produced += 1
            yield b"z" * 16384

    bridge = WSGIApp(app, threads=1)

    async def main() -> None:
        host = Host(send_delay=0.002, disconnect_after_sends=41)
        await bridge(scope_for("/"), host.receive, host.send)
        sent = len(host.messages) - 1
        # The worker ran ahead of the host by at most the write buffer (256 KiB).
        assert sent <= produced <= sent + 256 * 1024 // 16384 + 3

    try:
        run(backend, main)
        wait_until(lambda: bridge.busy_threads == 0)
    finally:
        bridge.close()


def test_request_body_is_read_ahead_only_so_far(backend: str) -> None:
    release = threading.Event()
    received = 0

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        nonlocal received
        stream = environ["wsgi.input"]
        received += len(stream.read(1))
        release.wait(10)
        received += len(stream.read())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d" % received]

    bridge = WSGIApp(app, threads=1)
    chunk = b"b" * 65536
    total = 64

    async def main() -> None:
        host = Host([chunk] * total)
        scope = scope_for(
            "/", method="POST", headers=[(b"content-length", b"%d" % (len(chunk) * total))]
        )
        async with anyio.create_task_group() as group:
            group.start_soon(bridge, scope, host.receive, host.send)
            await until(lambda: host.receives >= 4)
            await anyio.sleep(0.2)
            # 256 KiB of read-ahead in 64 KiB messages, and no more: the host stopped
            # being asked, so it would stop reading the socket.
            assert host.receives <= 256 * 1024 // 65536 + 2
            release.set()
        assert host.body_bytes == b"%d" % (len(chunk) * total)

    try:
        run(backend, main)
    finally:
        release.set()
        bridge.close()


def test_a_body_nobody_reads_is_never_asked_for(bridge: WSGIApp, backend: str) -> None:
    # An Expect: 100-continue client only sends its body once the host calls receive().
    async def main() -> None:
        host = Host([b"x" * 10])
        headers = [(b"content-length", b"10"), (b"expect", b"100-continue")]
        await bridge(scope_for("/hello", method="POST", headers=headers), host.receive, host.send)
        assert host.status == 200 and host.receives == 0
        host = Host([b"x" * 10])
        await bridge(scope_for("/stream", method="POST", headers=headers), host.receive, host.send)
        assert host.complete and host.receives == 0

    run(backend, main)


# -- disconnects never strand a worker ---------------------------------------------------


def test_a_worker_blocked_on_a_stuck_host_is_freed_by_the_disconnect(backend: str) -> None:
    bridge = WSGIApp(apps.application, threads=2)

    async def main() -> None:
        host = Host(block_send=True)
        async with anyio.create_task_group() as group:
            group.start_soon(bridge, scope_for("/infinite"), host.receive, host.send)
            await until(lambda: host.status == 200)
            await anyio.sleep(0.1)
            assert bridge.busy_threads == 1  # waiting for the host to take its bytes
            host.disconnect()
            await until(lambda: bridge.busy_threads == 0)
            group.cancel_scope.cancel()  # the stuck send() itself is the host's business

    try:
        run(backend, main)
    finally:
        bridge.close()
    assert apps.count("close infinite") == 1


def test_a_cancelled_request_frees_its_worker(backend: str) -> None:
    bridge = WSGIApp(apps.application, threads=2)

    async def main() -> None:
        for path, host in [
            ("/infinite", Host(block_send=True)),
            ("/read-outcome", Host(delay=30)),  # blocked reading the body
        ]:
            headers = [(b"content-length", b"10")]
            with anyio.move_on_after(0.2):
                await bridge(
                    scope_for(path, method="POST", headers=headers), host.receive, host.send
                )
            await until(lambda: bridge.busy_threads == 0)

    try:
        run(backend, main)
    finally:
        bridge.close()
    assert sorted(apps.EVENTS) == ["close infinite", "read error ClientDisconnected"]


def _aborted_requests(bridge: WSGIApp, n: int, concurrency: int) -> Callable[[], Awaitable[None]]:
    """``n`` requests for an endless stream, half ending in a failing send(), half in a
    client disconnect while send() stays silent (as uvicorn's does)."""

    async def one(i: int) -> None:
        host = Host(fail_send_at=3) if i % 2 else Host(disconnect_after_sends=3)
        await bridge(scope_for("/infinite", query=b"size=65536"), host.receive, host.send)
        assert host.status == 200 and not host.complete

    async def main() -> None:
        for start in range(0, n, concurrency):
            async with anyio.create_task_group() as group:
                for i in range(start, min(n, start + concurrency)):
                    group.start_soon(one, i)

    return main


@pytest.mark.parametrize(("backend_name", "n"), [("asyncio", 10_000), ("trio", 2_000)])
def test_no_worker_leaks_after_aborted_requests(backend_name: str, n: int) -> None:
    baseline = threading.active_count()
    bridge = WSGIApp(apps.application, threads=8)
    try:
        run(backend_name, _aborted_requests(bridge, n, concurrency=50))
        wait_until(lambda: bridge.busy_threads == 0)
        wait_until(lambda: apps.count("close infinite") == n)
        assert bridge_threads() == 8
        assert threading.active_count() == baseline + 8

        async def still_serving() -> None:
            async with client(bridge) as c:
                responses = [await c.get("/hello") for _ in range(20)]
            assert all(r.text == "Hello, world!\n" for r in responses)

        run(backend_name, still_serving)
    finally:
        assert bridge.close(timeout=5) == []
    assert threading.active_count() == baseline


# -- lifespan and other scopes -------------------------------------------------------------


def test_lifespan_starts_and_stops_the_pool(backend: str) -> None:
    bridge = WSGIApp(apps.application, threads=3)
    before = bridge_threads()

    async def main() -> None:
        to_app = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[Message] = []
        started = anyio.Event()

        async def receive() -> Message:
            if len(to_app) == 1:
                await started.wait()
            return to_app.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)
            if message["type"] == "lifespan.startup.complete":
                assert bridge_threads() == before + 3
                async with client(bridge) as c:
                    assert (await c.get("/hello")).status_code == 200
                started.set()

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        await bridge(scope, receive, send)
        assert [m["type"] for m in sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]

    run(backend, main)
    assert bridge_threads() == before


def test_websocket_is_refused_and_unknown_scopes_raise(bridge: WSGIApp, backend: str) -> None:
    async def main() -> None:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "websocket.connect"}

        async def send(message: Message) -> None:
            sent.append(message)

        await bridge({"type": "websocket", "path": "/"}, receive, send)
        assert sent == [{"type": "websocket.close", "code": 1000}]
        with pytest.raises(NotImplementedError):
            await bridge({"type": "telepathy"}, receive, send)

    run(backend, main)


# -- inside Starlette and FastAPI ----------------------------------------------------------


def test_mounted_in_starlette_and_fastapi(bridge: WSGIApp, backend: str) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    starlette_app = Starlette(routes=[Mount("/legacy", app=bridge)])
    fastapi = pytest.importorskip("fastapi")
    fastapi_app = fastapi.FastAPI()
    fastapi_app.mount("/wsgi/v1", bridge)

    async def main() -> None:
        async with client(starlette_app) as c:
            env = (await c.get("/legacy/environ?q=1")).json()
        assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"]) == (
            "/legacy",
            "/environ",
            "q=1",
        )
        async with client(fastapi_app) as c:
            env = (await c.get("/wsgi/v1/environ")).json()
            upload = await c.post("/wsgi/v1/upload", content=b"u" * 100000)
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/wsgi/v1", "/environ")
        assert upload.text == f"100000 {hashlib.sha256(b'u' * 100000).hexdigest()}\n"

    run(backend, main)


# -- script reloading ----------------------------------------------------------------------

SCRIPT = """
VERSION = {version!r}

def application(environ, start_response):
    body = VERSION.encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


def write_script(path: Path, version: str) -> None:
    before = os.stat(path).st_mtime_ns if path.exists() else 0
    path.write_text(SCRIPT.format(version=version))
    # A same-size edit in the same clock tick must still count as a change.
    os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


async def get_all(app: WSGIApp, n: int, path: str = "/") -> list[Host]:
    """``n`` requests started in one event-loop tick."""
    hosts = [Host() for _ in range(n)]
    async with anyio.create_task_group() as group:
        for host in hosts:
            group.start_soon(app, scope_for(path), host.receive, host.send)
    return hosts


def test_reload_in_the_same_request_once_per_change(tmp_path: Path, backend: str) -> None:
    script = tmp_path / "app.wsgi"
    write_script(script, "v1")
    bridge = WSGIApp(script, threads=4)
    source: Any = bridge.source

    async def main() -> None:
        hosts = await get_all(bridge, 20)
        assert {h.body_bytes for h in hosts} == {b"v1"}
        # Every request of one tick shares one stat.
        stats = source.stat_calls
        await get_all(bridge, 20)
        assert source.stat_calls - stats == 1

        write_script(script, "v2")
        imports = source.imports
        hosts = await get_all(bridge, 20)
        # The requests that saw the change are served by the new code, imported once.
        assert {h.body_bytes for h in hosts} == {b"v2"}
        assert source.imports == imports + 1

        write_script(script, "v3")
        async with client(bridge) as c:
            assert (await c.get("/")).text == "v3"  # the very request that saw the change

    try:
        run(backend, main)
    finally:
        bridge.close()


@pytest.mark.parametrize("keep", [False, True], ids=["error", "keep"])
def test_a_broken_reload_answers_500_or_the_last_good_version_until_fixed(
    tmp_path: Path, backend: str, keep: bool
) -> None:
    script = tmp_path / "app.wsgi"
    write_script(script, "v1")
    bridge = WSGIApp(script, threads=2, reload_failure="keep" if keep else "error")
    source: Any = bridge.source

    async def main() -> None:
        async with client(bridge) as c:
            assert (await c.get("/")).text == "v1"
            before = script.stat().st_mtime_ns
            script.write_text("def application(:\n")
            os.utime(script, ns=(before + 10**6, before + 10**6))
            imports = source.imports
            for _ in range(3):
                response = await c.get("/")
                if keep:
                    assert response.status_code == 200 and response.text == "v1"
                else:
                    assert response.status_code == 500
                    assert response.text == "Internal Server Error\n"
            assert source.imports == imports + 1  # the failure is remembered
            write_script(script, "v2")
            assert (await c.get("/")).text == "v2"

    try:
        run(backend, main)
    finally:
        bridge.close()


def test_reloading_off_never_stats(tmp_path: Path, backend: str) -> None:
    script = tmp_path / "app.wsgi"
    write_script(script, "v1")
    bridge = WSGIApp(str(script), script_reloading=False, threads=2)
    source: Any = bridge.source

    async def main() -> None:
        write_script(script, "v2")
        hosts = await get_all(bridge, 10)
        assert {h.body_bytes for h in hosts} == {b"v1"}
        assert source.stat_calls == 0

    try:
        run(backend, main)
    finally:
        bridge.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_disconnect_heard_while_a_large_body_goes_unread(backend: str) -> None:
    """A streamed response to a request whose (large) body the application never reads:
    on hosts whose send() stays silent after a disconnect, receive() is the only way to
    hear of it, so the bridge keeps calling it and the endless response stops."""
    closed = threading.Event()

    def endless(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen() -> Any:
            try:
                while True:
                    yield b"tick\n"
                    time.sleep(0.005)
            finally:
                closed.set()

        return gen()

    class SilentHost(Host):
        async def send(self, message: Message) -> None:
            if self._gone is not None and self._gone.is_set():
                return  # uvicorn: send() after a disconnect does nothing
            await super().send(message)

    async def main() -> bool:
        bridge = WSGIApp(endless, threads=2)
        host = SilentHost([b"b" * 65536] * 8, disconnect_after_sends=5)
        headers = [(b"content-length", b"524288")]
        ended = False
        with anyio.move_on_after(5):
            await bridge(scope_for("/", method="POST", headers=headers), host.receive, host.send)
            ended = True
        bridge.close(2)
        return ended

    assert anyio.run(main, backend=backend) is True
    assert closed.wait(5), "the application's iterable was never closed"
