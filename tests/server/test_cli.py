"""``python -m asyncwsgi``: exit codes, messages, signals and shutdown; and the in-process
API (``asyncwsgi.serve``, ``asyncwsgi.Config``)."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

import asyncwsgi
from asyncwsgi import cli
from asyncwsgi.errors import ConfigError, ScriptLoadError
from tests.conftest import EXAMPLES, ServerProcess, read_response, recv_until_closed

APP = "cli_app:application"
HELLO = EXAMPLES / "hello.wsgi"


def exit_code(server: ServerProcess, timeout: float = 15.0) -> int:
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server still running after {timeout} s; stderr:\n{server.stderr()}")


def stderr_lines(server: ServerProcess) -> list[str]:
    return [line for line in server.stderr().splitlines() if line.strip()]


def wait_for_file_line(path: Path, line: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if line in path.read_text().splitlines():
                return
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{line!r} never written to {path}")
        time.sleep(0.01)


def send_get(sock: socket.socket, target: str) -> None:
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode())


# -- an application that cannot be loaded: exit 1, one line --------------------------------


def assert_one_line_load_error(server: ServerProcess, *needles: str) -> None:
    assert exit_code(server) == 1
    lines = stderr_lines(server)
    assert len(lines) == 1, "expected one line on stderr:\n" + "\n".join(lines)
    assert "Traceback" not in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not server.addresses  # it never said it was listening


def test_syntax_error_in_the_script(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "broken.wsgi"
    script.write_text("def application(environ, start_response):\n    return [b'x'\n\nx = (\n")
    server = start_server(script, wait=False)
    assert_one_line_load_error(server, str(script), "SyntaxError")


def test_script_raising_at_import(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "raises.wsgi"
    script.write_text("import os\nraise RuntimeError('cannot start: ' + 'no database')\n")
    server = start_server(script, wait=False)
    assert_one_line_load_error(server, str(script), "RuntimeError", "no database")


def test_script_importing_a_missing_module(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "imports.wsgi"
    script.write_text("import no_such_module_for_asyncwsgi_tests\n")
    server = start_server(script, wait=False)
    assert_one_line_load_error(server, str(script), "no_such_module_for_asyncwsgi_tests")


def test_missing_script_file(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "nowhere" / "missing.wsgi"
    server = start_server(script, wait=False)
    assert_one_line_load_error(server, str(script))


def test_script_without_the_callable(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "nocallable.wsgi"
    script.write_text("app = None\n")
    server = start_server(script, wait=False)
    assert_one_line_load_error(server, str(script), "application")


def test_callable_option_naming_nothing(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(HELLO, "--callable", "nothing_here", wait=False)
    assert_one_line_load_error(server, "hello.wsgi", "nothing_here")


def test_missing_module_target(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server("no_such_module_for_asyncwsgi_tests:app", wait=False)
    assert_one_line_load_error(server, "no_such_module_for_asyncwsgi_tests")


def test_missing_attribute_of_a_module_target(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server("cli_app:not_there", wait=False)
    assert_one_line_load_error(server, "cli_app", "not_there")


# -- bad options: exit 2, naming the option ------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--threads", "x", "threads"),
        ("--bind", "nonsense", "bind"),
        ("--script-reloading", "maybe", "script-reloading"),
    ],
)
def test_bad_option_value(start_server, option: str, value: str, named: str) -> None:  # type: ignore[no-untyped-def]
    server = start_server(HELLO, option, value, wait=False)
    assert exit_code(server) == 2
    stderr = server.stderr()
    assert named in stderr, stderr
    assert value in stderr, stderr
    assert "Traceback" not in stderr
    assert not server.addresses


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--threads", "0", "threads"),
        ("--threads", "-2", "threads"),
        ("--bind", "127.0.0.1:99999", "bind"),
        ("--bind", "127.0.0.1:http", "bind"),
        ("--bind", "unix:", "bind"),
        ("--graceful-timeout", "-1", "graceful-timeout"),
        ("--graceful-timeout", "soon", "graceful-timeout"),
        ("--loop", "tokio", "loop"),
        ("--log-level", "loud", "log-level"),
        ("--root-path", "no-slash", "root-path"),
        ("--limit-request-body", "-5", "limit-request-body"),
        ("--callable", "not an identifier", "callable"),
    ],
)
def test_bad_option_value_in_process(
    capsys: pytest.CaptureFixture[str], option: str, value: str, named: str
) -> None:
    """The same check without a subprocess per case: ``cli.main`` is what ``-m`` runs."""
    try:
        code = cli.main([str(HELLO), "--bind", "127.0.0.1:0", option, value])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    stderr = capsys.readouterr().err
    assert named in stderr, stderr
    assert value in stderr, stderr


def test_unknown_option(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(HELLO, "--no-such-option", wait=False)
    assert exit_code(server) == 2
    assert "--no-such-option" in server.stderr()


def test_address_in_use(start_server) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = start_server(HELLO, "--bind", f"127.0.0.1:{port}", wait=False)
        code = exit_code(server)
    assert code != 0
    stderr = server.stderr()
    assert f"127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr
    assert len(stderr_lines(server)) == 1, stderr


# -- signals and shutdown ----------------------------------------------------------------


def test_sigterm_lets_the_request_in_flight_finish(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    events = tmp_path / "events"
    server = start_server(APP, env={"CLI_TEST_EVENTS": str(events)})
    with server.connect() as sock:
        send_get(sock, "/slow?s=1")
        wait_for_file_line(events, "slow started")
        server.signal(signal.SIGTERM)
        # The listening socket closes at once: new connections are refused ...
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.01)
        # ... and the request already running gets its whole answer.
        status, headers, body = read_response(sock)
        assert status == b"HTTP/1.1 200 OK"
        assert body == b"slow done"
        assert b"connection: close" in headers.lower()
        assert recv_until_closed(sock) == b""
    assert exit_code(server) == 0


def test_sigterm_with_idle_keep_alive_connections_exits_promptly(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").status_code == 200  # the connection stays open, idle
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert exit_code(server) == 0
    assert time.monotonic() - started < 5  # not the 30 s graceful timeout


def test_graceful_timeout_bounds_shutdown(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    events = tmp_path / "events"
    server = start_server(APP, "--graceful-timeout", "0.5", env={"CLI_TEST_EVENTS": str(events)})
    with server.connect() as sock:
        send_get(sock, "/slow?s=10")
        wait_for_file_line(events, "slow started")
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        code = exit_code(server, timeout=10)
        elapsed = time.monotonic() - started
        raw = recv_until_closed(sock, timeout=5)
    assert elapsed < 6, f"took {elapsed:.1f} s to exit with --graceful-timeout 0.5"
    assert code == 0
    assert b"slow done" not in raw


def test_sigint_exits_cleanly(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP)
    assert httpx.get(server.url + "/").text == "hello from cli_app"
    server.signal(signal.SIGINT)
    assert exit_code(server) == 0
    assert "Traceback" not in server.stderr()
    assert "KeyboardInterrupt" not in server.stderr()


def test_sigint_lets_the_request_in_flight_finish(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    events = tmp_path / "events"
    server = start_server(APP, env={"CLI_TEST_EVENTS": str(events)})
    with server.connect() as sock:
        send_get(sock, "/slow?s=0.5")
        wait_for_file_line(events, "slow started")
        server.signal(signal.SIGINT)
        _, _, body = read_response(sock)
    assert body == b"slow done"
    assert exit_code(server) == 0


def test_listening_line_once_per_bind(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP, "--bind", "127.0.0.1:0")
    assert len(server.addresses) == 2
    assert len(set(server.addresses)) == 2
    for address in server.addresses:
        assert address.startswith("http://127.0.0.1:")
        assert httpx.get(address + "/").text == "hello from cli_app"
    assert server.stop() == 0
    listening = [line for line in server.stdout_lines if line.startswith("Listening on")]
    assert len(listening) == 2


def test_listening_line_for_a_single_bind(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP)
    assert server.stop() == 0
    listening = [line for line in server.stdout_lines if line.startswith("Listening on")]
    assert listening == [f"Listening on http://127.0.0.1:{server.port}"]


def test_access_log_line(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP, "--access-log")
    httpx.get(server.url + "/path?q=1", headers={"User-Agent": "cli-test/1", "Referer": "r"})
    assert server.stop() == 0
    lines = [line for line in server.stdout_lines if "/path?q=1" in line]
    assert len(lines) == 1
    assert '"GET /path?q=1 HTTP/1.1" 200 18 "r" "cli-test/1"' in lines[0]
    assert lines[0].startswith("127.0.0.1 - - [")


def test_access_log_escapes_what_the_client_sent(start_server) -> None:  # type: ignore[no-untyped-def]
    # A quote would end the field early and bytes that are not printable ASCII could fake
    # a line: escaped as Apache escapes them.
    server = start_server(APP, "--access-log")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b'GET /esc HTTP/1.1\r\nHost: t\r\nUser-Agent: a" "b\\c\r\n'
            b"Referer: caf\xc3\xa9\tx\r\nConnection: close\r\n\r\n"
        )
        recv_until_closed(sock)
    assert server.stop() == 0
    (line,) = [line for line in server.stdout_lines if "/esc" in line]
    # ... and the request's duration in seconds ends the line.
    escaped, _, duration = line.rpartition(" ")
    assert escaped.endswith('"caf\\xc3\\xa9\\x09x" "a\\" \\"b\\\\c"'), line
    assert re.fullmatch(r"\d+\.\d{6}", duration), line


def test_no_access_log(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(APP)  # the fixture passes --no-access-log
    httpx.get(server.url + "/quiet")
    assert server.stop() == 0
    assert not [line for line in server.stdout_lines if "/quiet" in line]


# -- the Python API ----------------------------------------------------------------------


def hello_app(environ, start_response):  # type: ignore[no-untyped-def]
    body = f"in-process {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


async def test_serve_in_process() -> None:
    stop = asyncio.Event()
    calls: list[list[str]] = []
    ready = asyncio.Event()

    def on_ready(addresses: list[str]) -> None:
        calls.append(list(addresses))
        ready.set()

    task = asyncio.ensure_future(
        asyncwsgi.serve(
            hello_app,
            bind=("127.0.0.1:0",),
            threads=2,
            access_log=False,
            ready=on_ready,
            shutdown_trigger=stop.wait,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
        assert len(calls) == 1 and len(calls[0]) == 1
        address = calls[0][0]
        assert address.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient() as client:
            r = await client.get(address + "/x")
            assert (r.status_code, r.text) == (200, "in-process /x")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert task.result() is None
    # Stopped: nothing listens there any more.
    port = int(address.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


async def test_serve_rejects_bad_settings_before_listening() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        await asyncwsgi.serve(hello_app, bind=("127.0.0.1:0",), bogus=1)


async def test_serve_raises_for_a_script_that_cannot_load(tmp_path: Path) -> None:
    script = tmp_path / "bad.wsgi"
    script.write_text("def application(:\n")
    with pytest.raises(ScriptLoadError) as info:
        await asyncwsgi.serve(str(script), bind=("127.0.0.1:0",), shutdown_trigger=asyncio.sleep)
    assert str(script) in str(info.value)


def test_config_build_rejects_unknown_settings() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        asyncwsgi.Config.build(bogus=1)
    with pytest.raises(ConfigError, match="bogus"):
        asyncwsgi.Config.build(app="x.wsgi", bogus=1)
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("threads", 0),
        ("threads", "8"),
        ("bind", "nonsense"),
        ("graceful_timeout", 0),
        ("loop", "tokio"),
        ("script_reloading", "yes"),
        ("root_path", "relative"),
    ],
)
def test_config_build_names_the_bad_setting(setting: str, value: object) -> None:
    with pytest.raises(ConfigError, match=setting):
        asyncwsgi.Config.build(app="x.wsgi", **{setting: value})


def test_config_is_frozen() -> None:
    config = asyncwsgi.Config.build(app="x.wsgi", threads=3)
    assert config.threads == 3
    with pytest.raises(AttributeError):
        config.threads = 4  # type: ignore[misc]


def test_process_title_names_the_server(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(EXAMPLES / "hello.wsgi")
    cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
    assert cmdline.startswith(b"asyncwsgi: main")
