"""Flow control, measured as memory: the server's resident set stays bounded when a client
sends much more than the app has read, and when a client reads nothing of what it asked for.

RSS is read from /proc/PID/status of the server process.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess

APP = "wsgi_memory_app:application"
MB = 1024 * 1024
UPLOAD_SIZE = 100 * MB
MAX_GROWTH = 60 * MB

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="needs /proc to read a process's RSS"
)


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


class RssMonitor:
    """Samples a process's RSS in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.baseline = rss(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            self._stop.wait(self.interval)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def __enter__(self) -> RssMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, rss(self.pid))


def warm_up(server: ServerProcess) -> None:
    """Load everything the requests below will touch, so imports do not count as growth."""
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            assert client.post("/upload", content=iter([b"w" * 300_000] * 4)).status_code == 200
            assert client.get("/").text == "hello"


def upload_blocks(total: int, digest: hashlib._Hash) -> Iterator[bytes]:  # type: ignore[name-defined]
    """``total`` bytes in 64 KiB blocks, made on the fly; every block differs."""
    base = bytes(range(256)) * 256
    sent = 0
    n = 0
    while sent < total:
        block = n.to_bytes(8, "big") + base[8:]
        block = block[: total - sent]
        digest.update(block)
        sent += len(block)
        n += 1
        yield block


def test_100mb_chunked_upload_in_bounded_memory(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP)
    warm_up(server)
    digest = hashlib.sha256()
    with RssMonitor(server.proc.pid) as monitor, httpx.Client(timeout=60) as client:
        r = client.post(
            server.url + "/upload?pause=0.4",
            content=upload_blocks(UPLOAD_SIZE, digest),
            headers={
                "Content-Type": "application/octet-stream",
                "X-Halfway": str(UPLOAD_SIZE // 2),
            },
        )
    assert r.status_code == 200, r.text
    assert r.text == f"{UPLOAD_SIZE} {digest.hexdigest()}"
    assert monitor.growth < MAX_GROWTH, (
        f"server RSS grew by {monitor.growth / MB:.1f} MB during a "
        f"{UPLOAD_SIZE // MB} MB upload (baseline {monitor.baseline / MB:.1f} MB)"
    )


def test_100mb_upload_over_a_raw_socket_in_bounded_memory(start_server) -> None:  # type: ignore[no-untyped-def]
    """The same upload, written as fast as the socket takes it, with big chunks."""
    server = start_server(APP)
    warm_up(server)
    digest = hashlib.sha256()
    with RssMonitor(server.proc.pid) as monitor, server.connect(timeout=60) as sock:
        sock.sendall(
            b"POST /upload?pause=0.4 HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
            b"X-Halfway: %d\r\nContent-Type: application/octet-stream\r\n\r\n" % (UPLOAD_SIZE // 2)
        )
        pending: list[bytes] = []
        for block in upload_blocks(UPLOAD_SIZE, digest):
            pending.append(block)
            if len(pending) == 16:  # 1 MiB chunks
                data = b"".join(pending)
                sock.sendall(b"%x\r\n%b\r\n" % (len(data), data))
                pending = []
        if pending:
            data = b"".join(pending)
            sock.sendall(b"%x\r\n%b\r\n" % (len(data), data))
        sock.sendall(b"0\r\n\r\n")
        response = b""
        while not response.endswith(digest.hexdigest().encode()):
            data = sock.recv(65536)
            assert data, f"connection closed; got {response!r}"
            response += data
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(f"{UPLOAD_SIZE} {digest.hexdigest()}".encode())
    assert monitor.growth < MAX_GROWTH, f"server RSS grew by {monitor.growth / MB:.1f} MB"


def count_events(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def wait_until_stable(path: Path, quiet: float = 1.0, timeout: float = 15.0) -> int:
    """Wait until the app stops being called (no new event for ``quiet`` seconds)."""
    deadline = time.monotonic() + timeout
    last = count_events(path)
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = count_events(path)
        if now != last:
            last, last_change = now, time.monotonic()
        elif now and time.monotonic() - last_change >= quiet:
            return now
    return last


@pytest.mark.parametrize("route", ["/big", "/big-stream"])
def test_client_that_never_reads_does_not_grow_the_server(
    start_server,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    route: str,
) -> None:
    events = tmp_path / "events"
    server = start_server(APP, env={"WSGI_TEST_EVENTS": str(events)})
    warm_up(server)
    requests = 100  # 100 MiB of responses asked for
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        with RssMonitor(server.proc.pid) as monitor:
            sock.sendall(f"GET {route} HTTP/1.1\r\nHost: test\r\n\r\n".encode() * requests)
            calls = wait_until_stable(events)
        assert calls >= 1, "the app was never called"
        assert monitor.growth < MAX_GROWTH, (
            f"server RSS grew by {monitor.growth / MB:.1f} MB after {calls} of {requests} "
            f"responses of 1 MiB that the client never read"
        )
        # Everyone else is still served, while that client hangs on.
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(5):
                assert client.get("/").text == "hello"
            r = client.post("/upload", content=b"u" * 500_000)
            assert r.text.startswith("500000 ")
        with server.connect() as other:
            other.sendall(
                f"GET {route} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode()
            )
            received = 0
            while data := other.recv(MB):
                received += len(data)
            assert received > MB  # head + the whole 1 MiB body
    finally:
        sock.close()
