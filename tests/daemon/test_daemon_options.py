"""mod_wsgi's WSGIDaemonProcess options, end to end over a real socket: python-home=
(a virtual environment made here), python-path=, home=, lang=/locale=, user= when
root, inactivity-timeout= and memory-limit= (the process replaced with no failed
request), queue-timeout= (503)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from asyncwsgi.config import ProcessSettings
from asyncwsgi.daemon import launch
from asyncwsgi.errors import ConfigError
from tests.conftest import ServerProcess

APP = """\
import json, os, sys, time

HELD = []

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"] or "1"))
    elif path == "/grow":
        HELD.append(bytearray(int(environ["QUERY_STRING"])))
    info = {"pid": os.getpid(), "uid": os.getuid(), "prefix": sys.prefix, "cwd": os.getcwd(),
            "lang": os.environ.get("LANG"), "lc_all": os.environ.get("LC_ALL")}
    if path == "/imports":
        import from_venv, from_python_path
        info["imports"] = [from_venv.WHERE, from_python_path.WHERE]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(info).encode()]
"""


def serve(folder: Path, group_options: str, timeout: float = 30) -> ServerProcess:
    (folder / "app.wsgi").write_text(APP)
    (folder / "site.conf").write_text(
        "Listen 127.0.0.1:0\n"
        f"WSGIDaemonProcess g {group_options}\n"
        f"WSGIScriptAlias / {folder / 'app.wsgi'} process-group=g\n"
    )
    return ServerProcess(["--config", "site.conf", "--no-access-log"], folder).wait_ready(timeout)


@pytest.fixture
def running() -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    yield servers
    for server in servers:
        server.stop()


def info(server: ServerProcess, path: str = "/", timeout: float = 10) -> dict[str, object]:
    response = httpx.get(server.url + path, timeout=timeout)
    assert response.status_code == 200, (response.status_code, response.text)
    answer: dict[str, object] = json.loads(response.text)
    return answer


def make_venv(where: Path, python: str = sys.executable) -> Path:
    venv = where / "venv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    packages = venv / "lib" / version / "site-packages"
    (packages / "from_venv.py").write_text("WHERE = 'venv'\n")
    return venv


def test_python_home_python_path_home_and_locale(
    tmp_path: Path, running: list[ServerProcess]
) -> None:
    venv = make_venv(tmp_path)
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "from_python_path.py").write_text("WHERE = 'python-path'\n")
    work = tmp_path / "work"
    work.mkdir()
    options = f"python-home={venv} python-path={lib} home={work} lang=C.UTF-8 locale=C.UTF-8"
    server = serve(tmp_path, options)
    running.append(server)
    answer = info(server, "/imports")
    assert answer["prefix"] == str(venv)  # that environment's interpreter
    assert answer["imports"] == ["venv", "python-path"]
    assert answer["cwd"] == str(work)
    assert (answer["lang"], answer["lc_all"]) == ("C.UTF-8", "C.UTF-8")


def test_a_python_home_of_another_version_is_an_error(tmp_path: Path) -> None:
    fake = tmp_path / "old" / "bin"
    fake.mkdir(parents=True)
    (fake / "python3").write_text("#!/bin/sh\ntouch ran\n")
    (fake / "python3").chmod(0o755)
    (tmp_path / "old" / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 2.7.18\n")
    (tmp_path / "app.wsgi").write_text(APP)
    (tmp_path / "site.conf").write_text(
        f"WSGIDaemonProcess g python-home={tmp_path / 'old'}\n"
        f"WSGIScriptAlias / {tmp_path / 'app.wsgi'} process-group=g\n"
    )
    server = ServerProcess(["--config", "site.conf", "--bind", "127.0.0.1:0"], tmp_path)
    assert server.proc.wait(30) == 2
    server.stop()
    assert "python-home=" in server.stderr() and "is Python 2.7" in server.stderr()
    assert not (tmp_path / "ran").exists(), "the interpreter is not run to learn its version"


def test_user_without_root_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    with pytest.raises(ConfigError, match=r"g: user=nobody needs the server started as root"):
        launch.check(ProcessSettings(run_user="nobody"), "g")


def runs_as(user: str, python: str) -> bool:
    try:
        # As the daemon boots under another interpreter: the server's folders last.
        paths = json.dumps(launch.server_paths())
        done = subprocess.run(
            [python, "-c", f"import sys; sys.path += {paths}; import asyncwsgi.daemon.process"],
            user=user,
            cwd="/",
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="user= needs the server started as root")
def test_user_runs_the_daemons_as_that_user(running: list[ServerProcess]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="asyncwsgi-user-"))
    folder.chmod(0o755)  # the daemon, as nobody, reads the script here
    options = "user=nobody"
    if not runs_as("nobody", sys.executable):
        # This interpreter lives where nobody may not go: a venv of the system's Python
        # of the same version, if there is one.
        system = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
        if not os.access(system, os.X_OK):
            pytest.skip("no interpreter of this Python version that 'nobody' may run")
        venv = make_venv(folder, system)
        for path in [venv, *venv.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0))
        if not runs_as("nobody", str(venv / "bin" / "python3")):
            pytest.skip("'nobody' cannot import asyncwsgi from this checkout")
        options += f" python-home={venv}"
    server = serve(folder, options)
    running.append(server)
    answer = info(server)
    assert answer["uid"] == 65534 or answer["uid"] == int(
        subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout
    )
    assert answer["uid"] != 0


def poll_pids(server: ServerProcess, seconds: float) -> tuple[set[int], list[int]]:
    """Request / every 50 ms for ``seconds``: the pids that answered, and every status."""
    pids: set[int] = set()
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=server.url, timeout=10) as client:
        while time.monotonic() < deadline:
            response = client.get("/")
            statuses.append(response.status_code)
            if response.status_code == 200:
                pids.add(int(response.json()["pid"]))
            time.sleep(0.05)
    return pids, statuses


def test_inactivity_timeout_replaces_an_idle_process(
    tmp_path: Path, running: list[ServerProcess]
) -> None:
    server = serve(tmp_path, "processes=1 threads=2 inactivity-timeout=1")
    running.append(server)
    pids, statuses = poll_pids(server, 1.5)  # busy: not replaced
    assert len(pids) == 1 and set(statuses) == {200}
    time.sleep(3.0)  # idle for longer than 1 s
    after, statuses = poll_pids(server, 0.5)
    assert set(statuses) == {200}
    assert after and after.isdisjoint(pids), "the idle process was replaced"
    assert "no request for 1 s (inactivity-timeout)" in server.stderr()


def test_memory_limit_replaces_a_process_with_no_failed_request(
    tmp_path: Path, running: list[ServerProcess]
) -> None:
    server = serve(tmp_path, "processes=1 threads=4 memory-limit=200000000")
    running.append(server)
    first = int(info(server)["pid"])  # type: ignore[call-overload]
    result: dict[str, tuple[set[int], list[int]]] = {}
    poller = threading.Thread(target=lambda: result.update(poll=poll_pids(server, 4.0)))
    poller.start()
    info(server, "/grow?250000000")  # 250 MB, past the 200 MB limit
    poller.join()
    pids, statuses = result["poll"]
    assert set(statuses) == {200}, "no request failed while the process was replaced"
    assert first in pids and len(pids) == 2
    assert "over memory-limit=200000000" in server.stderr()


def test_queue_timeout_answers_503(tmp_path: Path, running: list[ServerProcess]) -> None:
    server = serve(tmp_path, "processes=1 threads=1 queue-timeout=0.5")
    running.append(server)
    info(server)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        slow: dict[str, int] = {}
        holder = threading.Thread(
            target=lambda: slow.update(status=client.get("/sleep?2.5").status_code)
        )
        holder.start()
        time.sleep(0.3)  # the one thread is busy
        began = time.monotonic()
        waited = httpx.get(server.url + "/", timeout=10)
        took = time.monotonic() - began
        holder.join()
    assert waited.status_code == 503
    assert 0.4 < took < 1.6, took
    assert slow["status"] == 200
    assert "waited more than 0.5 s for a free thread (queue-timeout)" in server.stderr()
