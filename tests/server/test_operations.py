"""Operating a server: Prometheus metrics that match the requests sent (parsed with
``prometheus_client``'s own parser, under load), health and readiness, the drain of
``--shutdown-delay``, and systemd's notify protocol (READY, STATUS, STOPPING, WATCHDOG)
against a fake ``NOTIFY_SOCKET`` -- all over real sockets and real signals."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess, notifications

APP = """\
def application(environ, start_response):
    status = environ["QUERY_STRING"] or "200"
    start_response(status + " X", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def metrics_address(server: ServerProcess, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(r"metrics and health on (\S+)", server.stderr())
        if found:
            return "http://" + found.group(1)
        assert time.monotonic() < deadline, server.stderr()
        time.sleep(0.05)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app.wsgi").write_text(APP)
    return tmp_path / "app.wsgi"


def start(tmp_path: Path, *options: str, env: dict[str, str] | None = None) -> ServerProcess:
    args = ["app.wsgi", "--bind", "127.0.0.1:0", "--no-access-log", "--control-socket", "none"]
    return ServerProcess([*args, *options], tmp_path, env=env).wait_ready(30)


def test_metrics_count_every_request_of_every_daemon(tmp_path: Path, app: Path) -> None:
    server = start(
        tmp_path,
        "--mode", "daemon", "--processes", "2", "--threads", "4",
        "--metrics-bind", "127.0.0.1:0",
    )  # fmt: skip
    try:
        metrics = metrics_address(server)
        statuses = ["200"] * 240 + ["404"] * 40 + ["503"] * 20
        scrapes: list[str] = []
        with ThreadPoolExecutor(16) as pool:
            answers = pool.map(
                lambda s: httpx.get(f"{server.url}/?{s}", timeout=30).status_code, statuses
            )
            while len(scrapes) < 3:  # scraped while the load runs
                scrapes.append(httpx.get(metrics + "/metrics", timeout=10).text)
            assert sorted(answers) == sorted(int(s) for s in statuses)
        for text in scrapes:
            samples(text)  # each parses
        final = samples(httpx.get(metrics + "/metrics", timeout=10).text)
    finally:
        server.stop()
    total = "asyncwsgi_requests_total"
    assert final[(total, (("mount", "/"), ("status", "2xx")))] == 240
    assert final[(total, (("mount", "/"), ("status", "4xx")))] == 40
    assert final[(total, (("mount", "/"), ("status", "5xx")))] == 20
    assert final[("asyncwsgi_request_duration_seconds_count", (("mount", "/"),))] == 300
    group = (("group", "default"),)
    assert final[("asyncwsgi_processes", group)] == 2
    assert final[("asyncwsgi_group_generation", group)] == 1
    busy = final[("asyncwsgi_threads", (("group", "default"), ("state", "busy")))]
    idle = final[("asyncwsgi_threads", (("group", "default"), ("state", "idle")))]
    assert (busy, busy + idle) == (0, 8)
    assert final[("asyncwsgi_requests_in_flight", ())] == 0
    assert final[("asyncwsgi_requests_queued", group)] == 0
    assert ("asyncwsgi_queue_wait_seconds_total", group) in final


def test_restarts_and_reloads_are_counted(tmp_path: Path, app: Path) -> None:
    server = start(
        tmp_path, "--mode", "daemon", "--processes", "1", "--metrics-bind", "127.0.0.1:0"
    )
    try:
        metrics = metrics_address(server)
        server.signal(signal.SIGHUP)  # a reload: a new generation
        deadline = time.monotonic() + 20
        while True:
            found = samples(httpx.get(metrics + "/metrics", timeout=10).text)
            reason = (("group", "default"), ("reason", "reload"))
            if found.get(("asyncwsgi_process_restarts_total", reason)) == 1:
                break
            assert time.monotonic() < deadline, found
            time.sleep(0.1)
        assert found[("asyncwsgi_reloads_total", (("group", "default"),))] == 1
        assert found[("asyncwsgi_group_generation", (("group", "default"),))] == 2
    finally:
        server.stop()


def test_health_readiness_and_the_drain(tmp_path: Path, app: Path) -> None:
    server = start(tmp_path, "--metrics-bind", "127.0.0.1:0", "--shutdown-delay", "2")
    metrics = metrics_address(server)
    assert httpx.get(metrics + "/healthz").text == "ok\n"
    assert httpx.get(metrics + "/readyz").status_code == 200
    assert httpx.get(metrics + "/nothing").status_code == 404
    host, port = metrics.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := raw.recv(4096):  # HTTP/1.0: closed after the answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"ok\n")
    assert httpx.get(server.url + "/metrics").text == "ok"  # the app's port has no metrics
    began = time.monotonic()
    server.signal(signal.SIGTERM)
    time.sleep(0.3)
    ready = httpx.get(metrics + "/readyz")
    assert ready.status_code == 503 and "draining" in ready.text
    assert httpx.get(server.url + "/").status_code == 200  # still serving
    assert server.proc.wait(15) == 0
    assert time.monotonic() - began >= 1.9, "it served for the delay before stopping"
    server.stop()


def test_metrics_need_one_process_to_see_every_request(tmp_path: Path, app: Path) -> None:
    server = ServerProcess(
        ["app.wsgi", "--processes", "2", "--metrics-bind", "127.0.0.1:0"], tmp_path
    )
    assert server.proc.wait(15) == 2
    server.stop()
    assert "metrics_bind: not yet with copies" in server.stderr()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def test_systemd_notify_ready_status_watchdog_and_stopping(
    tmp_path: Path, app: Path, notify_socket: socket.socket
) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}
    server = start(
        tmp_path, "--mode", "daemon", "--processes", "1", "--shutdown-delay", "1", env=env
    )
    try:
        first = notifications(notify_socket, "READY=1")
        assert first[-1] == "READY=1", "READY once the group is ready and the sockets listen"
        assert "serving on http://127.0.0.1:" in notifications(notify_socket, "STATUS=")[-1]
        pings = [m for m in notifications(notify_socket, "WATCHDOG=1") if m == "WATCHDOG=1"]
        more = []
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            try:
                more.append(notify_socket.recv(4096).decode())
            except TimeoutError:
                break
        assert len(pings) + more.count("WATCHDOG=1") >= 4, "a ping each 0.1 s"
        server.signal(signal.SIGTERM)
        stopping = notifications(notify_socket, "STOPPING=1")
        assert any(
            m.startswith("STATUS=draining") for m in notifications(notify_socket, "STATUS=draining")
        )
        assert "STOPPING=1" in stopping
        assert server.proc.wait(15) == 0
    finally:
        server.stop()
