"""The daemon process (``asyncwsgi.daemon.process``) on its own: a real process on a real
socket pair, with the test acting as the front.

Each test spawns ``command(...)`` with ``pass_fds`` over ``socket.socketpair()`` and speaks
the wire protocol with ``wire``'s encoders and a ``FrameDecoder``. The application is
``APP`` below, written into ``tmp_path``; its paths pick a behaviour. Where the order of
events matters, the application makes it visible in the frame order instead of the test
sleeping: it sends a chunk (a frame) before it reads, or touches a marker file the test
waits for. Every blocking read in the test has a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncwsgi.daemon import wire
from asyncwsgi.daemon.process import (
    DEFAULT_REQUEST_WINDOW,
    EXIT_BOOT_FAILED,
    EXIT_OK,
    EXIT_PROTOCOL_ERROR,
    EXIT_USAGE,
    DaemonSpec,
    command,
    read_spec,
)

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 5.0  # for anything that should happen at once
QUIET = 0.3  # how long "nothing arrives" is watched for

APP = """\
import os
import sys
import threading
import time
from wsgiref.validate import validator

BARRIER = threading.Barrier(3, timeout=5)
PLAIN = [("Content-Type", "text/plain")]


def wait_for(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for " + path)
        time.sleep(0.002)


def touch(path):
    open(path, "w").close()


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ["QUERY_STRING"]
    marks = environ.get("HTTP_X_DIR", "")
    body_in = environ["wsgi.input"]

    if path == "/hello":
        start_response("200 OK", PLAIN)
        return [b"hello"]

    if path == "/environ":
        keys = [
            "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
            "SERVER_PORT", "REMOTE_ADDR", "SERVER_PROTOCOL", "HTTP_HOST", "HTTP_X_FORWARDED_FOR",
            "wsgi.url_scheme", "wsgi.multiprocess", "wsgi.multithread",
        ]
        start_response("200 OK", PLAIN)
        return ["\\n".join(f"{k}={environ.get(k)}" for k in keys).encode()]

    if path == "/barrier":
        BARRIER.wait()  # passes only when three requests run at once
        start_response("200 OK", PLAIN)
        return [threading.current_thread().name.encode()]

    if path == "/echo-progress":
        def progress():
            yield b"start;"
            total = 0
            parts = []
            while True:
                chunk = body_in.read(400)
                if not chunk:
                    break
                total += len(chunk)
                parts.append(chunk)
                yield f"read={total};".encode()
            yield b"body=" + b"".join(parts)
        start_response("200 OK", PLAIN)
        return progress()

    if path == "/ignore-body":
        start_response("200 OK", PLAIN)
        return [b"ignored"]

    if path == "/read-after-chunk":
        def later():
            yield b"before;"
            yield b"body=" + body_in.read()
        start_response("200 OK", PLAIN)
        return later()

    if path == "/big":
        start_response("200 OK", PLAIN)
        return [b"x" * int(query)]

    if path == "/write":
        write = start_response("200 OK", PLAIN)
        write(b"one;")
        write(b"two;")
        return [b"three"]

    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(environ["HTTP_X_FILE"], "rb"), 8192)

    if path == "/error-before":
        start_response("200 OK", PLAIN)
        raise RuntimeError("boom before the head")

    if path == "/exc-info":
        start_response("200 OK", PLAIN)
        try:
            raise ValueError("caught")
        except ValueError:
            start_response("503 Try Later", PLAIN, sys.exc_info())
        return [b"replaced"]

    if path == "/error-after":
        def broken():
            yield b"partial"
            raise RuntimeError("boom after the head")
        start_response("200 OK", PLAIN)
        return broken()

    if path == "/cancel":
        def reader():
            yield b"got=" + body_in.read(3) + b";"
            try:
                body_in.read(10)
            except OSError as exc:
                with open(os.path.join(marks, "raised"), "w") as f:
                    f.write(type(exc).__name__)
                raise
            yield b"not reached"
        start_response("200 OK", PLAIN)
        return reader()

    if path == "/body-error":
        wait_for(os.path.join(marks, "go"))
        got = b""
        try:
            while True:
                chunk = body_in.read(3)  # the size of each piece the test sends
                if not chunk:
                    break
                got += chunk
            outcome = "no error"
        except Exception as exc:
            outcome = type(exc).__name__
        start_response("200 OK", PLAIN)
        return [outcome.encode() + b":" + got]

    if path == "/body-error-uncaught":
        body_in.read()
        start_response("200 OK", PLAIN)
        return [b"not reached"]

    if path == "/slow":
        touch(os.path.join(marks, "started"))
        wait_for(os.path.join(marks, "go"))
        start_response("200 OK", PLAIN)
        return [b"slow done"]

    if path == "/head":
        start_response("200 OK", PLAIN)
        return [b"0123456789"]

    if path == "/validated":
        return VALIDATED(environ, start_response)

    start_response("404 Not Found", PLAIN)
    return [b"no such path"]


def _validated(environ, start_response):
    body_in = environ["wsgi.input"]
    first = body_in.readline()
    rest = body_in.read(int(environ.get("CONTENT_LENGTH") or 0) - len(first))
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"first=" + first)
    return [b"rest=" + rest, b";", environ["REQUEST_METHOD"].encode()]


VALIDATED = validator(_validated)


def other_name(environ, start_response):
    start_response("200 OK", PLAIN)
    return [b"other callable"]
"""


# --------------------------------------------------------------------------------------
# The test's front
# --------------------------------------------------------------------------------------


def is_last(frame: wire.Frame) -> bool:
    if isinstance(frame, wire.ResponseHead):
        return frame.final
    return isinstance(frame, (wire.ResponseEnd, wire.ResponseAbort))


def body_of(frames: list[wire.Frame]) -> bytes:
    data = b""
    for frame in frames:
        if isinstance(frame, wire.ResponseHead):
            data += frame.body
        elif isinstance(frame, wire.ResponseBody):
            data += frame.data
    return data


class Front:
    """The front's end of one daemon process."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        app: str | None = None,
        threads: int = 4,
        group: str = "test",
        generation: int = 5,
        request_window: int = DEFAULT_REQUEST_WINDOW,
        multiprocess: bool = True,
        callable: str = "application",
        env: dict[str, str] | None = None,
        send_timeout: float = 60.0,
        parent: int = 0,
    ) -> None:
        self.tmp_path = tmp_path
        if app is None:
            script = tmp_path / "app.py"
            script.write_text(APP)
            app = str(script)
        self.sock, child = socket.socketpair()
        self.sock.settimeout(TIMEOUT)
        self.stderr_path = tmp_path / f"daemon-{id(self)}.err"
        argv = command(
            DaemonSpec(
                fd=child.fileno(),
                group=group,
                generation=generation,
                threads=threads,
                app=app,
                callable=callable,
                request_window=request_window,
                multiprocess=multiprocess,
                send_timeout=send_timeout,
                parent=parent,
            )
        )
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                argv,
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, **(env or {})},
            )
        child.close()
        self.decoder = wire.FrameDecoder(sent_by=wire.Side.DAEMON)
        self.frames: deque[wire.Frame] = deque()
        self.backlog: dict[int, deque[wire.Frame]] = {}
        self.eof = False

    # -- receiving ---------------------------------------------------------------------

    def next_frame(self, timeout: float = TIMEOUT) -> wire.Frame | None:
        """The next frame in arrival order, or None at end of input."""
        deadline = time.monotonic() + timeout
        while not self.frames:
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no frame from the daemon within {timeout} s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                raise TimeoutError(f"no frame from the daemon within {timeout} s") from None
            if not data:
                self.eof = True
                return None
            self.frames.extend(self.decoder.feed(data))
        return self.frames.popleft()

    def connection_frame(self, timeout: float = TIMEOUT) -> wire.Frame:
        """The next frame not of a stream (others are kept for their stream)."""
        while True:
            frame = self.next_frame(timeout)
            assert frame is not None, "the daemon closed the connection"
            stream_id = getattr(frame, "stream_id", 0)
            if not stream_id:
                return frame
            self.backlog.setdefault(stream_id, deque()).append(frame)

    def stream_frame(self, stream_id: int, timeout: float = TIMEOUT) -> wire.Frame:
        backlog = self.backlog.get(stream_id)
        if backlog:
            return backlog.popleft()
        while True:
            frame = self.next_frame(timeout)
            assert frame is not None, "the daemon closed the connection"
            other = getattr(frame, "stream_id", 0)
            if other == stream_id:
                return frame
            self.backlog.setdefault(other, deque()).append(frame)

    def collect(self, stream_id: int, *, grant: bool = True) -> list[wire.Frame]:
        """The stream's frames up to its last one. With ``grant`` the response credit
        is given back as each body frame arrives (a client that reads at once)."""
        frames = []
        while True:
            frame = self.stream_frame(stream_id)
            frames.append(frame)
            if grant:
                size = 0
                if isinstance(frame, wire.ResponseHead) and not frame.final:
                    size = len(frame.body)
                elif isinstance(frame, wire.ResponseBody):
                    size = len(frame.data)
                if size:
                    self.send(wire.encode_window(stream_id, size))
            if is_last(frame):
                return frames

    def expect_quiet(self, within: float = QUIET) -> None:
        """Nothing arrives for ``within`` seconds."""
        try:
            frame = self.next_frame(within)
        except TimeoutError:
            return
        raise AssertionError(f"expected no frame, got {frame!r}")

    def hello(self) -> wire.Hello:
        frame = self.next_frame()
        assert isinstance(frame, wire.Hello), f"expected HELLO first, got {frame!r}"
        return frame

    def ping(self, value: int = 42) -> None:
        """A round trip: the daemon is alive and has handled everything sent before."""
        self.send(wire.encode_ping(value))
        frame = self.connection_frame()
        assert frame == wire.Pong(value)

    # -- sending -----------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, stream_id: int, path: str, **fields: Any) -> None:
        fields.setdefault("method", "GET")
        headers = list(fields.pop("headers", []))
        headers.append((b"X-Dir", str(self.tmp_path).encode()))
        raw_path, _, query = path.partition("?")
        self.send(
            wire.encode_request(
                stream_id, path=raw_path.encode(), query=query.encode(), headers=headers, **fields
            )
        )

    def get(self, stream_id: int, path: str, **fields: Any) -> list[wire.Frame]:
        self.request(stream_id, path, **fields)
        return self.collect(stream_id)

    # -- the process -------------------------------------------------------------------

    def wait(self, timeout: float = TIMEOUT) -> int:
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        self.sock.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Callable[..., Front]]:
    fronts: list[Front] = []

    def start(**options: Any) -> Front:
        f = Front(tmp_path, **options)
        fronts.append(f)
        return f

    yield start
    for f in fronts:
        f.close()


def wait_for_file(path: Path, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.005)


# --------------------------------------------------------------------------------------
# Boot
# --------------------------------------------------------------------------------------


def test_command_line_round_trips() -> None:
    spec = DaemonSpec(fd=7, group="g", generation=3, threads=2, app="/srv/app.wsgi")
    argv = command(spec)
    assert argv[0] == sys.executable and argv[1] == "-c"
    assert json.loads(argv[3]) == {"first": [], "last": []}
    assert read_spec(argv[4:]) == spec
    other = DaemonSpec(fd=7, group="g", generation=3, threads=2, app="m:a", multiprocess=False)
    assert read_spec(command(other, "/venv/bin/python3", ["/srv"])[4:]) == other


def test_the_working_folder_is_not_on_the_daemons_path(tmp_path: Path) -> None:
    # An application's json.py must not hide the standard library's (mod_wsgi's daemons
    # do not import from their working folder either).
    (tmp_path / "json.py").write_text("raise RuntimeError('the working folder was imported')")
    argv = command(DaemonSpec(fd=7, group="g", generation=1, threads=1, app="m:a"))
    argv[2] = argv[2].replace("from asyncwsgi.daemon.process import main", "main = lambda: 0")
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_the_servers_own_interpreter_imports_the_servers_asyncwsgi(tmp_path: Path) -> None:
    # An installed copy of asyncwsgi beside the checkout the server runs from: the
    # daemon imports the server's, first on its path.
    (tmp_path / "installed" / "asyncwsgi").mkdir(parents=True)
    (tmp_path / "installed" / "asyncwsgi" / "__init__.py").write_text("raise SystemExit(7)")
    server = str(Path(__file__).parents[2])
    argv = command(
        DaemonSpec(fd=7, group="g", generation=1, threads=1, app="m:a"), server_paths=[server]
    )
    argv[2] = argv[2].replace("from asyncwsgi.daemon.process import main", "main = lambda: 0")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "installed")}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr


def test_another_asyncwsgi_in_the_interpreters_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere" / "asyncwsgi").mkdir(parents=True)
    (tmp_path / "elsewhere" / "asyncwsgi" / "__init__.py").write_text("")
    argv = command(
        DaemonSpec(fd=7, group="g", generation=1, threads=1, app="m:a"),
        "/usr/bin/env",  # another interpreter (python-home=): its packages come first
        server_paths=[str(tmp_path / "server")],
    )
    argv[0] = sys.executable
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "elsewhere")}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 1
    assert "not the server's from" in done.stderr


@pytest.mark.parametrize(
    "argv",
    [[], ["{}"], ["not json"], ['{"fd": 7}'], ["a", "b"]],
)
def test_a_bad_spec_is_refused(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        read_spec(argv)


def test_spec_values_are_checked() -> None:
    with pytest.raises(ValueError, match="threads"):
        DaemonSpec(fd=7, group="g", generation=1, threads=0, app="m:a")
    with pytest.raises(ValueError, match="log_level"):
        DaemonSpec(fd=7, group="g", generation=1, threads=1, app="m:a", log_level="loud")


def test_started_by_hand_it_says_how_it_is_started() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asyncwsgi.daemon.process"], capture_output=True, text=True
    )
    assert done.returncode == EXIT_USAGE
    assert "started by the server" in done.stderr


def test_hello_after_import_with_the_right_fields(front: Callable[..., Front]) -> None:
    f = front(threads=3, group="grp-1", generation=12345678901, request_window=70000)
    hello = f.hello()
    assert hello == wire.Hello(
        pid=f.proc.pid, generation=12345678901, threads=3, request_window=70000, group="grp-1"
    )
    cmdline = Path(f"/proc/{f.proc.pid}/cmdline").read_bytes()
    assert b"asyncwsgi: daemon grp-1" in cmdline


def test_hello_is_sent_only_once_the_application_is_imported(
    front: Callable[..., Front], tmp_path: Path
) -> None:
    # The import blocks until the test creates a file: no HELLO may come before that.
    script = tmp_path / "slow_import.py"
    script.write_text(
        "import os, time\n"
        f"open({str(tmp_path / 'importing')!r}, 'w').close()\n"
        f"while not os.path.exists({str(tmp_path / 'go')!r}):\n"
        "    time.sleep(0.002)\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'ok']\n"
    )
    f = front(app=str(script))
    wait_for_file(tmp_path / "importing")
    f.expect_quiet()
    (tmp_path / "go").touch()
    f.hello()


def test_module_target_and_callable_option(front: Callable[..., Front], tmp_path: Path) -> None:
    (tmp_path / "daemon_test_module.py").write_text(APP)
    f = front(
        app="daemon_test_module:other_name",
        env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    f.hello()
    assert body_of(f.get(1, "/")) == b"other callable"
    g = front(callable="other_name")
    g.hello()
    assert body_of(g.get(1, "/")) == b"other callable"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def application(environ, start_response:\n    pass\n", "SyntaxError"),
        ("import no_such_module_for_the_daemon_test\n", "ModuleNotFoundError"),
        ("def app(environ, start_response):\n    return []\n", "no callable named"),
    ],
    ids=["syntax-error", "import-error", "missing-callable"],
)
def test_boot_failure_exits_3_without_hello(
    front: Callable[..., Front], tmp_path: Path, source: str, message: str
) -> None:
    script = tmp_path / "broken.wsgi"
    script.write_text(source)
    f = front(app=str(script))
    assert f.wait() == EXIT_BOOT_FAILED
    assert f.next_frame() is None, "no HELLO from a daemon that could not import the app"
    err = f.stderr()
    assert err.count(message) >= 1
    assert err.count("Traceback (most recent call last)") <= 1
    # One log record: one line with the level and the pid.
    assert err.count("[ERROR]") == 1
    assert f"[{f.proc.pid}]" in err
    if message != "no callable named":
        assert err.count("Traceback (most recent call last)") == 1


# --------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------


def test_simple_get_round_trip(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    frames = f.get(1, "/hello")
    assert frames == [
        wire.ResponseHead(1, "200 OK", [("Content-Type", "text/plain")], b"hello", True)
    ]


def test_environ_from_the_request_frame(front: Callable[..., Front]) -> None:
    f = front(multiprocess=False)
    f.hello()
    frames = f.get(
        7,
        "/mount/environ?a=1&b=%20",
        script_name="/mount",
        headers=[(b"Host", b"example.test:8080"), (b"X-Forwarded-For", b"9.9.9.9")],
        client=("127.0.0.1", 5000),
        server=("10.0.0.1", 8443),
        scheme="https",
        http_version="1.0",
    )
    lines = dict(line.split("=", 1) for line in body_of(frames).decode().splitlines())
    assert lines == {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/mount",
        "PATH_INFO": "/environ",
        "QUERY_STRING": "a=1&b=%20",
        "SERVER_NAME": "10.0.0.1",
        "SERVER_PORT": "8443",
        "REMOTE_ADDR": "9.9.9.9",  # 127.0.0.1 is a trusted proxy by default
        "SERVER_PROTOCOL": "HTTP/1.0",
        "HTTP_HOST": "example.test:8080",
        "HTTP_X_FORWARDED_FOR": "9.9.9.9",
        "wsgi.url_scheme": "https",
        "wsgi.multiprocess": "False",
        "wsgi.multithread": "True",
    }
    # Another mount point on the same connection: SCRIPT_NAME is per request.
    frames = f.get(8, "/environ", script_name="")
    assert b"SCRIPT_NAME=\nPATH_INFO=/environ" in body_of(frames)


def test_several_streams_run_at_once_on_different_threads(front: Callable[..., Front]) -> None:
    f = front(threads=3)
    f.hello()
    for stream_id in (11, 12, 13):
        f.request(stream_id, "/barrier")
    names = set()
    for stream_id in (11, 12, 13):
        (head,) = f.collect(stream_id)
        assert isinstance(head, wire.ResponseHead)
        assert head.status == "200 OK", "the three requests did not run at the same time"
        names.add(head.body)
    assert len(names) == 3


def test_head_request_sends_no_body_but_its_length(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    (head,) = f.get(1, "/head", method="HEAD")
    assert isinstance(head, wire.ResponseHead)
    assert head.final and head.body == b"" and head.body_length == 10


def test_unknown_path_is_the_apps_404(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    (head,) = f.get(1, "/nowhere")
    assert isinstance(head, wire.ResponseHead)
    assert head.status == "404 Not Found" and not head.server_error


# --------------------------------------------------------------------------------------
# Request body and its flow control
# --------------------------------------------------------------------------------------


def test_request_body_streamed_with_credit_only_for_what_was_read(
    front: Callable[..., Front],
) -> None:
    window = 1000
    f = front(request_window=window)
    f.hello()
    body = bytes(range(256)) * 20  # 5120 bytes, five windows' worth
    first, rest = body[:window], body[window:]
    f.request(1, "/echo-progress", method="POST", body_length=len(body), body=first)
    credit = 0  # the front spent the whole window on the inline body
    granted = 0
    end_sent = False
    frames: list[wire.Frame] = []
    while True:
        while credit and rest:
            size = min(credit, 300)
            piece, rest = rest[:size], rest[size:]
            credit -= size
            f.send(wire.encode_body(1, piece))
        if not rest and not end_sent:
            f.send(wire.encode_body_end(1))
            end_sent = True
        frame = f.stream_frame(1)
        frames.append(frame)
        if isinstance(frame, wire.Window):
            granted += frame.increment
            credit += frame.increment
        elif isinstance(frame, (wire.ResponseHead, wire.ResponseBody)):
            data = frame.body if isinstance(frame, wire.ResponseHead) else frame.data
            if data.startswith(b"read="):
                read = int(data[5:-1])
                assert granted <= read, "credit granted for bytes the application has not read"
            f.send(wire.encode_window(1, len(data)))
        if is_last(frame):
            break
    assert granted > 0
    assert granted <= len(body) - window, "no credit beyond what the body still needs"
    assert body_of(frames).endswith(b"body=" + body)
    assert isinstance(frames[-1], wire.ResponseEnd)


def test_unread_body_gets_no_credit(front: Callable[..., Front]) -> None:
    f = front(request_window=1000)
    f.hello()
    f.request(1, "/ignore-body", method="POST", body_length=50_000, body=b"a" * 1000)
    frames = f.collect(1)
    assert [type(frame) for frame in frames] == [wire.ResponseHead]
    f.ping()
    assert not f.backlog.get(1), "nothing more for an ended stream"


def test_expect_continue_first_credit_when_the_app_reads(front: Callable[..., Front]) -> None:
    f = front(request_window=1000)
    f.hello()
    f.request(1, "/read-after-chunk", method="POST", body_length=5, expect_continue=True)
    # The application sends a chunk before it reads: no WINDOW may come before it.
    head = f.stream_frame(1)
    assert isinstance(head, wire.ResponseHead) and head.body == b"before;"
    window = f.stream_frame(1)
    assert window == wire.Window(1, 5), "the first read grants credit (capped to the body)"
    f.send(wire.encode_body(1, b"hello") + wire.encode_body_end(1))
    frames = f.collect(1)
    assert body_of(frames) == b"body=hello"


def test_expect_continue_with_unknown_length_grants_the_window(
    front: Callable[..., Front],
) -> None:
    f = front(request_window=1000)
    f.hello()
    f.request(1, "/read-after-chunk", method="POST", body_length=-1, expect_continue=True)
    assert isinstance(f.stream_frame(1), wire.ResponseHead)
    assert f.stream_frame(1) == wire.Window(1, 1000)
    f.send(wire.encode_body(1, b"abc") + wire.encode_body(1, b"def") + wire.encode_body_end(1))
    assert body_of(f.collect(1)) == b"body=abcdef"


def test_cancel_mid_body(front: Callable[..., Front], tmp_path: Path) -> None:
    f = front()
    f.hello()
    f.request(1, "/cancel", method="POST", body_length=-1, body=b"abc")
    head = f.stream_frame(1)
    assert isinstance(head, wire.ResponseHead) and head.body == b"got=abc;"
    f.send(wire.encode_window(1, len(head.body)))
    f.send(wire.encode_cancel(1))
    frames = f.collect(1)
    # The read may have granted the credit of "abc" before the CANCEL got there.
    assert frames[-1] == wire.ResponseAbort(1, wire.AbortReason.CANCELLED)
    assert all(frame == wire.Window(1, 3) for frame in frames[:-1])
    assert (tmp_path / "raised").read_text() == "ClientDisconnected"
    f.ping()
    assert not f.backlog.get(1)


@pytest.mark.parametrize(
    ("reason", "raised"),
    [
        (wire.BodyErrorReason.DISCONNECTED, "ClientDisconnected"),
        (wire.BodyErrorReason.MALFORMED, "BadRequestBody"),
        (wire.BodyErrorReason.TOO_LARGE, "RequestBodyTooLarge"),
    ],
)
def test_body_error_is_raised_in_the_application(
    front: Callable[..., Front], tmp_path: Path, reason: wire.BodyErrorReason, raised: str
) -> None:
    f = front()
    f.hello()
    f.request(1, "/body-error", method="POST", body_length=-1, body=b"abc")
    f.send(wire.encode_body(1, b"def"))
    f.send(wire.encode_body_error(1, reason, "detail"))
    f.ping()  # the daemon has taken in the BODY_ERROR before the application reads
    (tmp_path / "go").touch()
    frames = f.collect(1)
    # The next read raises, even with body bytes still buffered: the body is not whole.
    assert body_of(frames) == raised.encode() + b":"


def test_uncaught_body_errors(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    # A bad body the application lets through: a server-made error the front replaces.
    f.request(1, "/body-error-uncaught", method="POST", body_length=-1)
    f.send(wire.encode_body_error(1, wire.BodyErrorReason.TOO_LARGE, "over 10 bytes"))
    (head,) = f.collect(1)
    assert isinstance(head, wire.ResponseHead)
    assert head.final and head.server_error and head.status.startswith("500")
    # A client gone mid-body: the stream is abandoned.
    f.request(2, "/body-error-uncaught", method="POST", body_length=-1)
    f.send(wire.encode_body_error(2, wire.BodyErrorReason.DISCONNECTED))
    frames = f.collect(2)
    assert len(frames) == 1 and isinstance(frames[0], wire.ResponseAbort)


# --------------------------------------------------------------------------------------
# Response and its flow control
# --------------------------------------------------------------------------------------


def test_response_larger_than_the_window_waits_for_credit(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    f.request(1, "/big?5000", response_window=1000)
    head = f.stream_frame(1)
    assert isinstance(head, wire.ResponseHead)
    assert not head.final and head.body == b"x" * 1000 and head.body_length == 5000
    f.expect_quiet()
    f.send(wire.encode_window(1, 1500))
    assert f.stream_frame(1) == wire.ResponseBody(1, b"x" * 1500)
    f.expect_quiet()
    f.send(wire.encode_window(1, 100_000))
    assert f.collect(1, grant=False) == [wire.ResponseBody(1, b"x" * 2500), wire.ResponseEnd(1)]


def test_large_response_in_frames_within_credit(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    size = 3 * wire.DEFAULT_RESPONSE_WINDOW + 123
    frames = f.get(1, f"/big?{size}")
    assert body_of(frames) == b"x" * size
    for frame in frames:
        data = frame.body if isinstance(frame, wire.ResponseHead) else getattr(frame, "data", b"")
        assert len(data) <= wire.DEFAULT_RESPONSE_WINDOW


def test_cancel_while_waiting_for_response_credit(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    f.request(1, "/big?5000", response_window=1000)
    assert isinstance(f.stream_frame(1), wire.ResponseHead)
    f.send(wire.encode_cancel(1))
    assert f.collect(1) == [wire.ResponseAbort(1, wire.AbortReason.CANCELLED)]


def test_a_client_that_takes_nothing_for_send_timeout_is_given_up_on(
    front: Callable[..., Front],
) -> None:
    f = front(send_timeout=0.5)
    f.hello()
    f.request(1, "/big?5000", response_window=1000)
    assert isinstance(f.stream_frame(1), wire.ResponseHead)
    began = time.monotonic()
    # No WINDOW comes: the worker stops waiting after send_timeout, not a minute later.
    assert f.stream_frame(1, timeout=10) == wire.ResponseAbort(1, wire.AbortReason.APP_ERROR)
    assert 0.4 < time.monotonic() - began < 5


def test_a_daemon_whose_parent_is_already_gone_exits(front: Callable[..., Front]) -> None:
    # Started for a front that died before the daemon could arm its parent-death signal.
    f = front(parent=os.getpid() + 1_000_000)
    assert f.proc.wait(TIMEOUT) == 1
    assert f.next_frame() is None  # nothing said


def test_write_callable(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    frames = f.get(1, "/write")
    assert frames == [
        wire.ResponseHead(1, "200 OK", [("Content-Type", "text/plain")], b"one;", False),
        wire.ResponseBody(1, b"two;"),
        wire.ResponseBody(1, b"three"),
        wire.ResponseEnd(1),
    ]


def test_file_wrapper(front: Callable[..., Front], tmp_path: Path) -> None:
    data = os.urandom(600_000)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    f = front()
    f.hello()
    frames = f.get(1, "/file", headers=[(b"X-File", str(path).encode())], response_window=100_000)
    head = frames[0]
    assert isinstance(head, wire.ResponseHead)
    assert head.body_length == len(data) and not head.final
    assert body_of(frames) == data
    assert isinstance(frames[-1], wire.ResponseEnd)
    assert all(len(getattr(frame, "data", b"")) <= 100_000 for frame in frames)
    # HEAD: the length, and no body at all.
    frames = f.get(2, "/file", method="HEAD", headers=[(b"X-File", str(path).encode())])
    assert body_of(frames) == b""
    assert isinstance(frames[0], wire.ResponseHead) and frames[0].body_length == len(data)


def test_error_before_the_head_is_a_server_error(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    (head,) = f.get(1, "/error-before")
    assert isinstance(head, wire.ResponseHead)
    assert head.final and head.server_error and head.status == "500 Internal Server Error"
    assert "boom before the head" in f.stderr()


def test_exc_info_before_the_head_replaces_the_status(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    (head,) = f.get(1, "/exc-info")
    assert isinstance(head, wire.ResponseHead)
    assert head.status == "503 Try Later" and head.body == b"replaced"
    assert not head.server_error


def test_error_after_the_head_aborts(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    frames = f.get(1, "/error-after")
    assert isinstance(frames[0], wire.ResponseHead) and frames[0].body == b"partial"
    assert frames[1:] == [wire.ResponseAbort(1, wire.AbortReason.APP_ERROR)]
    err = f.stderr()
    assert "RuntimeError: boom after the head" in err
    assert err.count("Traceback (most recent call last)") == 1


def test_validator_wrapped_application(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    body = b"line one\nline two\n"
    frames = f.get(
        1,
        "/validated",
        method="POST",
        body_length=len(body),
        body=body,
        body_end=True,
        headers=[(b"Content-Length", str(len(body)).encode()), (b"Host", b"h")],
    )
    assert body_of(frames) == b"first=line one\nrest=line two\n;POST"
    assert isinstance(frames[-1], wire.ResponseEnd)
    # The same with the body streamed after the REQUEST.
    f.request(
        2,
        "/validated",
        method="PUT",
        body_length=len(body),
        headers=[(b"Content-Length", str(len(body)).encode()), (b"Host", b"h")],
    )
    f.send(wire.encode_body(2, body[:5]) + wire.encode_body(2, body[5:]))
    f.send(wire.encode_body_end(2))
    assert body_of(f.collect(2)) == b"first=line one\nrest=line two\n;PUT"
    assert "AssertionError" not in f.stderr()


# --------------------------------------------------------------------------------------
# Connection frames, signals and exits
# --------------------------------------------------------------------------------------


def test_ping_pong(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    f.ping(2**64 - 1)


def test_drain_finishes_the_request_in_flight_then_exits_0(
    front: Callable[..., Front], tmp_path: Path
) -> None:
    f = front()
    f.hello()
    f.request(1, "/slow")
    wait_for_file(tmp_path / "started")
    f.send(wire.encode_drain())
    # A request after DRAIN is refused without reaching the application.
    f.request(2, "/hello")
    assert f.collect(2) == [wire.ResponseAbort(2, wire.AbortReason.REFUSED)]
    time.sleep(QUIET)
    assert f.proc.poll() is None, "a draining daemon waits for its requests"
    (tmp_path / "go").touch()
    assert body_of(f.collect(1)) == b"slow done"
    assert f.wait() == EXIT_OK
    assert f.next_frame() is None


def test_drain_when_idle_exits_at_once(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    f.get(1, "/hello")
    f.send(wire.encode_drain())
    assert f.wait() == EXIT_OK


def test_sigusr1_asks_to_retire_and_keeps_serving(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    f.proc.send_signal(signal.SIGUSR1)
    assert f.connection_frame() == wire.Retire(wire.RetireReason.SIGNAL)
    assert body_of(f.get(1, "/hello")) == b"hello"
    assert f.proc.poll() is None


def test_sigterm_aborts_open_streams_and_exits(front: Callable[..., Front], tmp_path: Path) -> None:
    f = front()
    f.hello()
    f.request(1, "/slow")
    wait_for_file(tmp_path / "started")
    f.proc.send_signal(signal.SIGTERM)
    assert f.collect(1) == [wire.ResponseAbort(1, wire.AbortReason.SHUTDOWN)]
    assert f.wait() == EXIT_OK
    assert f.next_frame() is None


def test_sigint_is_ignored(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    f.proc.send_signal(signal.SIGINT)
    # The main thread, which runs signal handlers, is still there to handle the next.
    f.proc.send_signal(signal.SIGUSR1)
    assert f.connection_frame() == wire.Retire(wire.RetireReason.SIGNAL)
    f.ping()
    assert body_of(f.get(1, "/hello")) == b"hello"
    assert f.proc.poll() is None


def test_end_of_input_exits_promptly(front: Callable[..., Front], tmp_path: Path) -> None:
    f = front()
    f.hello()
    f.request(1, "/slow")  # never told to go: still running when the front leaves
    wait_for_file(tmp_path / "started")
    f.sock.shutdown(socket.SHUT_WR)
    assert f.wait() == EXIT_OK


def test_protocol_error_is_logged_once_and_exits_non_zero(front: Callable[..., Front]) -> None:
    f = front()
    f.hello()
    f.send(b"\x00\x00\x00\x00\x7f\x00\x00\x00\x00\x00")  # frame type 0x7f does not exist
    assert f.wait() == EXIT_PROTOCOL_ERROR
    assert f.stderr().count("broke the wire protocol") == 1
