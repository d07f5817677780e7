"""Deploys that cannot take the site down (docs/DESIGN.md, "Script reloading"), end to end,
each under keep-alive load with every answer counted:

* a broken deploy -- a syntax error, an exception at import, a hang at import, a crash
  before READY -- in daemon mode (1 and 2 processes) and in embedded mode with
  ``--reload-on-changes`` (a supervised copy): no request fails, the old code answers
  throughout, the failure is logged once and ``status`` shows the group degraded; the
  fixed file then brings the new code, again without a failed request;
* ``--reload-on-changes``: editing a helper module and a ``--reload-extra`` file brings the
  new code with no failed request; a file outside the watch set changes nothing;
* systemd's notification protocol around a reload.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, control_status

pytestmark = pytest.mark.timeout(90)

ONE_SECOND = 1_000_000_000

# The app: its version, its helper module's value and a template's text, with its pid.
SCRIPT = """\
import os, sys
sys.path.insert(0, os.path.dirname(__file__))
import helper
{broken}
VERSION = {version!r}
with open(os.path.join(os.path.dirname(__file__), "templates", "page.txt")) as f:
    PAGE = f.read().strip()

def application(environ, start_response):
    body = f"{{VERSION}} {{helper.VALUE}} {{PAGE}} {{os.getpid()}}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

BROKEN = {
    "syntax-error": "def broken(:",
    "exception-at-import": "raise RuntimeError('deploy-secret-4b1d')",
    "hang-at-import": "import time; time.sleep(3600)",
    "crash-before-ready": "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
}
# What the log says once, for each.
LOGGED = {
    "syntax-error": "could not load the application",
    "exception-at-import": "could not load the application",
    "hang-at-import": "was not ready within 3 s",
    "crash-before-ready": "died before it was ready (killed by SIGKILL)",
}

MODES: dict[str, tuple[str, ...]] = {
    "daemon-1": ("--mode", "daemon", "--processes", "1", "--threads", "4"),
    "daemon-2": ("--mode", "daemon", "--processes", "2", "--threads", "4"),
    "embedded": ("--reload-on-changes", "--threads", "4"),
    # Re-imported in place by the request that sees the change (mod_wsgi's embedded
    # mode): a hang or a crash at import is the process's own, so only the two others.
    "embedded-in-place": ("--threads", "4"),
}
IN_PLACE_KINDS = ("syntax-error", "exception-at-import")


def replace_file(path: Path, text: str) -> None:
    """Write aside and rename over, the mtime a second on: as a deploy does."""
    old = path.stat() if path.exists() else None
    aside = path.with_name(path.name + ".new")
    aside.write_text(text)
    mtime = old.st_mtime_ns + ONE_SECOND if old is not None else time.time_ns()
    os.utime(aside, ns=(mtime, mtime))
    os.replace(aside, path)


def write_app(folder: Path, version: str, broken: str = "") -> Path:
    script = folder / "app.wsgi"
    replace_file(script, SCRIPT.format(version=version, broken=broken))
    return script


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "page.txt").write_text("page1\n")
    (tmp_path / "helper.py").write_text("VALUE = 'h1'\n")
    (tmp_path / "unwatched.py").write_text("VALUE = 0\n")
    return write_app(tmp_path, "v1")


class Load:
    """Keep-alive clients sending ``GET /`` one after the other; every answer is kept."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.answers: list[tuple[float, int, str]] = []  # (time, status, body or error)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(self.url)
                    answer = (time.monotonic(), response.status_code, response.text)
                except httpx.HTTPError as exc:
                    answer = (time.monotonic(), 0, f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.answers.append(answer)
                time.sleep(0.002)

    def since(self, moment: float) -> list[tuple[float, int, str]]:
        with self._lock:
            return [a for a in self.answers if a[0] >= moment]

    def failures(self) -> list[tuple[float, int, str]]:
        with self._lock:
            return [a for a in self.answers if a[1] != 200]

    def served(self, since: float = 0.0) -> set[str]:
        """The ``version helper page`` of the answers since ``since``."""
        return {a[2].rsplit(" ", 1)[0] for a in self.since(since) if a[1] == 200}


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.02)


def degraded(control: Path, mode: str) -> dict[str, Any] | None:
    status = control_status(control)
    if mode.startswith("embedded"):
        result: dict[str, Any] | None = status["degraded"]
    else:
        result = status["groups"]["default"]["degraded"]
    return result


@pytest.fixture
def serve(start_server: Any, control_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    def start(script: Path, *options: str, env: dict[str, str] | None = None) -> ServerProcess:
        server: ServerProcess = start_server(
            script, "--control-socket", str(control_path), *options, env=env
        )
        return server

    yield start


BROKEN_DEPLOYS = [
    pytest.param(mode, kind, id=f"{mode}-{kind}")
    for mode in sorted(MODES)
    for kind in sorted(BROKEN)
    if mode != "embedded-in-place" or kind in IN_PLACE_KINDS
]


@pytest.mark.parametrize(("mode", "kind"), BROKEN_DEPLOYS)
def test_a_broken_deploy_keeps_the_old_code_serving(
    serve: Callable[..., ServerProcess], app: Path, control_path: Path, mode: str, kind: str
) -> None:
    server = serve(app, *MODES[mode], "--startup-timeout", "3")
    with Load(server.url + "/") as load:
        wait_for(lambda: load.served() == {"v1 h1 page1"}, what="the first answers")
        broke = time.monotonic()
        write_app(app.parent, "v2", broken=BROKEN[kind])
        wait_for(lambda: degraded(control_path, mode), what="status to say degraded")
        time.sleep(0.3)
        assert load.served(broke) == {"v1 h1 page1"}, "the old code answered throughout"
        state = degraded(control_path, mode)
        assert state is not None
        if mode == "embedded-in-place":
            assert state["last_good"] <= state["since"]
        else:
            assert state["failed_generation"] == state["serving_generation"] + 1, server.stderr()
        if kind == "exception-at-import":
            assert "RuntimeError: deploy-secret-4b1d" in state["error"]

        fixed = time.monotonic()
        write_app(app.parent, "v3")
        wait_for(lambda: "v3 h1 page1" in load.served(fixed), what="the fixed code")
        wait_for(lambda: degraded(control_path, mode) is None, what="status to recover")
        settled = time.monotonic() + 0.5  # the last old process may still be finishing
        wait_for(lambda: time.monotonic() > settled + 0.3)
        assert load.served(settled) == {"v3 h1 page1"}
    assert not load.failures(), load.failures()[:5]
    assert len(load.answers) > 100
    log = server.stderr()
    if mode == "embedded-in-place":
        assert log.count("Failed to reload WSGI script") == 1, log
        assert log.count("keeps serving") == 1, log
    else:
        assert log.count(LOGGED[kind]) == 1, log
        assert log.count("(degraded)") == 1, log
    if kind in ("syntax-error", "exception-at-import"):
        assert log.count("Traceback (most recent call last)") == 1, log
    assert "deploy-secret-4b1d" not in "".join(a[2] for a in load.answers)


@pytest.mark.parametrize("mode", ["daemon-1", "embedded"])
def test_reload_on_changes_picks_up_helpers_and_extra_files(
    serve: Callable[..., ServerProcess], app: Path, control_path: Path, mode: str
) -> None:
    options = [*MODES[mode], "--reload-extra", "templates/*.txt"]
    if "--reload-on-changes" not in options:
        options.append("--reload-on-changes")
    server = serve(app, *options)
    folder = app.parent

    def generation() -> int:
        status = control_status(control_path)
        return int(
            status["generation"]
            if mode == "embedded"
            else status["groups"]["default"]["generation"]
        )

    with Load(server.url + "/") as load:
        wait_for(lambda: load.served() == {"v1 h1 page1"}, what="the first answers")
        # The processes report what they imported shortly after READY.
        time.sleep(1.5)

        edited = time.monotonic()
        replace_file(folder / "helper.py", "VALUE = 'h2'\n")
        wait_for(lambda: "v1 h2 page1" in load.served(edited), what="the edited helper")

        edited = time.monotonic()
        (folder / "templates" / "page.txt").write_text("page2\n")  # written in place
        wait_for(lambda: "v1 h2 page2" in load.served(edited), what="the edited template")
        wait_for(lambda: load.served(time.monotonic() - 0.2) == {"v1 h2 page2"})

        # Outside the watch set: a module never imported, a file the glob does not match.
        before = generation()
        replace_file(folder / "unwatched.py", "VALUE = 1\n")
        (folder / "templates" / "notes.md").write_text("not watched\n")
        time.sleep(1.5)
        assert generation() == before, "nothing outside the watch set restarts anything"
    assert not load.failures(), load.failures()[:5]
    log = server.stderr()
    assert f"'{folder / 'helper.py'}' changed" in log, log
    assert f"'{folder / 'templates' / 'page.txt'}' changed" in log, log
    assert "unwatched" not in log and "notes.md" not in log


def test_systemd_hears_reloading_and_ready(
    serve: Callable[..., ServerProcess], app: Path, tmp_path: Path
) -> None:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="aw-"))
    path = folder / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(20)
    try:
        server = serve(
            app, *MODES["daemon-1"], "--reload-on-changes", env={"NOTIFY_SOCKET": str(path)}
        )

        def next_state() -> bytes:  # STATUS= lines say what happens, for systemctl status
            while True:
                message = listener.recv(4096)
                if not message.startswith(b"STATUS="):
                    return message

        assert next_state() == b"READY=1"
        time.sleep(1.5)  # the daemon reports its imports within a second of READY
        replace_file(app.parent / "helper.py", "VALUE = 'h2'\n")
        reloading = next_state().decode()
        assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC="), reloading
        assert abs(int(reloading.split("=")[-1]) - time.monotonic_ns() // 1000) < 30_000_000
        assert next_state() == b"READY=1"
        assert httpx.get(server.url + "/").text.startswith("v1 h2 ")
        server.stop()
        assert next_state() == b"STOPPING=1"
    finally:
        listener.close()
        path.unlink()
        folder.rmdir()


@pytest.mark.parametrize("mode", ["daemon-1", "embedded"])
def test_a_release_folder_swapped_under_a_symlink_is_served(
    serve: Callable[..., ServerProcess], tmp_path: Path, mode: str
) -> None:
    # Deploy by symlink: current -> releases/N, swapped in one rename (ln -sfn).
    for n in (1, 2):
        release = tmp_path / "releases" / str(n)
        (release / "templates").mkdir(parents=True)
        (release / "templates" / "page.txt").write_text(f"page{n}\n")
        (release / "helper.py").write_text(f"VALUE = 'h{n}'\n")
        write_app(release, f"v{n}")
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "releases" / "1", target_is_directory=True)
    options = [*MODES[mode]]
    if "--reload-on-changes" not in options:
        options.append("--reload-on-changes")
    server = serve(current / "app.wsgi", *options)
    with Load(server.url + "/") as load:
        wait_for(lambda: load.served() == {"v1 h1 page1"}, what="the first answers")
        time.sleep(1.5)
        swapped = time.monotonic()
        aside = tmp_path / "current.new"
        aside.symlink_to(tmp_path / "releases" / "2", target_is_directory=True)
        os.replace(aside, current)
        wait_for(lambda: "v2 h2 page2" in load.served(swapped), what="the new release")
        wait_for(lambda: load.served(time.monotonic() - 0.2) == {"v2 h2 page2"})
    assert not load.failures(), load.failures()[:5]
