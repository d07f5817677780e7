"""The logs an operator configures: access line formats (gunicorn's atoms, json),
excluded paths, log files reopened on SIGUSR1 (daemons included), --log-config."""

from __future__ import annotations

import base64
import json
import logging
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from asyncwsgi.logs import AccessLog, check_access_format
from tests.conftest import ServerProcess, recv_until_closed

APP = """\
import sys

def application(environ, start_response):
    if environ["PATH_INFO"] == "/shout":
        environ["wsgi.errors"].write("shouted %s\\n" % environ["QUERY_STRING"])
        environ["wsgi.errors"].flush()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Served-By", "app")])
    return [b"hello"]
"""


class FakeExchange:
    def __init__(self, **fields: Any) -> None:
        self.client = ("10.0.0.7", 5555)
        self.method = "GET"
        self.path = b"/a b"
        self.query = b"x=1"
        self.http_version = "1.1"
        self.headers = [(b"Host", b"h.test"), (b"User-Agent", b'ua "q"')]
        self.started = time.time() - 0.25
        self.body_sent = 42
        self.response_headers = [("Content-Type", "text/plain")]
        self.status_code = 201
        self.__dict__.update(fields)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def written(fmt: str, exchange: FakeExchange, exclude: tuple[str, ...] = ()) -> list[str]:
    logger = logging.getLogger(f"test-access-{id(exchange)}")
    logger.propagate = False
    handler = Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    AccessLog(logger, fmt, exclude).write(exchange)  # type: ignore[arg-type]
    return handler.lines


def test_every_atom() -> None:
    auth = b"Basic " + base64.b64encode(b"ann:secret")
    exchange = FakeExchange(
        headers=[(b"Referer", b"r"), (b"User-Agent", b"ua"), (b"Authorization", auth)]
    )
    fmt = (
        "%(h)s|%(l)s|%(u)s|%(r)s|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|%(f)s|%(a)s|"
        "%(T)s|%(M)s|%({content-type}o)s|%({referer}i)s|%({missing}i)s"
    )
    (line,) = written(fmt, exchange)
    assert line == (
        "10.0.0.7|-|ann|GET /a b?x=1 HTTP/1.1|GET|/a b|x=1|HTTP/1.1|201|42|42|r|ua|"
        "0|250|text/plain|r|-"
    )
    (timing,) = written("%(D)s %(L)s %(p)s %(t)s", exchange)
    micros, seconds, pid, when = timing.split(" ", 3)
    assert 250_000 <= int(micros) < 1_000_000 and seconds.startswith("0.2")
    assert int(pid) > 0 and when.startswith("[") and when.endswith("]")


def test_client_bytes_are_escaped_and_an_empty_body_is_a_dash() -> None:
    exchange = FakeExchange(path=b'/"x"\n', body_sent=0)
    (line,) = written('"%(r)s" %(b)s %(B)s "%(a)s"', exchange)
    assert line == '"GET /\\"x\\"\\x0a?x=1 HTTP/1.1" - 0 "ua \\"q\\""'


def test_excluded_paths_write_nothing() -> None:
    assert written("combined", FakeExchange(path=b"/healthz"), ("/healthz",)) == []
    assert written("combined", FakeExchange(path=b"/static/a.css"), ("/static/*",)) == []
    assert len(written("combined", FakeExchange(path=b"/healthzz"), ("/healthz",))) == 1


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("%(zz)s", "unknown atom %(zz)s"),
        ("plain text", "has no atom"),
        ("%(h)s 100%", "write a % as %%"),
    ],
)
def test_a_bad_format_says_why(fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_access_format(fmt)


def test_a_bad_format_stops_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "app.wsgi").write_text(APP)
    server = ServerProcess(["app.wsgi", "--access-log-format", "%(nope)s"], tmp_path)
    assert server.proc.wait(15) == 2
    server.stop()
    assert "--access-log-format" in server.stderr() and "unknown atom %(nope)s" in server.stderr()


def test_json_lines_carry_the_request_byte_for_byte(start_server: Any, tmp_path: Path) -> None:
    (tmp_path / "app.wsgi").write_text(APP)
    server = start_server(tmp_path / "app.wsgi", "--access-log", "--access-log-format", "json")
    # (llhttp refuses raw bytes above 0x7f in a target: 400, and no access line.)
    targets = [b"/plain", b"/caf%C3%A9?q=%22x%22&y", b"/odd~path!$&'()*+,;=:@?a=%E2%82%AC&b=|"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for i, target in enumerate(targets):
            close = b"Connection: close\r\n" if i == len(targets) - 1 else b""
            sock.sendall(
                b"GET "
                + target
                + b' HTTP/1.1\r\nHost: j.test\r\nUser-Agent: a"b\r\n'
                + close
                + b"\r\n"
            )
        recv_until_closed(sock)
    assert server.stop() == 0
    records = [json.loads(line) for line in server.stdout_lines if line.startswith("{")]
    assert len(records) == 3
    for record, target in zip(records, targets, strict=True):
        path, _, query = target.partition(b"?")
        assert record["path"].encode("latin-1") == path
        assert record["query"].encode("latin-1") == query
        assert (record["method"], record["status"], record["bytes"]) == ("GET", 200, 5)
        assert (record["host"], record["user_agent"], record["remote"]) == (
            "j.test",
            'a"b',
            "127.0.0.1",
        )
        assert 0 <= record["duration_ms"] < 5000 and record["protocol"] == "HTTP/1.1"


def wait_for(path: Path, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        assert time.monotonic() < deadline, f"{text!r} never reached {path}: {content!r}"
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["embedded", "daemon"])
def test_log_files_are_reopened_on_sigusr1(tmp_path: Path, mode: str) -> None:
    (tmp_path / "app.wsgi").write_text(APP)
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    args = ["app.wsgi", "--bind", "127.0.0.1:0", "--control-socket", "none"]
    args += ["--access-logfile", str(access), "--error-logfile", str(errors)]
    if mode == "daemon":
        args += ["--mode", "daemon", "--processes", "1"]
    server = ServerProcess(args, tmp_path).wait_ready(30)
    try:
        httpx.get(server.url + "/shout?before", timeout=10)
        wait_for(access, "/shout?before")
        wait_for(errors, "shouted before")
        access.rename(tmp_path / "access.log.1")  # what logrotate does
        errors.rename(tmp_path / "error.log.1")
        server.signal(signal.SIGUSR1)
        wait_for(errors, "received SIGUSR1; reopened")
        time.sleep(0.3)  # the daemon takes its SIGUSR2 in its own time
        httpx.get(server.url + "/shout?after", timeout=10)
        wait_for(access, "/shout?after")
        wait_for(errors, "shouted after")  # from the daemon in daemon mode
    finally:
        server.stop()
    old_access = (tmp_path / "access.log.1").read_text()
    old_errors = (tmp_path / "error.log.1").read_text()
    assert "/shout?before" in old_access and "/shout?after" not in old_access
    assert "shouted before" in old_errors and "shouted after" not in old_errors
    assert server.stdout_lines == [line for line in server.stdout_lines if "/shout" not in line]


def test_log_config_file(tmp_path: Path) -> None:
    (tmp_path / "app.wsgi").write_text(APP)
    target = tmp_path / "access-json.log"
    (tmp_path / "logging.json").write_text(
        json.dumps(
            {
                "version": 1,
                "formatters": {"tagged": {"format": "ACCESS %(message)s"}},
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "filename": str(target),
                        "formatter": "tagged",
                    }
                },
                "loggers": {"asyncwsgi.access": {"handlers": ["file"], "propagate": False}},
            }
        )
    )
    args = ["app.wsgi", "--bind", "127.0.0.1:0", "--control-socket", "none"]
    server = ServerProcess([*args, "--log-config", "logging.json"], tmp_path).wait_ready()
    try:
        httpx.get(server.url + "/configured", timeout=10)
        assert wait_for(target, "/configured").startswith("ACCESS 127.0.0.1 - - [")
    finally:
        server.stop()
    (tmp_path / "bad.json").write_text('{"version": 1, "handlers": {"h": {"class": "no.Such"}}}')
    bad = ServerProcess([*args, "--log-config", "bad.json"], tmp_path)
    assert bad.proc.wait(15) == 2
    bad.stop()
    assert "--log-config" in bad.stderr() and "bad.json" in bad.stderr()


def test_a_reopen_that_fails_keeps_the_old_file(tmp_path: Path) -> None:
    from asyncwsgi import logs

    path = tmp_path / "access.log"
    logger = logging.getLogger("test-reopen-failure")
    logger.propagate = False
    handler = logs.ReopenableFileHandler(str(path), encoding="utf-8")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("before")
        path.rename(tmp_path / "access.log.1")
        path.mkdir()  # the new file cannot be opened
        logs.reopen()
        logger.info("after")  # still written, to the old file
        handler.flush()
        assert (tmp_path / "access.log.1").read_text() == "before\nafter\n"
    finally:
        logger.removeHandler(handler)
        handler.close()
