"""Script reloading end to end (docs/DESIGN.md, "Script reloading", embedded mode).

Every test writes a real WSGI script into ``tmp_path``, starts ``python -m asyncwsgi`` on
it, edits the file and checks what the very next requests are served by. Each script
appends its VERSION to ``imports.log`` when it is executed, so the tests count imports
without trusting the server's own bookkeeping.

Edits set the file's mtime explicitly (a whole second apart unless a test says otherwise):
the server compares (st_mtime_ns, st_size, st_ino, st_dev), and a rewrite inside one
coarse kernel clock tick with the same size would otherwise be invisible to any checker.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import control_status

pytestmark = pytest.mark.timeout(30)

ONE_SECOND = 1_000_000_000
GENERIC_500 = "Internal Server Error"


# -- writing scripts -----------------------------------------------------------------------


def script_text(
    version: str,
    tmp_path: Path,
    *,
    import_sleep: float = 0.0,
    before: str = "",
    after: str = "",
    info: str = "",
) -> str:
    """A WSGI script answering JSON ``{"version", "token", ...}``.

    ``/gate`` marks itself started in ``gate-started.log`` and then holds the request until
    ``gate-open`` exists, so a test controls exactly when an in-flight request finishes.
    ``before`` runs right after the import is recorded, ``after`` at the end of the module;
    ``info`` is extra Python that may add keys to the ``data`` dict of each answer.
    """
    log = str(tmp_path / "imports.log")
    started = str(tmp_path / "gate-started.log")
    gate = str(tmp_path / "gate-open")
    return f"""\
import json
import os
import time

VERSION = {version!r}
TOKEN = os.urandom(8).hex()
with open({log!r}, "a") as _log:
    _log.write(VERSION + "\\n")
{before}
time.sleep({import_sleep!r})


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/gate":
        with open({started!r}, "a") as f:
            f.write("started\\n")
        deadline = time.monotonic() + 10
        while not os.path.exists({gate!r}) and time.monotonic() < deadline:
            time.sleep(0.005)
    data = {{"version": VERSION, "token": TOKEN}}
{_indent(info)}
    body = json.dumps(data).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
{after}
"""


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


def write_file(path: Path, text: str, *, mtime_ns: int | None = None) -> os.stat_result:
    """Rewrite ``path`` in place (same inode). Without ``mtime_ns`` the new mtime is one
    second past the old one (or now, for a new file), so the change is always visible."""
    old = path.stat() if path.exists() else None
    with open(path, "w") as f:
        f.write(text)
    if mtime_ns is None:
        mtime_ns = old.st_mtime_ns + ONE_SECOND if old is not None else time.time_ns()
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path.stat()


def imports(tmp_path: Path) -> list[str]:
    log = tmp_path / "imports.log"
    return log.read_text().splitlines() if log.exists() else []


def make_script(tmp_path: Path, version: str = "v1", **kw: Any) -> Path:
    script = tmp_path / "app.wsgi"
    write_file(script, script_text(version, tmp_path, **kw))
    return script


# -- talking to the server -----------------------------------------------------------------

# The test environment may set PYTHONDONTWRITEBYTECODE; users' servers write __pycache__,
# and a stale .pyc must not decide what a reload serves, so the servers here write them too.
BYTECODE_ON = {"PYTHONDONTWRITEBYTECODE": ""}


@pytest.fixture
def serve(start_server: Any) -> Callable[..., Any]:
    """``start_server`` with Python's default bytecode caching."""

    def start(script: Path, *options: str, wait: bool = True) -> Any:
        return start_server(script, *options, wait=wait, env=BYTECODE_ON)

    return start


def get(server: Any, path: str = "/") -> httpx.Response:
    return httpx.get(server.url + path, timeout=15)


def version_of(server: Any, path: str = "/") -> str:
    response = get(server, path)
    assert response.status_code == 200, response.text
    return str(response.json()["version"])


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.005)


def count(server: Any, text: str) -> int:
    return server.stderr().count(text)


def reload_line(script: Path) -> str:
    return f"Reloading WSGI script '{script}' (embedded mode, "


def failed_line(script: Path) -> str:
    return f"Failed to reload WSGI script '{script}' (embedded mode): "


def vanished_line(script: Path) -> str:
    return f"WSGI script '{script}' has vanished; answering 500"


def shutdown_counts(server: Any) -> tuple[int, int]:
    """(requests, stats) from the ``stopped after ...`` line; stops the server."""
    code = server.stop()
    log = server.stderr_path.read_text()  # stop() closed the handle stderr() flushes
    assert code == 0, log
    found = re.findall(r"stopped after (\d+) request\(s\); (\d+) stat\(s\) of the WSGI script", log)
    assert len(found) == 1, log
    return int(found[0][0]), int(found[0][1])


def assert_generic_500(response: httpx.Response, *secrets: str) -> None:
    assert response.status_code == 500
    body = response.text
    assert "Traceback" not in body
    assert 'File "' not in body
    for secret in secrets:
        assert secret not in body, f"{secret!r} leaked into the 500 body: {body!r}"


# -- 1. the request that sees the change is served by the new code -------------------------


def test_first_request_after_change_gets_new_code(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script)
    assert version_of(server) == "v1"
    assert version_of(server) == "v1"
    assert count(server, reload_line(script)) == 0

    write_file(script, script_text("v2", tmp_path))
    assert version_of(server) == "v2"
    assert imports(tmp_path) == ["v1", "v2"]
    assert count(server, reload_line(script)) == 1

    for _ in range(5):
        assert version_of(server) == "v2"
    assert imports(tmp_path) == ["v1", "v2"]
    assert count(server, reload_line(script)) == 1
    assert server.stop() == 0


def test_change_seen_on_a_keep_alive_connection(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script)
    with httpx.Client(base_url=server.url, timeout=15) as client:
        assert client.get("/").json()["version"] == "v1"
        for n in range(2, 6):
            write_file(script, script_text(f"v{n}", tmp_path))
            assert client.get("/").json()["version"] == f"v{n}"
    assert imports(tmp_path) == ["v1", "v2", "v3", "v4", "v5"]
    assert count(server, reload_line(script)) == 4


# -- 2. other modules are not touched ------------------------------------------------------


def test_helper_module_is_not_reloaded_with_the_script(serve, tmp_path: Path) -> None:
    helper_name = f"reload_helper_{uuid.uuid4().hex}"
    helper = tmp_path / f"{helper_name}.py"
    write_file(helper, 'import os\nVALUE = "h1"\nTOKEN = os.urandom(8).hex()\n')
    uses_helper = dict(
        before=f"import {helper_name} as helper",
        info='data["helper"] = helper.VALUE\ndata["helper_token"] = helper.TOKEN',
    )
    script = make_script(tmp_path, "v1", **uses_helper)
    server = serve(script)
    first = get(server).json()
    assert (first["version"], first["helper"]) == ("v1", "h1")

    write_file(helper, 'import os\nVALUE = "h2"\nTOKEN = os.urandom(8).hex()\n')
    write_file(script, script_text("v2", tmp_path, **uses_helper))
    second = get(server).json()
    assert second["version"] == "v2"  # the script itself was re-executed ...
    assert second["token"] != first["token"]
    assert second["helper"] == "h1"  # ... but it got the helper module already imported
    assert second["helper_token"] == first["helper_token"]
    assert count(server, reload_line(script)) == 1
    assert server.stop() == 0

    # A new process picks the helper's edit up.
    restarted = serve(script)
    third = get(restarted).json()
    assert (third["version"], third["helper"]) == ("v2", "h2")
    assert third["helper_token"] != first["helper_token"]


# -- 3. concurrency: one import per change; in-flight requests keep their code -------------


def test_concurrent_requests_at_a_change(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script, "--threads", "8")
    assert version_of(server) == "v1"

    # Three requests running on the old code, held inside the application.
    in_flight: list[httpx.Response] = []
    holders = [
        threading.Thread(target=lambda: in_flight.append(get(server, "/gate"))) for _ in range(3)
    ]
    for thread in holders:
        thread.start()
    started = tmp_path / "gate-started.log"
    wait_until(
        lambda: started.exists() and len(started.read_text().splitlines()) == 3,
        what="the held requests to start",
    )

    # The new version takes a while to import, so requests pile up behind the import.
    write_file(script, script_text("v2", tmp_path, import_sleep=0.3))
    barrier = threading.Barrier(20)
    answers: list[str] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            barrier.wait(10)
            answers.append(version_of(server))
        except BaseException as exc:
            errors.append(exc)

    clients = [threading.Thread(target=client) for _ in range(20)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(20)
    assert not errors, errors
    assert answers == ["v2"] * 20

    # Only now let the old requests finish: they must still run the code they started on.
    (tmp_path / "gate-open").touch()
    for thread in holders:
        thread.join(20)
    assert [r.status_code for r in in_flight] == [200] * 3
    assert [r.json()["version"] for r in in_flight] == ["v1"] * 3

    assert imports(tmp_path) == ["v1", "v2"]
    assert count(server, reload_line(script)) == 1
    assert version_of(server) == "v2"
    assert imports(tmp_path) == ["v1", "v2"]


# -- 4. a script that fails to load --------------------------------------------------------

BROKEN = {
    # name: (extra source placed after the import is recorded, text that must not leak)
    "syntax-error": ("def broken(:\n    pass", "def broken(:"),
    "import-error": (
        "import reload_no_such_module_7f3a",
        "reload_no_such_module_7f3a",
    ),
    "exception-at-import": (
        "raise RuntimeError('secret-boom-7f3a')",
        "secret-boom-7f3a",
    ),
    "no-application": ("", "no callable"),
    "application-not-callable": ("", "no callable"),
}


# What the error log must say about each.
LOGGED = {
    "syntax-error": "SyntaxError",
    "import-error": "reload_no_such_module_7f3a",
    "exception-at-import": "RuntimeError: secret-boom-7f3a",
    "no-application": "no callable named 'application'",
    "application-not-callable": "no callable named 'application'",
}


# mod_wsgi's behaviour: a script that fails to re-load answers 500 until it changes.
MOD_WSGI_FAILURE = ("--reload-failure", "error")


def broken_text(kind: str, tmp_path: Path) -> str:
    code, _ = BROKEN[kind]
    text = script_text("broken", tmp_path, after=code)
    if kind == "no-application":
        text = text.replace("def application(", "def app(")
    elif kind == "application-not-callable":
        text += "\napplication = 'not callable'\n"
    return text


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_failed_reload_is_a_remembered_500(serve, tmp_path: Path, kind: str) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script, *MOD_WSGI_FAILURE)
    assert version_of(server) == "v1"

    write_file(script, broken_text(kind, tmp_path))
    response = get(server)
    assert_generic_500(response, BROKEN[kind][1], str(script), "Error:", "File ")
    log = server.stderr()
    assert log.count(failed_line(script)) == 1, log
    assert LOGGED[kind] in log  # the log, unlike the client, learns what went wrong
    if kind not in ("no-application", "application-not-callable"):
        assert log.count("Traceback (most recent call last)") == 1, log
    assert count(server, reload_line(script)) == 0
    attempts = imports(tmp_path)
    # A syntax error stops the script before it runs; the others ran up to the failure.
    assert attempts == (["v1"] if kind == "syntax-error" else ["v1", "broken"])

    # The failure is remembered: no new import, no new log entry.
    for _ in range(5):
        assert_generic_500(get(server), BROKEN[kind][1])
    assert imports(tmp_path) == attempts
    assert server.stderr() == log

    write_file(script, script_text("v3", tmp_path))
    assert version_of(server) == "v3"
    assert imports(tmp_path) == [*attempts, "v3"]
    assert count(server, failed_line(script)) == 1
    assert count(server, reload_line(script)) == 1
    assert version_of(server) == "v3"
    assert server.stop() == 0


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_failed_reload_keeps_the_last_good_version_serving(
    serve, tmp_path: Path, kind: str, control_path: Path
) -> None:
    control = control_path
    script = make_script(tmp_path, "v1")
    server = serve(script, "--control-socket", str(control))
    assert version_of(server) == "v1"
    assert control_status(control)["degraded"] is None

    write_file(script, broken_text(kind, tmp_path))
    assert version_of(server) == "v1", "the old code answers the request that saw the change"
    log = server.stderr()
    assert log.count(failed_line(script)) == 1, log
    assert "keeps serving" in log.split(failed_line(script))[1].splitlines()[0]
    assert LOGGED[kind] in log
    attempts = imports(tmp_path)
    assert attempts == (["v1"] if kind == "syntax-error" else ["v1", "broken"])
    degraded = control_status(control)["degraded"]
    assert degraded is not None and LOGGED[kind] in degraded["error"]
    assert degraded["last_good"] <= degraded["since"]

    # Remembered: the old code serves, with no new import and no new log entry.
    for _ in range(5):
        assert version_of(server) == "v1"
    assert imports(tmp_path) == attempts
    assert server.stderr() == log

    write_file(script, script_text("v3", tmp_path))
    assert version_of(server) == "v3"
    assert control_status(control)["degraded"] is None
    assert count(server, reload_line(script)) == 1
    assert server.stop() == 0


def test_vanished_script_keeps_the_last_good_version_serving(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script)
    assert version_of(server) == "v1"
    before = script.stat()
    script.unlink()
    assert version_of(server) == "v1"
    assert count(server, "has vanished; the version loaded at ") == 1
    write_file(script, script_text("v2", tmp_path), mtime_ns=before.st_mtime_ns + ONE_SECOND)
    assert version_of(server) == "v2"


def test_a_second_broken_edit_is_tried_and_logged_again(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script, *MOD_WSGI_FAILURE)
    assert version_of(server) == "v1"
    write_file(script, broken_text("exception-at-import", tmp_path))
    assert get(server).status_code == 500
    write_file(script, broken_text("import-error", tmp_path))
    assert get(server).status_code == 500
    assert get(server).status_code == 500
    assert imports(tmp_path) == ["v1", "broken", "broken"]
    assert count(server, failed_line(script)) == 2


# -- 5. the script vanishes ----------------------------------------------------------------


def test_vanished_script_is_a_500_until_it_comes_back(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script, *MOD_WSGI_FAILURE)
    assert version_of(server) == "v1"
    before = script.stat()

    script.unlink()
    assert_generic_500(get(server), str(script))
    assert count(server, vanished_line(script)) == 1
    log = server.stderr()
    for _ in range(5):
        assert_generic_500(get(server), str(script))
    assert server.stderr() == log

    write_file(script, script_text("v2", tmp_path), mtime_ns=before.st_mtime_ns + ONE_SECOND)
    assert version_of(server) == "v2"
    assert imports(tmp_path) == ["v1", "v2"]
    assert count(server, vanished_line(script)) == 1
    assert count(server, reload_line(script)) == 1
    assert server.stop() == 0


def test_script_put_back_unchanged_is_served(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    original = script.read_text()
    server = serve(script, *MOD_WSGI_FAILURE)
    assert version_of(server) == "v1"
    script.unlink()
    assert get(server).status_code == 500
    script.write_text(original)
    assert version_of(server) == "v1"
    assert imports(tmp_path) == ["v1", "v1"]


# -- 6. atomic rename ----------------------------------------------------------------------


def test_atomic_rename_over_the_script(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script)
    assert version_of(server) == "v1"

    before = script.stat()

    staged = tmp_path / "app.wsgi.new"
    write_file(
        staged, script_text("v2-renamed", tmp_path), mtime_ns=before.st_mtime_ns + ONE_SECOND
    )
    os.replace(staged, script)
    assert version_of(server) == "v2-renamed"
    assert imports(tmp_path) == ["v1", "v2-renamed"]
    assert count(server, reload_line(script)) == 1


def test_atomic_rename_with_same_size_and_mtime(serve, tmp_path: Path) -> None:
    """Only the inode differs: a deploy tool that preserves mtimes (rsync -t, cp -p)."""
    script = make_script(tmp_path, "v1")
    server = serve(script)
    assert version_of(server) == "v1"
    before = script.stat()

    staged = tmp_path / "app.wsgi.new"
    staged_stat = write_file(staged, script_text("v2", tmp_path), mtime_ns=before.st_mtime_ns)
    assert staged_stat.st_size == before.st_size
    os.replace(staged, script)
    after = script.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert after.st_ino != before.st_ino

    assert version_of(server) == "v2"
    assert count(server, reload_line(script)) == 1


# -- 7. edits that keep some of the stat fields --------------------------------------------


def test_same_mtime_different_size_is_a_change(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script)
    assert version_of(server) == "v1"
    before = script.stat()

    after = write_file(script, script_text("v2-longer", tmp_path), mtime_ns=before.st_mtime_ns)
    assert after.st_mtime_ns == before.st_mtime_ns
    assert after.st_size != before.st_size
    assert version_of(server) == "v2-longer"
    assert count(server, reload_line(script)) == 1


def test_mtime_moved_backwards_is_a_change(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script)
    assert version_of(server) == "v1"
    before = script.stat()

    older = before.st_mtime_ns - 3600 * ONE_SECOND
    after = write_file(script, script_text("v0", tmp_path), mtime_ns=older)
    assert after.st_size == before.st_size
    assert version_of(server) == "v0"
    assert count(server, reload_line(script)) == 1


def test_same_second_edit_with_same_size_is_a_change(serve, tmp_path: Path) -> None:
    """Only st_mtime_ns differs, by a millisecond inside the same second."""
    script = tmp_path / "app.wsgi"
    base = (time.time_ns() // ONE_SECOND) * ONE_SECOND + 100_000_000
    write_file(script, script_text("v1", tmp_path), mtime_ns=base)
    server = serve(script)
    assert version_of(server) == "v1"
    before = script.stat()

    after = write_file(script, script_text("v2", tmp_path), mtime_ns=base + 1_000_000)
    assert (after.st_size, after.st_ino) == (before.st_size, before.st_ino)
    assert version_of(server) == "v2"
    assert imports(tmp_path) == ["v1", "v2"]
    assert count(server, reload_line(script)) == 1


# -- 8. --script-reloading off, and the stat cache under load ------------------------------


def test_reloading_off_keeps_the_old_code(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script, "--script-reloading", "off")
    assert version_of(server) == "v1"
    write_file(script, script_text("v2-longer", tmp_path))
    with httpx.Client(base_url=server.url, timeout=15) as client:
        for _ in range(50):
            assert client.get("/").json()["version"] == "v1"
    script.unlink()
    assert version_of(server) == "v1"
    assert imports(tmp_path) == ["v1"]
    assert count(server, reload_line(script)) == 0
    assert count(server, vanished_line(script)) == 0


def test_reloading_off_never_stats(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script, "--script-reloading", "off")
    with httpx.Client(base_url=server.url, timeout=15) as client:
        for _ in range(100):
            assert client.get("/").status_code == 200
    requests, stats = shutdown_counts(server)
    assert requests == 100
    assert stats == 0


async def _hammer(port: int, connections: int, per_connection: int) -> list[bytes]:
    """``connections`` keep-alive clients, each sending ``per_connection`` requests."""
    request = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"

    async def one() -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        statuses = []
        try:
            for _ in range(per_connection):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                statuses.append(head.split(b" ", 2)[1])
                match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                assert match is not None, head
                await reader.readexactly(int(match.group(1)))
        finally:
            writer.close()
        return statuses

    results = await asyncio.gather(*(one() for _ in range(connections)))
    return [status for statuses in results for status in statuses]


def test_stats_are_shared_under_concurrent_load(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script)
    statuses = asyncio.run(asyncio.wait_for(_hammer(server.port, 50, 40), 25))
    assert statuses == [b"200"] * 2000
    requests, stats = shutdown_counts(server)
    assert requests == 2000
    assert 0 < stats < requests
    assert imports(tmp_path) == ["v1"]


# -- 9. SIGHUP -----------------------------------------------------------------------------


def test_sighup_reimports_the_unchanged_script(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script)
    first = get(server).json()
    assert get(server).json()["token"] == first["token"]

    server.signal(signal.SIGHUP)
    wait_until(lambda: "received SIGHUP" in server.stderr(), what="the SIGHUP log line")
    assert imports(tmp_path) == ["v1"]  # lazily: nothing until a request comes
    second = get(server).json()
    assert second["version"] == "v1"
    assert second["token"] != first["token"]
    assert imports(tmp_path) == ["v1", "v1"]
    assert count(server, reload_line(script)) == 1

    assert get(server).json()["token"] == second["token"]
    assert imports(tmp_path) == ["v1", "v1"]
    assert server.stop() == 0


def test_sighup_does_not_break_change_detection(serve, tmp_path: Path) -> None:
    script = make_script(tmp_path, "v1")
    server = serve(script)
    assert version_of(server) == "v1"
    server.signal(signal.SIGHUP)
    wait_until(lambda: "received SIGHUP" in server.stderr(), what="the SIGHUP log line")
    assert version_of(server) == "v1"
    write_file(script, script_text("v2", tmp_path))
    assert version_of(server) == "v2"
    assert imports(tmp_path) == ["v1", "v1", "v2"]


# -- 10. start-up failure ------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_script_that_fails_at_startup_exits_1(serve, tmp_path: Path, kind: str) -> None:
    script = tmp_path / "app.wsgi"
    write_file(script, broken_text(kind, tmp_path))
    server = serve(script, wait=False)
    assert server.proc.wait(timeout=15) == 1
    err = server.stderr()
    assert "asyncwsgi: error:" in err
    assert str(script) in err
    assert err.count("Traceback") <= 1
    assert not server.addresses
    assert imports(tmp_path) == ([] if kind == "syntax-error" else ["broken"])


def test_missing_script_at_startup_exits_1(serve, tmp_path: Path) -> None:
    server = serve(tmp_path / "missing.wsgi", wait=False)
    assert server.proc.wait(timeout=15) == 1
    assert "asyncwsgi: error:" in server.stderr()


def test_startup_failure_names_the_syntax_error_line(serve, tmp_path: Path) -> None:
    script = tmp_path / "app.wsgi"
    text = script_text("v1", tmp_path) + "\ndef broken(:\n    pass\n"
    write_file(script, text)
    server = serve(script, wait=False)
    assert server.proc.wait(timeout=15) == 1
    line = text.splitlines().index("def broken(:") + 1
    assert f"(line {line})" in server.stderr()
