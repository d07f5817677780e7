"""The server process as an operator sets it up, over real sockets: settings from
ASYNCWSGI_<OPTION> (the command line winning, --print-config saying where each came
from), --env-file, --chdir, --pythonpath, --pid-file, the mode and owner of a UNIX
socket, and --user when started as root."""

from __future__ import annotations

import grp
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from asyncwsgi.daemon import launch
from tests.conftest import ServerProcess, run_cli

APP = """\
import json, os

def application(environ, start_response):
    import helper_module
    body = json.dumps({"uid": os.getuid(), "setting": os.environ.get("APP_SETTING"),
                       "helper": helper_module.NAME, "cwd": os.getcwd()})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "app.wsgi").write_text(APP)
    (tmp_path / "srv" / "lib").mkdir()
    (tmp_path / "srv" / "lib" / "helper_module.py").write_text("NAME = 'from --pythonpath'\n")
    return tmp_path / "srv"


def shown(output: str, flag: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith(flag + " "))
    return line.split(None, 2)[1:]


def test_settings_from_the_environment_and_where_each_came_from(site: Path) -> None:
    env = {"ASYNCWSGI_THREADS": "3", "ASYNCWSGI_MAX_THREADS": "9", "ASYNCWSGI_ACCESS_LOG": "off"}
    done = run_cli(site, "app.wsgi", "--max-threads", "12", "--print-config", env=env)
    assert done.returncode == 0, done.stderr
    assert shown(done.stdout, "--threads") == ["3", "environment (ASYNCWSGI_THREADS)"]
    assert shown(done.stdout, "--max-threads") == ["12", "command line"]  # the command line wins
    assert shown(done.stdout, "--access-log") == ["off", "environment (ASYNCWSGI_ACCESS_LOG)"]
    assert shown(done.stdout, "--keep-alive-timeout") == ["5", "default"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ASYNCWSGI_THREADS": "many"}, "ASYNCWSGI_THREADS: "),
        ({"ASYNCWSGI_ACCESS_LOG": "perhaps"}, "ASYNCWSGI_ACCESS_LOG: expected on or off"),
    ],
)
def test_a_bad_variable_is_named_and_exits_2(site: Path, env: dict[str, str], message: str) -> None:
    done = run_cli(site, "app.wsgi", "--print-config", env=env)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_an_unknown_variable_is_said_and_ignored(site: Path) -> None:
    done = run_cli(site, "app.wsgi", "--print-config", env={"ASYNCWSGI_THREDS": "4"})
    assert done.returncode == 0
    assert "ASYNCWSGI_THREDS is no setting; ignored" in done.stderr
    assert shown(done.stdout, "--threads") == ["8", "default"]


def test_env_file_chdir_pythonpath_and_pid_file(site: Path, tmp_path: Path) -> None:
    (tmp_path / "prod.env").write_text(
        "# the deploy's settings\nexport APP_SETTING='from the env file'\nASYNCWSGI_THREADS=4\n"
    )
    pid_file = tmp_path / "server.pid"
    server = ServerProcess(
        [
            "app.wsgi",  # relative to --chdir
            "--chdir", str(site),
            "--env-file", str(tmp_path / "prod.env"),
            "--pythonpath", "lib",
            "--pid-file", str(pid_file),
            "--bind", "127.0.0.1:0",
            "--mode", "daemon", "--processes", "1",  # the daemon inherits the path
        ],
        tmp_path,
    ).wait_ready(30)  # fmt: skip
    try:
        answer = httpx.get(server.url + "/", timeout=10).json()
        assert answer["setting"] == "from the env file"
        assert answer["helper"] == "from --pythonpath"
        assert pid_file.read_text() == f"{server.proc.pid}\n"
        # A second server with the same pid file refuses to start.
        second = run_cli(site, "app.wsgi", "--pid-file", str(pid_file), "--bind", "127.0.0.1:0")
        assert second.returncode == 2 and f"process {server.proc.pid} is running" in second.stderr
    finally:
        assert server.stop() == 0
    assert not pid_file.exists(), "removed when the server stops"


def test_unix_socket_mode_and_owner(site: Path, tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    group = grp.getgrgid(os.getgid()).gr_name
    server = ServerProcess(
        [
            "app.wsgi", "--pythonpath", "lib", "--bind", f"unix:{path}",
            "--socket-mode", "660", "--socket-owner", f":{group}",
        ],
        site,
    ).wait_ready(30)  # fmt: skip
    try:
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o660 and info.st_gid == os.getgid()
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, base_url="http://app") as client:
            assert client.get("/").json()["helper"] == "from --pythonpath"
    finally:
        server.stop()


def test_user_without_root_is_an_error(site: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("as root the change is allowed")
    done = run_cli(site, "app.wsgi", "--user", "root", "--bind", "127.0.0.1:0")
    assert done.returncode == 2 and "must start as root" in done.stderr


def readable_python(user: str) -> list[str] | None:
    """An interpreter (and PYTHONPATH) that ``user`` may run asyncwsgi with, or None."""
    paths = launch.server_paths()
    probe = ["-c", f"import sys; sys.path[:0] = {paths!r}; import asyncwsgi.server"]
    for python in (sys.executable, f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"):
        if not os.access(python, os.X_OK):
            continue
        try:
            done = subprocess.run(
                [python, *probe], user=user, cwd="/", capture_output=True, timeout=30
            )
        except OSError:  # not even executable by that user
            continue
        if done.returncode == 0:
            return [python]
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="--user needs the server started as root")
def test_user_binds_as_root_then_runs_as_that_user() -> None:
    folder = Path(tempfile.mkdtemp(prefix="asyncwsgi-user-"))
    folder.chmod(0o755)
    (folder / "app.wsgi").write_text(APP)
    (folder / "lib").mkdir()
    (folder / "lib" / "helper_module.py").write_text("NAME = 'lib'\n")
    python = readable_python("nobody")
    if python is None:
        pytest.skip("no interpreter of this Python version that 'nobody' may run")
    port = next(p for p in range(900, 1000) if _free(p))  # a port only root may bind
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(launch.server_paths())}
    run = Path(tempfile.mkdtemp(prefix="asyncwsgi-run-"))  # only root may write here
    run.chmod(0o755)
    server = subprocess.Popen(
        [*python, "-m", "asyncwsgi", "app.wsgi", "--bind", f"127.0.0.1:{port}", "--user",
         "nobody", "--pythonpath", "lib", "--control-socket", "none", "--mode", "daemon",
         "--processes", "1", "--pid-file", str(run / "server.pid"),
         "--error-logfile", str(folder / "error.log")],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        answer: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while not answer:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).json()
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr
                time.sleep(0.2)
        nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout)
        assert answer["uid"] == nobody  # the daemon
        status = Path(f"/proc/{server.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(nobody)] * 4  # the server itself, for good
        # Written as root where nobody cannot write; the log file handed to the user.
        assert (run / "server.pid").read_text() == f"{server.pid}\n"
        assert (folder / "error.log").stat().st_uid == nobody
    finally:
        server.terminate()
        server.wait(30)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
