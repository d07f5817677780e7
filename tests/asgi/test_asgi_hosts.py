"""``asyncwsgi.WSGIApp`` under real ASGI hosts, over real sockets: uvicorn (asyncio),
hypercorn with its trio worker, and granian's ASGI interface.

Each host runs in a subprocess serving ``tests/apps/asgi_host_app.py`` (the bridge
mounted in Starlette at ``/legacy``, a reloadable script at ``/script``). uvicorn and
hypercorn get a listening socket bound here to 127.0.0.1:0 and inherited; granian gets a
UNIX socket path. Readiness is polled; nothing sleeps for a fixed time to wait for it.
What the bridge did after a client left (busy workers, ``close()`` calls, what
``wsgi.input`` raised) is read back from ``/_stats``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parents[1] / "apps"
HOSTS = ["uvicorn", "hypercorn-trio", "granian"]
SCRIPT = """
VERSION = {version!r}

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [VERSION.encode()]
"""


@dataclass
class Host:
    """One ASGI host process serving ``target``."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0
    uds: str = ""
    sock: socket.socket | None = None
    _log: Any = field(default=None, repr=False)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        if self.uds:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(self.uds)
            return sock
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def client(self) -> httpx.Client:
        if self.uds:
            transport = httpx.HTTPTransport(uds=self.uds)
            return httpx.Client(transport=transport, base_url="http://localhost", timeout=20)
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=20)

    def stats(self) -> dict[str, Any]:
        with self.client() as c:
            data: dict[str, Any] = c.get("/_stats").json()
            return data

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.sock is not None:
            self.sock.close()
        self._log.close()
        return self.proc.returncode


def start_host(name: str, target: str, tmp: Path, env: dict[str, str] | None = None) -> Host:
    log_path = tmp / f"{name}-{time.monotonic_ns()}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in Host.stop()
    full_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(APPS), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    sock: socket.socket | None = None
    uds = ""
    port = 0
    if name == "granian":
        uds = str(tmp / f"granian-{time.monotonic_ns()}.sock")
        argv = [
            sys.executable, "-m", "granian", "--interface", "asgi", "--uds", uds,
            "--workers", "1", "--log-level", "info", target,
        ]  # fmt: skip
        pass_fds: tuple[int, ...] = ()
    else:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.set_inheritable(True)
        port = sock.getsockname()[1]
        fd = sock.fileno()
        pass_fds = (fd,)
        if name == "uvicorn":
            argv = [sys.executable, str(APPS / "asgi_launch.py"), "uvicorn", str(fd), target]
        else:
            argv = [
                sys.executable, "-m", "hypercorn", "--worker-class", "trio",
                "--bind", f"fd://{fd}", "--log-level", "info", "--error-logfile", "-",
                target,
            ]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=full_env, cwd=str(tmp), stdout=log, stderr=subprocess.STDOUT, pass_fds=pass_fds
    )
    host = Host(name, proc, log_path, port=port, uds=uds, sock=sock, _log=log)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            host.stop()
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{host.log()}")
        try:
            if host.stats()["busy"] == 0:
                return host
        except (OSError, httpx.HTTPError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            host.stop()
            raise RuntimeError(f"{name} did not start:\n{host.log()}")
        time.sleep(0.05)


@pytest.fixture(scope="module", params=HOSTS)
def host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Host]:
    tmp = tmp_path_factory.mktemp(request.param)
    script = tmp / "app.wsgi"
    script.write_text(SCRIPT.format(version="v1"))
    started = start_host(
        request.param, "asgi_host_app:app", tmp, env={"ASGI_TEST_SCRIPT": str(script)}
    )
    started.script = script  # type: ignore[attr-defined]
    yield started
    started.stop()


def wait_stats(host: Host, predicate: Any, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats = host.stats()
        if predicate(stats):
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"{host.name}: condition not reached; stats: {stats}")
        time.sleep(0.02)


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the head; got {data!r}")
        data += chunk
    return data


# -- tests ---------------------------------------------------------------------------------


def test_mounted_environ_and_hello(host: Host) -> None:
    with host.client() as c:
        env = c.get("/legacy/environ?x=1%202", headers={"X-Custom": "one"}).json()
        hello = c.get("/legacy/hello")
        head = c.head("/legacy/hello")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"]) == (
        "/legacy",
        "/environ",
        "x=1%202",
    )
    assert env["HTTP_X_CUSTOM"] == "one"
    assert env["REQUEST_URI"] == "/legacy/environ?x=1%202"
    if not host.uds:
        assert env["SERVER_PORT"] == str(host.port) and env["REMOTE_ADDR"] == "127.0.0.1"
    assert hello.text == "Hello, world!\n" and hello.headers["content-length"] == "14"
    assert head.status_code == 200 and head.content == b""


def test_streaming_both_ways(host: Host) -> None:
    data = os.urandom(1024 * 1024)

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    with host.client() as c:
        upload = c.post("/legacy/upload", content=pieces())  # chunked request body
        echo = c.post("/legacy/echo", content=data[:300_000])
        with c.stream("GET", "/legacy/stream?n=40&size=50000") as response:
            streamed = b"".join(response.iter_bytes())
        blocks = c.post("/legacy/read-blocks?n=7777", content=data)
    assert upload.text == f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"
    assert echo.content == data[:300_000]
    assert streamed == b"".join(bytes([65 + i % 26]) * 50000 for i in range(40))
    assert blocks.json()["exact"] and blocks.json()["sha"] == hashlib.sha256(data).hexdigest()


def test_readline_before_any_body_waits(host: Host) -> None:
    body = b"first line\nsecond line\n"
    with host.connect() as sock:
        sock.sendall(
            b"POST /legacy/readline?size=100 HTTP/1.1\r\nHost: t\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        )
        time.sleep(0.2)  # the application is in readline() by now, with nothing to read
        sock.sendall(body[:5])
        time.sleep(0.05)
        sock.sendall(body[5:])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    payload = response.partition(b"\r\n\r\n")[2]
    if b"transfer-encoding: chunked" in response.lower().partition(b"\r\n\r\n")[0]:
        payload = payload.split(b"\r\n")[1]
    assert json.loads(payload) == {"first": "first line\n", "rest": len(body) - 11}


def test_client_disconnects_never_leak_workers(host: Host) -> None:
    before = host.stats()
    streams, uploads = 60, 20
    for _ in range(streams):
        with host.connect() as sock:
            sock.sendall(b"GET /legacy/infinite HTTP/1.1\r\nHost: t\r\n\r\n")
            read_head(sock)
            sock.recv(65536)
    for _ in range(uploads):
        with host.connect() as sock:
            sock.sendall(
                b"POST /legacy/read-outcome HTTP/1.1\r\nHost: t\r\n"
                b"Content-Length: 100000\r\n\r\n" + b"x" * 1000
            )
            time.sleep(0.01)  # let the body reach the application before the client goes
    stats = wait_stats(
        host,
        lambda s: (
            s["busy"] == 0
            and s["events"].count("close infinite") - before["events"].count("close infinite")
            >= streams
            and len([e for e in s["events"] if e.startswith("read ")])
            - len([e for e in before["events"] if e.startswith("read ")])
            >= uploads
        ),
    )
    new_events = stats["events"][len(before["events"]) :]
    # A body cut short is an error in read(), never a short body handed to the app.
    reads = [e for e in new_events if e.startswith("read ")]
    assert reads == ["read error ClientDisconnected"] * uploads
    assert stats["bridge_threads"] <= 4 + 2  # legacy's 4 (+ the script's 2) threads
    with host.client() as c:
        assert c.get("/legacy/hello").text == "Hello, world!\n"


def test_script_reload_under_the_host(host: Host) -> None:
    script: Path = host.script  # type: ignore[attr-defined]
    with host.client() as c:
        assert c.get("/script/").text == "v1"
        imports = host.stats()["imports"]
        mtime = script.stat().st_mtime_ns
        script.write_text(SCRIPT.format(version="v2"))
        os.utime(script, ns=(mtime + 10**6, mtime + 10**6))
        assert c.get("/script/").text == "v2"  # the request that saw the change
        assert [c.get("/script/").text for _ in range(5)] == ["v2"] * 5
    assert host.stats()["imports"] == imports + 1


@pytest.mark.parametrize("name", HOSTS)
def test_lifespan_is_answered(name: str, tmp_path: Path) -> None:
    events = tmp_path / "lifespan.log"
    started = start_host(
        name, "asgi_host_app:bare", tmp_path, env={"ASGI_TEST_LIFESPAN_LOG": str(events)}
    )
    try:
        with started.client() as c:
            assert c.get("/hello").text == "Hello, world!\n"
        assert events.read_text().splitlines() == [
            "lifespan.startup",
            "lifespan.startup.complete",
        ]
    finally:
        code = started.stop()
    assert events.read_text().splitlines() == [
        "lifespan.startup",
        "lifespan.startup.complete",
        "lifespan.shutdown",
        "lifespan.shutdown.complete",
    ], started.log()
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
    assert code in (0, -signal.SIGTERM), started.log()
    assert "Traceback" not in started.log()
