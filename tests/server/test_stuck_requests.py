"""Stuck requests, over real sockets: --slow-request logs a running request's Python
stack once, --request-timeout answers 504 in embedded mode too (the thread left to
finish, counted as stuck), and ``python -m asyncwsgi dump`` prints every thread of every
process with the request it serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from asyncwsgi.control import send_command
from tests.conftest import ROOT, ServerProcess

APP = """\
import time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        napping_in_the_app(float(environ["QUERY_STRING"]))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]

def napping_in_the_app(seconds):
    time.sleep(seconds)
"""


def serve(tmp_path: Path, *options: str) -> ServerProcess:
    (tmp_path / "app.wsgi").write_text(APP)
    args = ["app.wsgi", "--bind", "127.0.0.1:0", "--no-access-log"]
    args += ["--control-socket", str(tmp_path / "control.sock"), *options]
    return ServerProcess(args, tmp_path).wait_ready(30)


def wait_for_log(server: ServerProcess, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while text not in server.stderr():
        assert time.monotonic() < deadline, f"{text!r} not in:\n{server.stderr()}"
        time.sleep(0.05)
    return server.stderr()


def in_background(url: str) -> dict[str, int]:
    result: dict[str, int] = {}

    def get() -> None:
        result["status"] = httpx.get(url, timeout=30).status_code

    threading.Thread(target=get, daemon=True).start()
    return result


@pytest.mark.parametrize("mode", ["embedded", "daemon"])
def test_a_slow_request_is_logged_once_with_its_stack(tmp_path: Path, mode: str) -> None:
    daemon = ["--mode", "daemon", "--processes", "1"] if mode == "daemon" else []
    server = serve(tmp_path, "--slow-request", "0.3", *daemon)
    try:
        assert httpx.get(server.url + "/sleep?1.2", timeout=10).text == "done"
        log = wait_for_log(server, "slow request: GET /sleep?1.2")
    finally:
        server.stop()
    assert log.count("slow request: GET /sleep?1.2") == 1, "once per request"
    line = next(line for line in log.splitlines() if "slow request:" in line)
    assert "(--slow-request 0.3)" in line and "on thread 'asyncwsgi-" in line
    assert "in napping_in_the_app" in log and "time.sleep(seconds)" in log


def test_request_timeout_in_embedded_mode(tmp_path: Path) -> None:
    server = serve(tmp_path, "--request-timeout", "0.5", "--threads", "2", "--access-log")
    try:
        began = time.monotonic()
        answer = httpx.get(server.url + "/sleep?2", timeout=10)
        took = time.monotonic() - began
        assert answer.status_code == 504 and 0.4 < took < 1.8, took
        log = wait_for_log(server, "ran longer than 0.5 s (--request-timeout)")
        assert "in napping_in_the_app" in log and "stuck until it does" in log
        status = json.loads(send_command(str(tmp_path / "control.sock"), ["status"])[3:])
        assert status["stuck"] == 1  # its thread still sleeps
        assert httpx.get(server.url + "/", timeout=10).text == "done"  # the other thread
        time.sleep(2.0)
        status = json.loads(send_command(str(tmp_path / "control.sock"), ["status"])[3:])
        assert status["stuck"] == 0  # the thread finished; its late response went nowhere
        assert httpx.get(server.url + "/", timeout=10).text == "done"
    finally:
        server.stop()
    assert "Traceback" not in server.stderr().split("Its stack:")[0]
    # The 504 is logged as any answer is.
    assert any('"GET /sleep?2 HTTP/1.1" 504 ' in line for line in server.stdout_lines)


def dump(tmp_path: Path, *group: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncwsgi",
            "dump",
            *group,
            "--control-socket",
            str(tmp_path / "control.sock"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=30,
    )


@pytest.mark.parametrize("mode", ["embedded", "daemon", "copies"])
def test_dump_prints_every_thread_with_its_request(tmp_path: Path, mode: str) -> None:
    extra = {
        "embedded": [],
        "daemon": ["--mode", "daemon", "--processes", "2"],
        "copies": ["--processes", "2"],
    }[mode]
    server = serve(tmp_path, *extra)
    try:
        pending = in_background(server.url + "/sleep?1.5")
        time.sleep(0.5)
        done = dump(tmp_path)
        assert done.returncode == 0, done.stderr
        out = done.stdout
        headers = [line for line in out.splitlines() if line.startswith("== process ")]
        assert len(headers) == (3 if mode != "embedded" else 1), headers
        serving = [line for line in out.splitlines() if "-- GET /sleep?1.5 for " in line]
        assert len(serving) == 1, out
        assert "in napping_in_the_app" in out
        if mode == "daemon":
            assert sum(": daemon group 'default', generation 1" in h for h in headers) == 2
            assert dump(tmp_path, "nosuch").returncode == 1
        deadline = time.monotonic() + 10
        while "status" not in pending:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert pending["status"] == 200
    finally:
        server.stop()
