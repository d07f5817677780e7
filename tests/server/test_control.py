"""The control socket (``asyncwsgi.control``) and ``python -m asyncwsgi reload|status``.

Real UNIX sockets in short temporary directories (AF_UNIX paths are limited to ~107 bytes),
served by a :class:`ControlServer` on an event loop in a background thread, so the blocking
client and the CLI can be called from the test itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncwsgi import cli, control
from asyncwsgi.control import (
    ControlError,
    ControlServer,
    default_control_dir,
    default_control_path,
    find_control_socket,
    resolve_control_path,
    send_command,
)
from asyncwsgi.errors import AsyncWSGIError

ROOT = Path(__file__).resolve().parents[2]


# -- fixtures -------------------------------------------------------------------------------


class LoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self, kind: str) -> None:
        if kind == "uvloop":
            uvloop = pytest.importorskip("uvloop")
            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class FakeGroups:
    """A handler answering like the server will, recording the words it got."""

    def __init__(self, groups: tuple[str, ...] = ("default",)) -> None:
        self.groups = groups
        self.calls: list[list[str]] = []

    async def __call__(self, words: list[str]) -> str:
        self.calls.append(words)
        if words == ["reload"]:
            return "ok reloading " + " ".join(self.groups)
        if words[0] == "reload" and len(words) == 2:
            if words[1] in self.groups:
                return f"ok reloading {words[1]}"
            return f"error no process group named {words[1]!r} (groups: {', '.join(self.groups)})"
        if words == ["status"]:
            return "ok " + json.dumps({"groups": {g: {"processes": 1} for g in self.groups}})
        return f"error unknown command {words[0]!r}"


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="awc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_thread(request: pytest.FixtureRequest) -> Iterator[LoopThread]:
    thread = LoopThread(request.param)
    yield thread
    thread.stop()


Serve = Callable[..., ControlServer]


@pytest.fixture
def serve(loop_thread: LoopThread) -> Iterator[Serve]:
    """``serve(path, handler=None, **options)`` -> a started :class:`ControlServer`."""
    servers: list[ControlServer] = []

    def start(path: Path | str, handler: Any = None, **options: Any) -> ControlServer:
        server = ControlServer(str(path), handler or FakeGroups(), **options)
        loop_thread.run(server.start())
        servers.append(server)
        return server

    yield start
    for server in servers:
        loop_thread.run(server.close())


def exchange(path: Path | str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return everything the server sends until it closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def stale_socket(path: Path) -> None:
    """Leave a socket file nobody listens on, as a server killed with SIGKILL does."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    assert stat.S_ISSOCK(path.lstat().st_mode)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[Collect]:
    logger = logging.getLogger("asyncwsgi.error")
    handler = Collect()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


# -- the server -----------------------------------------------------------------------------


def test_control_error_is_an_asyncwsgi_error() -> None:
    assert issubclass(ControlError, AsyncWSGIError)


def test_round_trip(serve: Serve, sockdir: Path) -> None:
    path = sockdir / "c.sock"
    handler = FakeGroups(("default", "api"))
    serve(path, handler)
    assert send_command(str(path), ["reload", "api"]) == "ok reloading api"
    assert send_command(str(path), ["reload"]) == "ok reloading default api"
    # The answer is one line and the server closes the connection after it.
    assert exchange(path, b"reload  nope \n") == (
        b"error no process group named 'nope' (groups: default, api)\n"
    )
    assert handler.calls == [["reload", "api"], ["reload"], ["reload", "nope"]]


def test_status_answer_carries_json(serve: Serve, sockdir: Path) -> None:
    path = sockdir / "c.sock"
    serve(path)
    answer = send_command(str(path), ["status"])
    word, _, payload = answer.partition(" ")
    assert word == "ok"
    assert json.loads(payload) == {"groups": {"default": {"processes": 1}}}


def test_socket_is_private(serve: Serve, sockdir: Path) -> None:
    path = sockdir / "c.sock"
    serve(path)
    info = path.lstat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600


def test_stale_socket_file_is_replaced(serve: Serve, sockdir: Path) -> None:
    path = sockdir / "c.sock"
    stale_socket(path)
    with pytest.raises(ControlError, match="nothing listens"):
        send_command(str(path), ["reload"])
    serve(path)
    assert send_command(str(path), ["reload"]) == "ok reloading default"


def test_live_socket_is_not_taken_over(
    serve: Serve, loop_thread: LoopThread, sockdir: Path
) -> None:
    path = sockdir / "c.sock"
    serve(path, FakeGroups(("first",)))
    inode = path.lstat().st_ino
    second = ControlServer(str(path), FakeGroups(("second",)))
    with pytest.raises(ControlError, match="is in use by another server"):
        loop_thread.run(second.start())
    assert path.lstat().st_ino == inode
    assert send_command(str(path), ["reload"]) == "ok reloading first"


def test_a_file_that_is_not_a_socket_is_left_alone(loop_thread: LoopThread, sockdir: Path) -> None:
    path = sockdir / "c.sock"
    path.write_text("precious")
    with pytest.raises(ControlError, match="not a socket"):
        loop_thread.run(ControlServer(str(path), FakeGroups()).start())
    assert path.read_text() == "precious"


def test_missing_directory_is_a_control_error(loop_thread: LoopThread, sockdir: Path) -> None:
    path = sockdir / "no" / "c.sock"
    with pytest.raises(ControlError, match="cannot open control socket"):
        loop_thread.run(ControlServer(str(path), FakeGroups()).start())


def test_close_unlinks_the_socket(serve: Serve, loop_thread: LoopThread, sockdir: Path) -> None:
    path = sockdir / "c.sock"
    server = serve(path)
    loop_thread.run(server.close())
    assert not os.path.lexists(path)
    with pytest.raises(ControlError):
        send_command(str(path), ["reload"])
    loop_thread.run(server.close())  # a second close is harmless


def test_close_leaves_a_successors_socket(
    serve: Serve, loop_thread: LoopThread, sockdir: Path
) -> None:
    path = sockdir / "c.sock"
    first = serve(path)
    os.unlink(path)
    serve(path, FakeGroups(("successor",)))
    loop_thread.run(first.close())
    assert send_command(str(path), ["reload"]) == "ok reloading successor"


def test_request_too_long(serve: Serve, sockdir: Path) -> None:
    path = sockdir / "c.sock"
    handler = FakeGroups()
    serve(path, handler)
    assert exchange(path, b"reload " + b"x" * 5000 + b"\n") == b"error request too long\n"
    assert exchange(path, b"x" * (control.MAX_REQUEST + 10)) == b"error request too long\n"
    # The limit counts the newline: 4096 bytes in all is still a request.
    longest = b"reload " + b"g" * (control.MAX_REQUEST - len(b"reload ") - 1) + b"\n"
    assert len(longest) == control.MAX_REQUEST
    assert exchange(path, longest).startswith(b"error no process group named 'ggg")
    assert handler.calls == [longest.decode().split()]
    assert exchange(path, b"g" + longest) == b"error request too long\n"
    assert len(handler.calls) == 1


def test_malformed_requests(serve: Serve, sockdir: Path) -> None:
    path = sockdir / "c.sock"
    handler = FakeGroups()
    serve(path, handler)
    assert exchange(path, b"reload \xff\n") == b"error request is not UTF-8\n"
    assert exchange(path, b" \t\r\n") == b"error empty request\n"
    assert handler.calls == []


def test_words_without_newline_before_eof_are_understood(serve: Serve, sockdir: Path) -> None:
    path = sockdir / "c.sock"
    serve(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"reload default")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1024) == b"ok reloading default\n"


def test_silent_client_is_dropped_and_others_are_served(serve: Serve, sockdir: Path) -> None:
    path = sockdir / "c.sock"
    serve(path, idle_timeout=0.3)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.settimeout(10)
        silent.connect(str(path))
        # Served while the silent client holds its connection.
        assert send_command(str(path), ["reload"]) == "ok reloading default"
        started = time.monotonic()
        assert silent.recv(1024) == b""  # hung up on, without an answer
        assert time.monotonic() - started < 9
    assert send_command(str(path), ["reload"]) == "ok reloading default"


def test_default_idle_timeout_is_five_seconds() -> None:
    server = ControlServer("/unused.sock", FakeGroups())
    assert control.IDLE_TIMEOUT == 5.0
    assert server._idle_timeout == 5.0


def test_close_drops_connected_clients(
    serve: Serve, loop_thread: LoopThread, sockdir: Path
) -> None:
    path = sockdir / "c.sock"
    server = serve(path)  # idle timeout 5 s: close() must not wait for it
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.settimeout(10)
        silent.connect(str(path))
        time.sleep(0.05)  # let the server accept it
        loop_thread.run(server.close(), timeout=3)
        assert silent.recv(1024) == b""


def test_handler_exception_answers_error_internal(
    serve: Serve, sockdir: Path, error_log: Collect
) -> None:
    path = sockdir / "c.sock"

    async def handler(words: list[str]) -> str:
        if words == ["status"]:
            raise RuntimeError("pool is gone")
        if words == ["reload"]:
            raise KeyError("x")
        return "ok fine"

    serve(path, handler)
    assert send_command(str(path), ["status"]) == "error internal: pool is gone"
    assert send_command(str(path), ["reload"]) == "error internal: 'x'"
    assert send_command(str(path), ["other"]) == "ok fine"
    failures = [r for r in error_log.records if r.exc_info]
    assert len(failures) == 2
    assert "status" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], RuntimeError)


def test_handler_answers_are_checked_and_kept_on_one_line(
    serve: Serve, sockdir: Path, error_log: Collect
) -> None:
    path = sockdir / "c.sock"

    async def handler(words: list[str]) -> str:
        return {"a": "reloading", "b": "ok two\nlines", "c": "okay"}[words[0]]

    serve(path, handler)
    assert send_command(str(path), ["a"]) == "error internal: malformed answer from the server"
    assert send_command(str(path), ["c"]) == "error internal: malformed answer from the server"
    assert exchange(path, b"b\n") == b"ok two lines\n"
    assert len([r for r in error_log.records if r.levelno >= logging.ERROR]) == 2


# -- the client -----------------------------------------------------------------------------


def test_send_command_to_a_missing_socket(sockdir: Path) -> None:
    path = sockdir / "missing.sock"
    with pytest.raises(ControlError, match=r"no control socket at .*missing\.sock"):
        send_command(str(path), ["reload"])


def test_send_command_to_a_stale_socket(sockdir: Path) -> None:
    path = sockdir / "stale.sock"
    stale_socket(path)
    with pytest.raises(ControlError, match="nothing listens on control socket"):
        send_command(str(path), ["reload"])


def test_send_command_times_out(sockdir: Path) -> None:
    path = sockdir / "mute.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(str(path))
        mute.listen(1)  # connections queue up, nobody answers
        started = time.monotonic()
        with pytest.raises(ControlError, match=r"no answer from control socket .* within 0\.3 s"):
            send_command(str(path), ["reload"], timeout=0.3)
        assert time.monotonic() - started < 5


def test_send_command_when_the_server_hangs_up(sockdir: Path) -> None:
    path = sockdir / "rude.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as rude:
        rude.bind(str(path))
        rude.listen(1)

        def hang_up() -> None:
            conn, _ = rude.accept()
            conn.close()

        # Whether the client sees EOF or a reset depends on timing; both read the same.
        for _ in range(3):
            thread = threading.Thread(target=hang_up)
            thread.start()
            with pytest.raises(
                ControlError, match=r"control socket .* closed the connection without answering"
            ):
                send_command(str(path), ["reload"], timeout=5)
            thread.join(5)


@pytest.mark.parametrize("word", ["", "a b", "a\nreload"])
def test_send_command_refuses_words_that_would_change_the_command(sockdir: Path, word: str) -> None:
    with pytest.raises(ControlError, match="command word"):
        send_command(str(sockdir / "c.sock"), ["reload", word])


# -- where the socket lives -----------------------------------------------------------------


@pytest.fixture
def places(sockdir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The three places a default control socket may live, all inside ``sockdir`` (none
    of the machine's own); XDG_RUNTIME_DIR unset."""
    home, tmp = sockdir / "home", sockdir / "tmp"
    home.mkdir()
    tmp.mkdir()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return {
        "runtime": sockdir / "asyncwsgi",
        "home": home / ".cache" / "asyncwsgi",
        "tmp": tmp / f"asyncwsgi-{os.getuid()}",
    }


@pytest.fixture
def runtime_dir(sockdir: Path, places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(sockdir))
    return sockdir


def test_default_dir_under_xdg_runtime_dir(runtime_dir: Path) -> None:
    old = os.umask(0o777)  # mkdir alone would give mode 0000
    try:
        directory = default_control_dir()
    finally:
        os.umask(old)
    assert directory == str(runtime_dir / "asyncwsgi")
    assert stat.S_IMODE(os.lstat(directory).st_mode) == 0o700
    assert default_control_dir() == directory  # an existing good directory is fine


@pytest.mark.parametrize("xdg", [None, "", "/nonexistent-xdg-runtime-dir"])
def test_default_dir_without_xdg_runtime_dir_is_in_the_home(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch, xdg: str | None
) -> None:
    # Not a fixed name in the shared /tmp, which another user could create first.
    if xdg is not None:
        monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
    old = os.umask(0o777)
    try:
        directory = default_control_dir()
    finally:
        os.umask(old)
    assert directory == str(places["home"])
    assert stat.S_IMODE(os.lstat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(places["home"].parent).st_mode) == 0o700  # ~/.cache made
    assert not places["tmp"].exists()


def squat(path: Path) -> None:
    """``path`` made first by another user: owned by nobody when we may chown (root),
    else left writable by everyone; refused either way."""
    path.mkdir(mode=0o700)
    if os.getuid() == 0:
        os.chown(path, 65534, 65534)
    else:
        path.chmod(0o777)


def test_a_folder_another_user_made_first_does_not_turn_the_socket_off(
    places: dict[str, Path],
) -> None:
    squat(places["tmp"])
    assert default_control_dir() == str(places["home"])


def test_the_shared_tempdir_is_the_last_resort(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HOME", "/nonexistent-home")
    assert default_control_dir() == str(places["tmp"])
    # ... and one that another user made first is refused, saying so.
    shutil.rmtree(places["tmp"])
    squat(places["tmp"])
    with (
        caplog.at_level(logging.WARNING, logger="asyncwsgi.error"),
        pytest.raises(ControlError, match=r"owned by uid|writable by other users"),
    ):
        default_control_dir()
    assert f"not using {places['tmp']} for the control socket" in caplog.text


@pytest.mark.parametrize("mode", [0o777, 0o720, 0o702])
def test_default_dir_writable_by_others_is_refused(
    runtime_dir: Path, places: dict[str, Path], mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    directory = runtime_dir / "asyncwsgi"
    directory.mkdir()
    directory.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="asyncwsgi.error"):
        assert default_control_dir() == str(places["home"])  # the next place
    assert "writable by other users" in caplog.text
    assert f"not using {directory} for the control socket" in caplog.text


def test_default_dir_owned_by_someone_else_is_refused(
    runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (runtime_dir / "asyncwsgi").mkdir(mode=0o700)
    real_uid = os.getuid()
    # Every place is then someone else's: none will do.
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)
    with pytest.raises(ControlError, match="owned by uid") as refused:
        default_control_dir()
    assert str(refused.value).count("owned by uid") == 3


def test_default_dir_symlink_is_refused(runtime_dir: Path, places: dict[str, Path]) -> None:
    target = runtime_dir / "elsewhere"
    target.mkdir(mode=0o700)
    (runtime_dir / "asyncwsgi").symlink_to(target)
    assert default_control_dir() == str(places["home"])
    assert list(target.iterdir()) == []


def test_a_path_too_long_for_a_socket_is_skipped(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    deep = places["home"].parent.parent / ("d" * 100)
    deep.mkdir()
    monkeypatch.setenv("HOME", str(deep))
    with caplog.at_level(logging.WARNING, logger="asyncwsgi.error"):
        assert default_control_dir() == str(places["tmp"])
    assert "too long a path for a socket" in caplog.text


def test_default_path_and_setting(runtime_dir: Path) -> None:
    directory = runtime_dir / "asyncwsgi"
    assert default_control_path(1234) == str(directory / "1234.sock")
    assert default_control_path() == str(directory / f"{os.getpid()}.sock")
    assert resolve_control_path("") == str(directory / f"{os.getpid()}.sock")
    assert resolve_control_path("none") is None
    assert resolve_control_path("/run/app/control.sock") == "/run/app/control.sock"
    assert resolve_control_path("relative.sock") == "relative.sock"


def test_find_control_socket_none_running(runtime_dir: Path, places: dict[str, Path]) -> None:
    directory = runtime_dir / "asyncwsgi"
    with pytest.raises(ControlError) as missing_dir:
        find_control_socket()
    assert str(directory) in str(missing_dir.value)
    default_control_dir()
    stale_socket(directory / "41.sock")
    (directory / "42.sock").write_text("not a socket")
    with pytest.raises(ControlError) as none_live:
        find_control_socket()
    assert str(none_live.value) == (
        f"no running asyncwsgi server found in {directory}, {places['home']}, "
        f"{places['tmp']}; pass --control-socket PATH"
    )
    assert (directory / "41.sock").exists(), "a stale socket must not be deleted"


def test_find_control_socket_one_and_two_running(serve: Serve, runtime_dir: Path) -> None:
    directory = Path(default_control_dir())
    stale_socket(directory / "7.sock")
    serve(directory / "100.sock")
    assert find_control_socket() == str(directory / "100.sock")
    serve(directory / "99.sock")
    with pytest.raises(ControlError, match="several asyncwsgi servers") as several:
        find_control_socket()
    message = str(several.value)
    assert str(directory / "99.sock") in message
    assert str(directory / "100.sock") in message
    assert "7.sock" not in message
    assert "--control-socket PATH" in message
    assert (directory / "7.sock").exists()


def test_find_control_socket_refuses_a_foreign_directory(serve: Serve, runtime_dir: Path) -> None:
    directory = runtime_dir / "asyncwsgi"
    directory.mkdir()
    directory.chmod(0o777)
    serve(directory / "5.sock")  # not trusted: anyone could have put it there
    with pytest.raises(ControlError, match="writable by other users"):
        find_control_socket()


def test_find_control_socket_looks_in_every_place(
    serve: Serve, runtime_dir: Path, places: dict[str, Path]
) -> None:
    # A server that had to skip the first place is found in the next.
    (runtime_dir / "asyncwsgi").mkdir(mode=0o777)
    (runtime_dir / "asyncwsgi").chmod(0o777)
    path = default_control_path(77)
    assert path == str(places["home"] / "77.sock")
    serve(Path(path))
    assert find_control_socket() == path


# -- the command line -----------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, runtime_dir: Path) -> Path:
    monkeypatch.delenv("ASYNCWSGI_CONTROL_SOCKET", raising=False)
    return runtime_dir


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_reload_ok(
    serve: Serve, sockdir: Path, clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sockdir / "c.sock"
    handler = FakeGroups(("default", "api"))
    serve(path, handler)
    assert run_cli(capsys, "reload", "--control-socket", str(path)) == (
        0,
        "ok reloading default api\n",
        "",
    )
    assert run_cli(capsys, "reload", "api", "--control-socket", str(path)) == (
        0,
        "ok reloading api\n",
        "",
    )
    assert handler.calls == [["reload"], ["reload", "api"]]


def test_cli_reload_error_answer(
    serve: Serve, sockdir: Path, clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sockdir / "c.sock"
    serve(path)
    code, out, err = run_cli(capsys, "reload", "x", "--control-socket", str(path))
    assert code == 1
    assert out == ""
    assert err == "error no process group named 'x' (groups: default)\n"


def test_cli_status(
    serve: Serve, sockdir: Path, clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sockdir / "c.sock"
    serve(path)
    code, out, err = run_cli(capsys, "status", "--control-socket", str(path))
    assert (code, err) == (0, "")
    assert out.startswith("ok {")
    assert json.loads(out[3:]) == {"groups": {"default": {"processes": 1}}}


def test_cli_unreachable(
    sockdir: Path, clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(sockdir / "missing.sock")
    code, out, err = run_cli(capsys, "reload", "--control-socket", missing)
    assert (code, out) == (2, "")
    assert err.startswith("asyncwsgi: error: no control socket at ")
    assert missing in err
    assert err.count("\n") == 1


def test_cli_bad_group_word_is_a_usage_error(
    sockdir: Path, clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "reload", "a b", "--control-socket", str(sockdir / "c"))
    assert code == 2
    assert err.startswith("asyncwsgi: error: ")


def test_cli_socket_from_environment(
    serve: Serve,
    sockdir: Path,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from_env = sockdir / "env.sock"
    from_option = sockdir / "opt.sock"
    serve(from_env, FakeGroups(("env",)))
    serve(from_option, FakeGroups(("option",)))
    monkeypatch.setenv("ASYNCWSGI_CONTROL_SOCKET", str(from_env))
    assert run_cli(capsys, "reload")[:2] == (0, "ok reloading env\n")
    # The option wins over the environment.
    assert run_cli(capsys, "reload", "--control-socket", str(from_option))[:2] == (
        0,
        "ok reloading option\n",
    )


def test_cli_finds_the_one_running_server(
    serve: Serve, clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "reload")
    assert code == 2
    assert "no running asyncwsgi server found in" in err
    assert "--control-socket PATH" in err
    serve(default_control_path(4242), FakeGroups(("found",)))
    assert run_cli(capsys, "status")[0] == 0
    assert run_cli(capsys, "reload")[:2] == (0, "ok reloading found\n")
    serve(default_control_path(4343))
    code, _, err = run_cli(capsys, "reload")
    assert code == 2
    assert "several asyncwsgi servers" in err


def test_cli_control_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["reload", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m asyncwsgi reload [-h] [--control-socket PATH] [GROUP]")
    assert "./reload" in out
    with pytest.raises(SystemExit) as exited:
        cli.main(["status", "extra"])
    assert exited.value.code == 2
    assert "usage: python -m asyncwsgi status" in capsys.readouterr().err


def test_main_help_mentions_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "python -m asyncwsgi reload [GROUP]" in out
    assert "python -m asyncwsgi status" in out
    assert "./reload" in out


def test_a_script_path_like_dot_reload_is_not_a_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Reaches the serve path's parser (which rejects the bad option), not the command's.
    with pytest.raises(SystemExit) as exited:
        cli.main(["./reload", "--threads", "many"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m asyncwsgi [-h]")
    assert "--threads" in err


def test_cli_reload_subprocess_unreachable(sockdir: Path) -> None:
    missing = str(sockdir / "nonexistent.sock")
    env = {k: v for k, v in os.environ.items() if k != "ASYNCWSGI_CONTROL_SOCKET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "asyncwsgi", "reload", "--control-socket", missing],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"asyncwsgi: error: no control socket at {missing} (is the server running?)\n"
    )


def test_a_server_whose_tmp_folder_was_taken_still_has_its_control_socket(
    start_server: Callable[..., Any], sockdir: Path, tmp_path: Path
) -> None:
    # End to end: another user made /tmp/asyncwsgi-UID first; the server and the
    # command both use the home folder instead, and the log says where the socket is.
    home, tmp = sockdir / "home", sockdir / "tmp"
    home.mkdir()
    tmp.mkdir()
    squat(tmp / f"asyncwsgi-{os.getuid()}")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "TMPDIR")}
    env |= {"HOME": str(home), "TMPDIR": str(tmp)}
    env.pop("ASYNCWSGI_CONTROL_SOCKET", None)
    script = tmp_path / "app.wsgi"
    script.write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '2')])\n"
        "    return [b'ok']\n"
    )
    server = start_server(script, "--control-socket", "", env=env)
    expected = home / ".cache" / "asyncwsgi" / f"{server.proc.pid}.sock"
    deadline = time.monotonic() + 10
    while f"control socket: {expected}" not in server.stderr():
        assert time.monotonic() < deadline, server.stderr()
        time.sleep(0.02)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "asyncwsgi", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.removeprefix("ok "))["pid"] == server.proc.pid
