"""Daemons that misbehave, against the real server over real sockets.

A daemon runs application code, so the front trusts it no more than the application: a
response head it sends gets embedded mode's checks (502 otherwise), it may send no more
response bytes than it was granted (it is killed otherwise, and the front's memory stays
bounded), it gives up on a client that takes nothing for ``--send-timeout``, a daemon
that stops answering PINGs gets no new requests and is replaced, a replacement whose
import hangs is killed after ``--startup-timeout`` while the old processes keep serving,
and no daemon (or embedded copy) outlives its server, however the server dies.

Hostile daemons are made by scripts that, at import in the daemon, switch off the
daemon's own safeguards (``asyncwsgi.wsgi.response.check_headers``, the credit wait in
``DaemonStream``): what code in a daemon can do.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from asyncwsgi.control import send_command
from tests.conftest import ServerProcess
from tests.daemon.test_daemon import alive, children, title, wait_until

pytestmark = pytest.mark.timeout(90)

StartServer = Callable[..., ServerProcess]

PLAIN = """
import os, time

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"] or "0.1"))
    if path == "/big":
        size = 64 << 20
        start_response("200 OK", [("Content-Length", str(size))])
        return (b"x" * (1 << 20) for _ in range(size >> 20))
    body = f"{VERSION} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def plain_script(path: Path, version: str, prelude: str = "") -> Path:
    """The plain app, version ``version``; ``prelude`` runs at import, first. Written
    aside and renamed over, its mtime a second on, as a deploy does."""
    old = path.stat().st_mtime_ns if path.exists() else time.time_ns()
    aside = path.with_name(path.name + ".new")
    aside.write_text(f"VERSION = {version!r}\n{prelude}\n{PLAIN}")
    os.utime(aside, ns=(old + 1_000_000_000,) * 2)
    os.replace(aside, path)
    return path


def daemon(*more: str, processes: int = 1, threads: int = 2) -> tuple[str, ...]:
    return ("--mode", "daemon", "--processes", str(processes), "--threads", str(threads), *more)


def version_and_pid(server: ServerProcess, timeout: float = 10.0) -> tuple[str, int]:
    response = httpx.get(server.url + "/", timeout=timeout)
    assert response.status_code == 200, (response.status_code, response.text)
    version, pid = response.text.split()
    return version, int(pid)


def group_pids(server_pid: int, group: str) -> set[int]:
    return {p for p in children(server_pid) if title(p).startswith(f"asyncwsgi: daemon {group}")}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def status(server: ServerProcess) -> dict[str, Any]:
    """The server's answer to ``status``, through its control socket (from its log)."""
    line = next(x for x in server.stderr().splitlines() if "control socket: " in x)
    path = line.split("control socket: ", 1)[1].split(" ", 1)[0]
    answer = send_command(path, ["status"])
    assert answer.startswith("ok "), answer
    result: dict[str, Any] = json.loads(answer[3:])
    return result


def raw_request(server: ServerProcess, path: str, *, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return sock


# ==========================================================================================
# What a daemon sends: its response head, and no more than its credit
# ==========================================================================================

NO_HEAD_CHECKS = """
import asyncwsgi.wsgi.response as _response
_response.check_headers = lambda headers: None
_response.check_status = lambda status: None
"""


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("200 OK", [("X-Split", "a\r\nSet-Cookie: evil=1")]),
        ("200 OK", [("X Test", "1")]),
        ("999 Nine", []),
    ],
    ids=["crlf-in-a-header", "space-in-a-name", "status-999"],
)
def test_a_response_head_a_daemon_cannot_send_is_a_502(
    start_server: StartServer, tmp_path: Path, status: str, headers: list[tuple[str, str]]
) -> None:
    script = tmp_path / "split.wsgi"
    script.write_text(
        NO_HEAD_CHECKS
        + "import os\n"
        + "def application(environ, start_response):\n"
        + "    if environ['PATH_INFO'] == '/pid':\n"
        + "        start_response('200 OK', [('Content-Length', str(len(str(os.getpid()))))])\n"
        + "        return [str(os.getpid()).encode()]\n"
        + f"    start_response({status!r}, {headers!r})\n"
        + "    return [b'poison']\n"
    )
    server = start_server(script, *daemon())
    pid = httpx.get(server.url + "/pid", timeout=10).text
    sock = raw_request(server, "/split")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), data
    assert b"evil" not in data and b"X Test" not in data and b"poison" not in data
    assert "response head that cannot be sent" in server.stderr()
    # The daemon is not at fault beyond that response: the same process serves on.
    assert httpx.get(server.url + "/pid", timeout=10).text == pid


IGNORE_CREDIT = """
import asyncwsgi.daemon.stream as _stream
_stream.DaemonStream._allowance = lambda self, want: min(want, 256 * 1024)
"""


def test_a_daemon_pushing_past_its_credit_is_killed_and_the_front_stays_small(
    start_server: StartServer, tmp_path: Path
) -> None:
    script = plain_script(tmp_path / "flood.wsgi", "v1", prelude=IGNORE_CREDIT)
    server = start_server(script, *daemon())
    [first] = group_pids(server.proc.pid, "default")
    version_and_pid(server)
    before = rss_kib(server.proc.pid)

    # 64 MiB to a client that reads nothing: without the credit, all of it in the front.
    sock = raw_request(server, "/big", rcvbuf=4096)
    wait_until(lambda: not alive(first), timeout=20, what="the flooding daemon to be killed")
    grown = rss_kib(server.proc.pid) - before
    sock.close()

    assert grown < 32 * 1024, f"the front grew by {grown} KiB"
    log = server.stderr()
    assert "over the credit granted" in log, log
    # Its replacement serves.
    wait_until(lambda: group_pids(server.proc.pid, "default") - {first}, what="a replacement")
    assert version_and_pid(server, timeout=20)[1] != first


# ==========================================================================================
# --send-timeout in the daemon
# ==========================================================================================


def test_a_daemon_gives_up_on_a_client_that_takes_nothing_for_send_timeout(
    start_server: StartServer, tmp_path: Path
) -> None:
    # The client trickles: the front sees it take bytes (so it does not drop it), but the
    # daemon's credit does not come back for far longer than --send-timeout.
    script = plain_script(tmp_path / "app.wsgi", "v1")
    server = start_server(script, *daemon("--send-timeout", "1", threads=1))
    version_and_pid(server)
    sock = raw_request(server, "/big", rcvbuf=4096)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            try:
                if not sock.recv(1024):
                    break
            except OSError:
                break
            time.sleep(0.05)

    reader = threading.Thread(target=trickle, daemon=True)
    reader.start()
    try:
        began = time.monotonic()
        # The daemon's only thread is freed once it gives up on the trickling client.
        version_and_pid(server, timeout=90)
        waited = time.monotonic() - began
    finally:
        stop.set()
        sock.close()
        reader.join(5)
    assert waited < 15, f"the next request waited {waited:.1f} s"


# ==========================================================================================
# Liveness: a stopped daemon
# ==========================================================================================


def test_a_stopped_daemon_gets_no_new_requests_and_is_replaced(
    start_server: StartServer, tmp_path: Path
) -> None:
    script = plain_script(tmp_path / "app.wsgi", "v1")
    server = start_server(
        script,
        *daemon("--graceful-timeout", "2", "--shutdown-timeout", "1", processes=2),
    )
    pids = group_pids(server.proc.pid, "default")
    assert len(pids) == 2
    stopped = min(pids)
    os.kill(stopped, signal.SIGSTOP)
    try:
        wait_until(lambda: "has not answered" in server.stderr(), timeout=15, what="the warning")
        # From now on every request is answered, by another process, and at once.
        for _ in range(20):
            began = time.monotonic()
            _, pid = version_and_pid(server, timeout=10)
            assert pid != stopped and time.monotonic() - began < 5
        # Its replacement was started, and the stopped process is ended.
        wait_until(lambda: not alive(stopped), timeout=20, what="the stopped process to end")
        wait_until(lambda: len(group_pids(server.proc.pid, "default")) == 2, timeout=20)
    finally:
        if alive(stopped):
            os.kill(stopped, signal.SIGCONT)
    assert stopped not in group_pids(server.proc.pid, "default")


def test_sigterm_to_the_whole_process_group_stops_without_new_daemons(
    start_server: StartServer, tmp_path: Path
) -> None:
    # systemd's KillMode=control-group (and kill -TERM -PGID): the daemons get SIGTERM
    # with the server, and may exit first; the server must not start replacements.
    boots = tmp_path / "boots.log"
    count_boots = f"import os\nopen({str(boots)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
    script = plain_script(tmp_path / "app.wsgi", "v1", prelude=count_boots)
    server = start_server(script, *daemon(processes=2))
    pids = group_pids(server.proc.pid, "default")
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    server.signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    assert len(boots.read_text().split()) == 2, server.stderr()  # no daemon started since
    assert not any(alive(p) for p in pids)


# ==========================================================================================
# Boot deadline: --startup-timeout
# ==========================================================================================

HANG_AT_IMPORT = "import time\ntime.sleep(3600)\n"


def test_a_replacement_whose_import_hangs_is_killed_and_the_old_ones_keep_serving(
    start_server: StartServer, tmp_path: Path
) -> None:
    script = plain_script(tmp_path / "app.wsgi", "v1")
    server = start_server(script, *daemon("--startup-timeout", "2", processes=2))
    old = group_pids(server.proc.pid, "default")
    plain_script(script, "v2", prelude=HANG_AT_IMPORT)

    # Served by v1 throughout, while the replacement hangs and once it was killed.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert version_and_pid(server)[0] == "v1"
        time.sleep(0.05)
    wait_until(lambda: "was not ready within 2 s" in server.stderr(), what="the error")
    log = server.stderr()
    assert "keeping generation 1 serving (degraded)" in log, log
    assert group_pids(server.proc.pid, "default") == old
    group = status(server)["groups"]["default"]
    assert (group["generation"], group["given_up"], group["failed"]) == (2, 2, False)
    assert {p["generation"] for p in group["processes"]} == {1}
    # The next change is tried.
    plain_script(script, "v3")
    wait_until(lambda: version_and_pid(server)[0] == "v3", timeout=20, what="v3 served")


def test_a_first_boot_whose_import_hangs_is_an_error(
    start_server: StartServer, tmp_path: Path
) -> None:
    script = plain_script(tmp_path / "app.wsgi", "v1", prelude=HANG_AT_IMPORT)
    server = start_server(script, *daemon("--startup-timeout", "1"), wait=False)
    assert server.proc.wait(30) == 1
    assert "was not ready within 1 s" in server.stderr()
    assert not server.addresses


# ==========================================================================================
# No process outlives its server
# ==========================================================================================


@pytest.fixture
def hanging_boot(tmp_path: Path) -> Iterator[Callable[..., tuple[ServerProcess, set[int]]]]:
    """A server whose processes hang in their first import; (server, those processes)."""
    servers: list[ServerProcess] = []

    def start(*mode: str) -> tuple[ServerProcess, set[int]]:
        script = plain_script(tmp_path / "app.wsgi", "v1", prelude=HANG_AT_IMPORT)
        args = [str(script), "--bind", "127.0.0.1:0", "--no-access-log", *mode]
        server = ServerProcess(args, tmp_path)
        servers.append(server)
        found = wait_until(lambda: children(server.proc.pid), what="the processes to start")
        return server, found

    yield start
    for server in servers:
        server.stop()


MODES = {
    "daemon": ("--mode", "daemon", "--processes", "2", "--group", "hangs"),
    "embedded-copies": ("--processes", "2"),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_sigkill_to_the_server_takes_its_processes_with_it(
    hanging_boot: Callable[..., tuple[ServerProcess, set[int]]], mode: str
) -> None:
    server, pids = hanging_boot(*MODES[mode])
    server.proc.kill()
    server.proc.wait(10)
    wait_until(lambda: not any(alive(p) for p in pids), timeout=10, what="no orphan left")


@pytest.mark.parametrize("mode", list(MODES))
def test_sigterm_during_the_first_boot_stops_everything(
    hanging_boot: Callable[..., tuple[ServerProcess, set[int]]], mode: str
) -> None:
    server, pids = hanging_boot(*MODES[mode])
    server.signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    assert not any(alive(p) for p in pids)
    assert "stopped while starting" in server.stderr()


def test_a_daemon_of_a_server_killed_mid_request_exits(
    start_server: StartServer, tmp_path: Path
) -> None:
    script = plain_script(tmp_path / "app.wsgi", "v1")
    server = start_server(script, *daemon(processes=2))
    pids = group_pids(server.proc.pid, "default")
    sock = raw_request(server, "/sleep?30")  # a daemon is running it
    time.sleep(0.5)
    server.proc.kill()
    server.proc.wait(10)
    wait_until(lambda: not any(alive(p) for p in pids), timeout=10, what="no orphan left")
    sock.close()
