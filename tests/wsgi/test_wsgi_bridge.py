"""The WSGI bridge end to end, over real sockets: PEP 3333 as an application sees it.

Apps live in tests/apps/wsgi_bridge_apps.py (dispatched on PATH_INFO) and
tests/apps/wsgi_flask_app.py. Events that happen after a response is sent (``close()``
calls) are written by the app to a file in tmp_path and polled for, never slept for.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import asyncwsgi
from tests.conftest import ServerProcess, read_response, recv_until_closed

APP = "wsgi_bridge_apps:application"
VALIDATED = "wsgi_bridge_apps:validated"

LINES_BODY = (
    b"".join(
        b"line %d %s\n" % (i, b"x" * (i * 37 % 300)) + (b"\n" if i % 7 == 0 else b"")
        for i in range(600)
    )
    + b"last line without a newline"
)


# -- helpers -----------------------------------------------------------------------------


class Events:
    """The event file the apps append to (``WSGI_TEST_EVENTS``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def env(self) -> dict[str, str]:
        return {"WSGI_TEST_EVENTS": str(self.path)}

    def lines(self) -> list[str]:
        try:
            return self.path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def wait_for(self, event: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while event not in self.lines():
            if time.monotonic() > deadline:
                raise AssertionError(f"event {event!r} not seen; events: {self.lines()}")
            time.sleep(0.01)


@pytest.fixture
def events(tmp_path: Path) -> Events:
    return Events(tmp_path / "events.log")


def get(sock: socket.socket, target: str, headers: str = "") -> None:
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode("latin-1"))


def stderr_after_stop(server: ServerProcess) -> str:
    """The whole stderr of a stopped server (``ServerProcess.stderr()`` needs it running)."""
    assert server.proc.poll() is not None, "stop the server first"
    return server.stderr_path.read_text("utf-8", "replace")


def assert_clean_stderr(stderr: str) -> None:
    for bad in (
        "AssertionError",
        "WSGIWarning",
        "Traceback",
        "garbage collected without being closed",
        "[ERROR]",
    ):
        assert bad not in stderr, f"{bad!r} in server stderr:\n{stderr}"


def chunked(data: bytes, size: int) -> Callable[[], Iterator[bytes]]:
    def generate() -> Iterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i : i + size]

    return generate


def expected_lines(body: bytes) -> list[str]:
    return [line.decode("latin-1") for line in io.BytesIO(body).readlines()]


# -- wsgiref.validate.validator ----------------------------------------------------------


def test_validator_simple_streaming_and_environ(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(VALIDATED)
    with httpx.Client(base_url=server.url) as client:
        r = client.get("/simple")
        assert (r.status_code, r.content) == (200, b"hello world\n")
        assert r.headers["content-length"] == "12"
        r = client.get("/stream")
        assert r.status_code == 200
        assert r.content == b"".join(b"chunk %d\n" % i for i in range(5))
        assert r.headers["transfer-encoding"] == "chunked"
        r = client.get("/environ?a=1&b=%20", headers={"X-Custom": "v", "Cookie": "c=1"})
        assert r.status_code == 200
        env = r.json()
        assert env["QUERY_STRING"] == "a=1&b=%20"
        assert env["HTTP_X_CUSTOM"] == "v"
        assert env["wsgi.url_scheme"] == "http"
        assert env["wsgi.input_terminated"] is True
        assert env["SERVER_PORT"] == str(server.port)
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        r = client.head("/simple")
        assert (r.status_code, r.content) == (200, b"")
        r = client.post("/environ", content=b"abc", headers={"Content-Type": "text/x-test"})
        assert r.json()["CONTENT_TYPE"] == "text/x-test"
        assert r.json()["CONTENT_LENGTH"] == "3"
        r = client.get("/errors")
        assert r.status_code == 200
        r = client.get("/close")
        assert r.content == b"abc"
    assert server.stop() == 0
    stderr = stderr_after_stop(server)
    assert_clean_stderr(stderr)
    assert "message-to-wsgi-errors" in stderr
    assert "line-a\nline-b\n" in stderr


@pytest.mark.parametrize("mode", ["content-length", "chunked"])
def test_validator_reading_the_body(start_server, mode: str) -> None:  # type: ignore[no-untyped-def]
    server = start_server(VALIDATED)

    def body(data: bytes) -> object:
        return data if mode == "content-length" else chunked(data, 997)()

    with httpx.Client(base_url=server.url) as client:
        for n in (1, 7, 4096, 100_000):
            # One byte at a time, chunked, is slow enough with a shorter body.
            data = LINES_BODY[:5000] if n == 1 and mode == "chunked" else LINES_BODY
            r = client.post(f"/read-n?n={n}", content=body(data))
            assert r.status_code == 200, r.text
            assert r.content == data
            assert r.headers["x-full-pieces"] == "yes"  # read(n) is short only at the end
        for route in ("/readline", "/readlines", "/iter"):
            r = client.post(route, content=body(LINES_BODY))
            assert r.status_code == 200, (route, r.text)
            assert r.json() == expected_lines(LINES_BODY), route
        r = client.post("/readline-n?n=5", content=body(LINES_BODY))
        assert r.status_code == 200
        got = r.json()
        assert "".join(got) == LINES_BODY.decode("latin-1")
        assert all(len(line) <= 5 for line in got)
        stream = io.BytesIO(LINES_BODY)
        assert got == [line.decode("latin-1") for line in iter(lambda: stream.readline(5), b"")]
        # An empty body reads as empty with every method.
        for route in ("/readline", "/readlines", "/iter"):
            assert client.post(route, content=b"").json() == []
        assert client.post("/read-n?n=3", content=b"").content == b""
    assert server.stop() == 0
    assert_clean_stderr(stderr_after_stop(server))


def test_validator_write_callable(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(VALIDATED)
    with httpx.Client(base_url=server.url) as client:
        r = client.get("/write")
        assert (r.status_code, r.content) == (200, b"one,two,three,four")
        r = client.get("/write-only")
        assert (r.status_code, r.content) == (200, b"only this")
        assert r.headers["content-length"] == "9"
    assert server.stop() == 0
    assert_clean_stderr(stderr_after_stop(server))


def test_validator_file_wrapper(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(200_000)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    server = start_server(VALIDATED)
    with httpx.Client(base_url=server.url) as client:
        r = client.get("/file", params={"path": str(path)})
        assert r.status_code == 200
        assert r.content == data
        r = client.get("/file", params={"path": str(path), "offset": "1234"})
        assert r.content == data[1234:]
        pattern = bytes(range(256)) * 1000
        assert client.get("/file-bytesio").content == pattern
        assert client.get("/file-pipe").content == pattern
    assert server.stop() == 0
    assert_clean_stderr(stderr_after_stop(server))


# -- write(), headers timing, exc_info ---------------------------------------------------


def test_write_callable_mixed_with_iterable(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP)
    with server.connect() as sock:
        get(sock, "/write")
        status, headers, body = read_response(sock)
        assert status == b"HTTP/1.1 200 OK"
        assert b"transfer-encoding: chunked" in headers.lower()
        assert body == b"one,two,three,four"
        get(sock, "/write-only")  # keep-alive: the framing of the first was right
        status, headers, body = read_response(sock)
        assert body == b"only this"
        assert b"content-length: 9" in headers.lower()


def test_headers_sent_with_the_first_non_empty_chunk(
    start_server,  # type: ignore[no-untyped-def]
    events: Events,
    tmp_path: Path,
) -> None:
    server = start_server(APP, env=events.env)
    gate = tmp_path / "gate"
    with server.connect() as sock:
        get(sock, f"/empty-then-data?gate={gate}")
        # The app has yielded b"" and is now waiting: nothing may have been sent.
        events.wait_for("empty yielded")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            early = sock.recv(65536)
            pytest.fail(f"received {early!r} before the first non-empty chunk")
        gate.touch()
        status, _, body = read_response(sock)
        assert status == b"HTTP/1.1 200 OK"
        assert body == b"data-more"


def test_exc_info_before_headers_replaces_the_response(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP)
    with httpx.Client(base_url=server.url) as client:
        r = client.get("/exc-before")
        assert r.status_code == 500
        assert r.content == b"the app's own error page"
        assert r.headers["x-app-error"] == "yes"
        r = client.get("/exc-before-empty-chunk")
        assert r.status_code == 503
        assert r.content == b"replaced"
        assert client.get("/simple").status_code == 200
    assert server.stop() == 0
    assert "Traceback" not in stderr_after_stop(server)  # the app handled its error


def test_exc_info_after_headers_reraises_and_closes(start_server, events: Events) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP, env=events.env)
    with server.connect() as sock:
        get(sock, "/exc-after")
        raw = recv_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"partial-body" in raw
    assert b"should never be sent" not in raw
    assert raw.count(b"HTTP/1.1 ") == 1  # no second (error) response after the first
    assert not raw.endswith(b"0\r\n\r\n"), "an aborted body must not look complete"
    events.wait_for("close exc-after")
    assert "exc-after: start_response did not raise" not in events.lines()
    assert server.stop() == 0
    stderr = stderr_after_stop(server)
    assert stderr.count("Traceback (most recent call last)") == 1, stderr
    assert stderr.count("ValueError: exc-after-marker") == 1, stderr


# -- close() -----------------------------------------------------------------------------


def test_close_is_called(start_server, events: Events) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP, env=events.env)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/close").content == b"abc"
        assert client.get("/close-single").content == b"only"
        assert client.head("/close").status_code == 200
    events.wait_for("close normal")
    events.wait_for("close single")
    deadline = time.monotonic() + 10
    while events.lines().count("close normal") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events.lines().count("close normal") == 2  # GET and HEAD
    assert events.lines().count("close single") == 1


def test_close_is_called_when_iteration_fails(start_server, events: Events) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP, env=events.env)
    with server.connect() as sock:
        get(sock, "/close-error")
        raw = recv_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert not raw.endswith(b"0\r\n\r\n")
    events.wait_for("close error")
    assert events.lines().count("close error") == 1


def test_close_is_called_when_the_client_disconnects(start_server, events: Events) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP, "--threads", "2", env=events.env)
    sock = server.connect()
    get(sock, "/forever")
    received = 0
    while received < 256 * 1024:
        data = sock.recv(65536)
        assert data
        received += len(data)
    events.wait_for("forever started")
    sock.close()
    events.wait_for("close forever")
    assert events.lines().count("close forever") == 1
    # The worker is free again: both threads answer.
    with httpx.Client(base_url=server.url) as client:
        for _ in range(4):
            assert client.get("/simple").status_code == 200


def test_close_is_called_when_the_client_vanishes_without_reading(
    start_server,  # type: ignore[no-untyped-def]
    events: Events,
) -> None:
    server = start_server(APP, "--threads", "1", env=events.env)
    sock = server.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    get(sock, "/forever")
    events.wait_for("forever started")
    sock.close()
    events.wait_for("close forever")
    # With one thread, this answers only if the worker left the endless response.
    assert httpx.get(server.url + "/simple", timeout=10).status_code == 200


# -- application errors ------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/error-before", "/error-in-first-next"])
def test_exception_before_sending_gives_a_generic_500(start_server, route: str) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP)
    with httpx.Client(base_url=server.url) as client:
        r = client.get(route)
        assert r.status_code == 500
        for secret in ("marker", "hunter2", "Traceback", "RuntimeError", "wsgi_bridge_apps"):
            assert secret not in r.text
        assert r.text.strip()
        assert client.get("/simple").status_code == 200
    assert server.stop() == 0
    stderr = stderr_after_stop(server)
    assert stderr.count("Traceback (most recent call last)") == 1, stderr
    assert stderr.count("RuntimeError: " + route[1:] + "-marker") == 1, stderr


@pytest.mark.parametrize("route", ["/error-after", "/error-after-length"])
def test_exception_after_headers_closes_the_connection(
    start_server,  # type: ignore[no-untyped-def]
    events: Events,
    route: str,
) -> None:
    server = start_server(APP, env=events.env)
    with server.connect() as sock:
        get(sock, route)
        raw = recv_until_closed(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert raw.count(b"HTTP/1.1 ") == 1
    if route == "/error-after":
        assert b"partial-body" in body
        assert b"never sent" not in body
        assert not body.endswith(b"0\r\n\r\n")
    else:
        assert body == b"x" * 10  # fewer than the 100 bytes promised: the client can tell
    events.wait_for("close " + route[1:])
    assert server.stop() == 0
    assert stderr_after_stop(server).count("Traceback (most recent call last)") == 1


# -- wsgi.file_wrapper -------------------------------------------------------------------


def open_fds_to(pid: int, path: Path) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                count += 1
        except OSError:
            pass
    return count


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_file_wrapper_over_a_real_file(start_server, tmp_path: Path, loop: str) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    server = start_server(APP, "--loop", loop)
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):  # on one keep-alive connection: each body ends where it should
            r = client.get("/file", params={"path": str(path)})
            assert r.status_code == 200
            assert r.headers["content-length"] == str(len(data))
            assert "transfer-encoding" not in r.headers
            assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
        r = client.get("/file", params={"path": str(path), "offset": "1000"})
        assert r.headers["content-length"] == str(len(data) - 1000)
        assert r.content == data[1000:]
        # The app's own Content-Length is honoured: only that many bytes are sent.
        r = client.get("/file", params={"path": str(path), "length": "5000"})
        assert r.headers["content-length"] == "5000"
        assert r.content == data[:5000]
        assert client.get("/simple").content == b"hello world\n"
        r = client.head("/file", params={"path": str(path)})
        assert r.status_code == 200
        assert r.content == b""
        assert client.get("/simple").content == b"hello world\n"
    # Every wrapped file was closed (the wrapper's close() is the file's).
    deadline = time.monotonic() + 10
    while open_fds_to(server.proc.pid, path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert open_fds_to(server.proc.pid, path) == 0
    assert server.stop() == 0
    assert "Traceback" not in stderr_after_stop(server)


@pytest.mark.parametrize("route", ["/file-bytesio", "/file-pipe"])
def test_file_wrapper_fallback(start_server, route: str) -> None:  # type: ignore[no-untyped-def]
    pattern = bytes(range(256)) * 1000
    server = start_server(APP)
    with server.connect() as sock:
        for _ in range(2):
            get(sock, route)
            status, _, body = read_response(sock)
            assert status == b"HTTP/1.1 200 OK"
            assert body == pattern


# -- SCRIPT_NAME / PATH_INFO ---------------------------------------------------------------


def test_root_path_sets_script_name(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP, "--root-path", "/mount")
    with httpx.Client(base_url=server.url) as client:
        env = client.get("/mount/environ", params={"x": "1"}).json()
        assert env["SCRIPT_NAME"] == "/mount"
        assert env["PATH_INFO"] == "/environ"
        assert env["QUERY_STRING"] == "x=1"
        assert client.get("/mount/simple").content == b"hello world\n"
        env = client.get("/mount/environ/caf%C3%A9/a%2Fb").json()
        assert env["SCRIPT_NAME"] == "/mount"
        assert env["PATH_INFO"] == "/environ/caf\u00c3\u00a9/a/b"


def test_root_path_with_trailing_slash(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP, "--root-path", "/mount/")
    env = httpx.get(server.url + "/mount/environ").json()
    assert env["SCRIPT_NAME"] == "/mount"
    assert env["PATH_INFO"] == "/environ"


def test_environ_over_the_wire(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP)
    with server.connect() as sock:
        get(
            sock,
            "/environ/caf%C3%A9%2Fx?q=caf%C3%A9+%2F",
            "Cookie: a=1\r\nX-Multi: one\r\nCookie: b=2\r\nx-multi: two\r\n"
            "X_Multi: spoofed\r\nContent-Type: text/x-t\r\n",
        )
        _, _, body = read_response(sock)
    env = json.loads(body)
    assert env["PATH_INFO"] == "/environ/caf\u00c3\u00a9/x"
    assert env["SCRIPT_NAME"] == ""
    assert env["QUERY_STRING"] == "q=caf%C3%A9+%2F"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_MULTI"] == "one,two"
    assert env["CONTENT_TYPE"] == "text/x-t"
    assert "HTTP_CONTENT_TYPE" not in env
    assert env["HTTP_HOST"] == "test"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert int(env["REMOTE_PORT"]) > 0
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.multithread"] is True
    assert env["wsgi.run_once"] is False


# -- Flask -------------------------------------------------------------------------------


def test_flask_app(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server("wsgi_flask_app:app")
    with httpx.Client(base_url=server.url) as client:
        r = client.get("/")
        assert (r.status_code, r.text) == (200, "flask index")
        assert r.headers["content-type"].startswith("text/html")
        r = client.get("/items/42", params={"q": "caf\u00e9"})
        assert r.status_code == 200
        assert r.json() == {"id": 42, "name": "item 42", "tags": ["a", "b"], "q": "caf\u00e9"}
        assert client.get("/items/404").status_code == 404
        assert client.get("/nowhere").status_code == 404
        assert client.get("/json").status_code == 405
        r = client.post("/json", json={"k": [1, 2, {"x": None}]})
        assert r.json() == {"received": {"k": [1, 2, {"x": None}]}, "type": "application/json"}
        r = client.post("/form", data={"name": "Zo\u00eb", "colour": ["red", "blue"]})
        assert r.status_code == 200
        assert r.json() == {
            "name": "Zo\u00eb",
            "colours": ["red", "blue"],
            "script_root": "",
            "path": "/form",
        }
        payload = os.urandom(300_000)
        r = client.post("/upload", files={"file": ("blob.bin", payload)})
        assert r.json() == {
            "filename": "blob.bin",
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        with client.stream("GET", "/stream", params={"n": "50", "tag": "t"}) as r:
            assert r.status_code == 200
            assert r.headers["transfer-encoding"] == "chunked"
            text = b"".join(r.iter_bytes()).decode()
        assert text == "".join(f"line {i} t\n" for i in range(50))
        r = client.get("/cookie", headers={"Cookie": "a=1; b=2"})
        assert r.json() == {"cookies": {"a": "1", "b": "2"}}
        assert r.cookies["server"] == "set"
        r = client.get("/boom")
        assert r.status_code == 500
        assert "flask-boom-marker" not in r.text
    assert server.stop() == 0


def test_flask_app_under_a_root_path(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server("wsgi_flask_app:app", "--root-path", "/app")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/app/").text == "flask index"
        r = client.post("/app/form", data={"name": "n", "colour": "c"})
        assert r.json() == {"name": "n", "colours": ["c"], "script_root": "/app", "path": "/form"}


# -- what gets loaded --------------------------------------------------------------------

SCRIPT = """\
import json

TAG = {tag!r}


def application(environ, start_response):
    body = json.dumps({{"name": __name__, "tag": TAG}}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"""


def write_script(folder: Path, tag: str, name: str = "app.wsgi") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(SCRIPT.format(tag=tag))
    return path


def test_scripts_with_the_same_name_get_unique_module_names(
    start_server,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    first = start_server(write_script(tmp_path / "one", "first"))
    second = start_server(write_script(tmp_path / "two", "second"))
    a = httpx.get(first.url + "/").json()
    b = httpx.get(second.url + "/").json()
    assert (a["tag"], b["tag"]) == ("first", "second")
    assert a["name"] != b["name"]
    for name in (a["name"], b["name"]):
        assert name.startswith("_asyncwsgi_")
        assert name != "app"


async def test_two_scripts_named_alike_in_one_process(tmp_path: Path) -> None:
    """Two servers in one process, so one ``sys.modules``: the scripts must not collide."""
    scripts = [write_script(tmp_path / d, d) for d in ("left", "right")]
    stop = asyncio.Event()
    addresses: list[list[str]] = [[], []]
    ready = [asyncio.Event(), asyncio.Event()]

    def on_ready(i: int) -> Callable[[list[str]], None]:
        def callback(found: list[str]) -> None:
            addresses[i].extend(found)
            ready[i].set()

        return callback

    tasks = [
        asyncio.ensure_future(
            asyncwsgi.serve(
                str(script),
                bind=("127.0.0.1:0",),
                access_log=False,
                threads=2,
                ready=on_ready(i),
                shutdown_trigger=stop.wait,
            )
        )
        for i, script in enumerate(scripts)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 15)
        async with httpx.AsyncClient() as client:
            got = [(await client.get(addresses[i][0] + "/")).json() for i in range(2)]
            # Again, once both are loaded: each server still has its own code.
            got += [(await client.get(addresses[i][0] + "/")).json() for i in range(2)]
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
    assert [g["tag"] for g in got] == ["left", "right", "left", "right"]
    assert got[0]["name"] != got[1]["name"]
    assert all(g["name"].startswith("_asyncwsgi_") for g in got)


def test_module_attr_target(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server("wsgi_bridge_apps:simple")
    assert httpx.get(server.url + "/anything").text == "simple callable\n"


def test_callable_option_with_a_module(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server("wsgi_bridge_apps", "--callable", "app")
    assert httpx.get(server.url + "/").text == "callable named app\n"


def test_callable_option_with_a_script(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "named.wsgi"
    script.write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'default name']\n"
        "\n"
        "def handler(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'handler']\n"
    )
    server = start_server(script, "--callable", "handler")
    assert httpx.get(server.url + "/").text == "handler"
    default = start_server(script)
    assert httpx.get(default.url + "/").text == "default name"


# -- UNIX sockets ------------------------------------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # sun_path holds ~107 bytes; pytest's tmp_path can be longer than that.
    folder = Path(tempfile.mkdtemp(prefix="aw-", dir="/tmp"))
    yield folder
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()


def test_unix_socket_bind(start_server, short_dir: Path) -> None:  # type: ignore[no-untyped-def]
    path = short_dir / "s.sock"
    server = start_server(APP, "--bind", f"unix:{path}")
    assert f"unix:{path}" in server.addresses
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, base_url="http://example.test:8123") as client:
        r = client.get("/simple")
        assert (r.status_code, r.content) == (200, b"hello world\n")
        env = client.get("/environ").json()
        assert env["REMOTE_ADDR"] == ""
        assert env["SERVER_NAME"] == "example.test"
        assert env["SERVER_PORT"] == "8123"
        r = client.post("/sha256", content=b"x" * 1_000_000)
        assert r.text == f"1000000 {hashlib.sha256(b'x' * 1_000_000).hexdigest()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"GET /simple HTTP/1.0\r\n\r\n")
        raw = recv_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(b"\r\n\r\nhello world\n")
    # The TCP address given alongside works too.
    assert httpx.get(server.url + "/simple").status_code == 200
    assert server.stop() == 0
    assert not path.exists()


def test_unix_socket_replaces_a_stale_socket_file(start_server, short_dir: Path) -> None:  # type: ignore[no-untyped-def]
    path = short_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old:
        old.bind(str(path))  # a socket file left behind by a server that died
    assert path.exists()
    server = start_server(APP, "--bind", f"unix:{path}")
    assert f"unix:{path}" in server.addresses
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, base_url="http://localhost") as client:
        assert client.get("/simple").content == b"hello world\n"


def test_unix_socket_path_taken_by_a_regular_file(start_server, short_dir: Path) -> None:  # type: ignore[no-untyped-def]
    path = short_dir / "precious.txt"
    path.write_text("do not delete")
    server = start_server(APP, "--bind", f"unix:{path}", wait=False)
    assert server.proc.wait(15) != 0
    assert path.read_text() == "do not delete"
    assert str(path) in server.stderr()
