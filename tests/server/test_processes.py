"""Embedded mode with ``--processes N``: copies of the whole server on shared sockets,
each reloading its script in-process, kept at strength by the process pool manager."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.timeout(90)

SCRIPT = """\
import os
VERSION = {version!r}

def application(environ, start_response):
    body = f"{{VERSION}} {{os.getpid()}}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def write_script(path: Path, version: str) -> None:
    before = path.stat() if path.exists() else None
    path.write_text(SCRIPT.format(version=version))
    if before is not None and path.stat().st_mtime_ns == before.st_mtime_ns:
        os.utime(path, ns=(before.st_mtime_ns + 1_000_000, before.st_mtime_ns + 1_000_000))


def answers(url: str, count: int) -> list[tuple[str, int]]:
    """``count`` responses, each on a new connection (so the kernel spreads them)."""
    seen = []
    for _ in range(count):
        response = httpx.get(url, headers={"Connection": "close"}, timeout=10)
        assert response.status_code == 200
        version, pid = response.text.split()
        seen.append((version, int(pid)))
    return seen


def copy_pids(main_pid: int) -> set[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(main_pid), "-f", "asyncwsgi: server copy"],
        capture_output=True,
        text=True,
        check=False,
    )
    return {int(p) for p in out.stdout.split()}


def test_two_copies_both_serve_and_both_reload(start_server, tmp_path: Path) -> None:
    script = tmp_path / "app.wsgi"
    write_script(script, "v1")
    server = start_server(script, "--processes", "2")
    pids = copy_pids(server.proc.pid)
    assert len(pids) == 2
    first = answers(server.url, 60)
    assert {pid for _, pid in first} == pids, "both copies answer requests"
    assert {version for version, _ in first} == {"v1"}

    write_script(script, "v2")
    second = answers(server.url, 60)
    assert {version for version, _ in second} == {"v2"}, "every copy reloads on the change"
    assert {pid for _, pid in second} == pids, "in-process reload: the same copies"
    assert server.stderr().count("Reloading WSGI script") == 2


def test_a_copy_that_dies_is_replaced(start_server, tmp_path: Path) -> None:
    script = tmp_path / "app.wsgi"
    write_script(script, "v1")
    server = start_server(script, "--processes", "2")
    pids = copy_pids(server.proc.pid)
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = copy_pids(server.proc.pid)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"no replacement copy; stderr:\n{server.stderr()}")
    assert {pid for _, pid in answers(server.url, 60)} == now
    assert "died (killed by SIGKILL)" in server.stderr()


def test_sighup_reaches_every_copy(start_server, tmp_path: Path) -> None:
    script = tmp_path / "app.wsgi"
    write_script(script, "v1")
    server = start_server(script, "--processes", "2")
    answers(server.url, 10)
    server.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while server.stderr().count("received SIGHUP; the next request reloads") < 2:
        assert time.monotonic() < deadline, server.stderr()
        time.sleep(0.05)


def test_sigterm_stops_every_copy(start_server, tmp_path: Path) -> None:
    script = tmp_path / "app.wsgi"
    write_script(script, "v1")
    server = start_server(script, "--processes", "2")
    pids = copy_pids(server.proc.pid)
    assert server.stop() == 0
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def test_a_script_that_cannot_load_stops_the_start(start_server, tmp_path: Path) -> None:
    script = tmp_path / "broken.wsgi"
    script.write_text("def application(:\n")
    server = start_server(script, "--processes", "2", wait=False)
    assert server.proc.wait(30) == 1
    assert "could not load the application" in server.stderr()
