"""Shared fixtures: a real server in a subprocess, on 127.0.0.1:0, read back from its
``Listening on`` line (never a fixed port, never a fixed sleep)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
APPS = Path(__file__).resolve().parent / "apps"


class ServerProcess:
    """``python -m asyncwsgi ...`` running in a subprocess."""

    def __init__(self, args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.stderr_path = tmp_path / f"stderr-{id(self)}.log"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(APPS), full_env.get("PYTHONPATH", "")]
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asyncwsgi", *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=full_env,
            cwd=str(tmp_path),
        )
        self.addresses: list[str] = []
        self.stdout_lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout_lines.append(line)
            if line.startswith("Listening on "):
                self.addresses.append(line[len("Listening on ") :])
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 15.0) -> ServerProcess:
        if not self._ready.wait(timeout) or not self.addresses:
            self.stop()
            raise RuntimeError(f"server did not start; stderr:\n{self.stderr()}")
        # Every address line is printed at once; give the reader a moment to see them all.
        deadline = time.monotonic() + 1.0
        while self.proc.poll() is None and time.monotonic() < deadline:
            if len(self.addresses) >= max(1, self.args.count("--bind")):
                break
            time.sleep(0.005)
        return self

    @property
    def port(self) -> int:
        return int(self.addresses[0].rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return self.addresses[0]

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return sock

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text("utf-8", "replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        self._stderr.close()
        return self.proc.returncode


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    """``start_server(script, *options)`` -> a ready :class:`ServerProcess`."""
    started: list[ServerProcess] = []

    def start(script: str | Path, *options: str, wait: bool = True, **kw: object) -> ServerProcess:
        args = [str(script), "--bind", "127.0.0.1:0", "--no-access-log", *options]
        if "--access-log" in options:
            args.remove("--no-access-log")
        server = ServerProcess(args, tmp_path, env=kw.get("env"))  # type: ignore[arg-type]
        started.append(server)
        return server.wait_ready() if wait else server

    yield start
    for server in started:
        server.stop()


def recv_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, bytes, bytes]:
    """Read one Content-Length or chunked response: (status line, header block, body)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before the response head; got {buf!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    status, _, headers = head.partition(b"\r\n")
    lower = headers.lower()
    if b"transfer-encoding: chunked" in lower:
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            while len(rest) < size + 2:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed inside a chunk")
                rest += data
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2 :]
        return status, headers, body
    length = 0
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed inside the body")
        rest += data
    return status, headers, rest[:length]


@pytest.fixture
def control_path() -> Iterator[Path]:
    """A control socket path short enough for AF_UNIX (pytest's tmp_path can be too long),
    in a fresh folder only this user can use; removed after the test."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="aw-"))
    yield folder / "c.sock"
    shutil.rmtree(folder, ignore_errors=True)


def control_status(path: Path, timeout: float = 10.0) -> dict[str, Any]:
    """The server's ``status`` answer (JSON), over its control socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(b"status\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    text = data.decode()
    assert text.startswith("ok "), text
    result: dict[str, Any] = json.loads(text[3:])
    return result


def run_cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m asyncwsgi ARGS`` in ``cwd`` to completion (``env`` added to ours)."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "asyncwsgi", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def notifications(sock: socket.socket, until: str, timeout: float = 20) -> list[str]:
    """sd_notify datagrams read from ``sock`` (a fake ``NOTIFY_SOCKET`` with a short
    timeout), up to the first that starts with ``until``."""
    found: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if found[-1].startswith(until):
            return found
    raise AssertionError(f"no {until!r} in {found}")
