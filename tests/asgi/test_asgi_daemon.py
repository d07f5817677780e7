"""WSGIApp(daemon=...): the WSGI application runs in a daemon process group, restarted
one process at a time when its script changes, served through an ASGI host."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from asyncwsgi import WSGIApp

pytestmark = pytest.mark.timeout(60)

SCRIPT = """\
import os
VERSION = {version!r}

def application(environ, start_response):
    size = int(environ.get("CONTENT_LENGTH") or 0)
    data = environ["wsgi.input"].read(size) if size else b""
    body = f"{{VERSION}} {{os.getpid()}} {{len(data)}} {{environ['SCRIPT_NAME']}}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


def write_script(path: Path, version: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(SCRIPT.format(version=version))
    os.replace(tmp, path)  # one change, seen whole


async def until_version(client: httpx.AsyncClient, version: str, timeout: float = 20) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        response = await client.get("/")
        assert response.status_code == 200, response.text
        if response.text.startswith(version + " "):
            return response.text
        assert loop.time() < deadline, f"still {response.text!r}"
        await asyncio.sleep(0.05)


async def test_daemon_group_serves_and_restarts_on_change(tmp_path: Path) -> None:
    script = tmp_path / "app.wsgi"
    write_script(script, "v1")
    app = WSGIApp(str(script), daemon={"processes": 1, "threads": 2, "group": "legacy"})
    transport = httpx.ASGITransport(app=app, root_path="/legacy")
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = await client.get("/")
            version, pid, size, script_name = first.text.split()
            assert (version, size, script_name) == ("v1", "0", "/legacy")
            assert int(pid) != os.getpid(), "the application runs in another process"

            posted = await client.post("/", content=b"x" * 300_000)
            assert posted.text.split()[2] == "300000"

            write_script(script, "v2")
            # Old code keeps answering until the fresh process is READY; then only new code.
            text = await until_version(client, "v2")
            assert text.split()[1] != pid, "a fresh process serves the new code"
            results = await asyncio.gather(*(client.get("/") for _ in range(20)))
            assert all(r.text.startswith("v2 ") for r in results)
    finally:
        await app.aclose()


async def test_boot_failure_is_an_error_at_startup(tmp_path: Path) -> None:
    script = tmp_path / "broken.wsgi"
    script.write_text("def application(:\n")
    app = WSGIApp(str(script), daemon=1)
    sent: list[dict[str, object]] = []
    messages = iter([{"type": "lifespan.startup"}])

    async def receive() -> dict[str, object]:
        return next(messages)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert sent and sent[0]["type"] == "lifespan.startup.failed"
    assert "could not load the application" in str(sent[0]["message"])


HOST_APP = """\
import os
from starlette.applications import Starlette
from starlette.routing import Mount
from asyncwsgi import WSGIApp

group = {"processes": 2, "threads": 2, "group": "uvhost"}
legacy = WSGIApp(os.environ["DAEMON_TEST_SCRIPT"], daemon=group)
app = Starlette(routes=[Mount("/legacy", app=legacy)], lifespan=None)
"""


def test_under_uvicorn_over_a_socket(tmp_path: Path) -> None:
    """A real uvicorn, a Starlette mount, a daemon group of 2; reload; lifespan stops it."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "app.wsgi"
    write_script(script, "v1")
    (tmp_path / "daemon_host.py").write_text(HOST_APP)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    env = {
        **os.environ,
        "DAEMON_TEST_SCRIPT": str(script),
        "PYTHONPATH": os.pathsep.join([str(root), str(tmp_path)]),
    }
    launch = root / "tests" / "apps" / "asgi_launch.py"
    log = open(tmp_path / "uvicorn.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, str(launch), "uvicorn", str(sock.fileno()), "daemon_host:app"],
        env=env,
        cwd=str(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
        pass_fds=(sock.fileno(),),
    )
    url = f"http://127.0.0.1:{port}/legacy/"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "uvicorn.log").read_text()
            try:
                first = httpx.get(url, timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, (tmp_path / "uvicorn.log").read_text()
                time.sleep(0.05)
        version, pid, _, script_name = first.text.split()
        assert (version, script_name) == ("v1", "/legacy")
        out = subprocess.run(
            ["pgrep", "-f", "asyncwsgi: daemon uvhost"], capture_output=True, text=True
        )
        daemons = {int(p) for p in out.stdout.split()}
        assert int(pid) in daemons and len(daemons) == 2

        write_script(script, "v2")
        deadline = time.monotonic() + 20
        with httpx.Client(timeout=10) as client:
            while True:
                response = client.get(url)
                assert response.status_code == 200, "no failed request during the restart"
                if response.text.startswith("v2 "):
                    break
                assert time.monotonic() < deadline, response.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
        sock.close()
    text = (tmp_path / "uvicorn.log").read_text()
    assert "Traceback" not in text, text
    # A Starlette mount gets no lifespan events; the daemons see the host's end of their
    # sockets close and exit with it. Give them a moment to be reaped.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-f", "asyncwsgi: daemon uvhost"], capture_output=True)
        if not out.stdout.strip():
            break
        time.sleep(0.05)
    out = subprocess.run(["pgrep", "-f", "asyncwsgi: daemon uvhost"], capture_output=True)
    assert not out.stdout.strip(), "daemon processes outlived the host"


async def test_a_body_in_several_messages_larger_than_the_buffer_arrives_whole(
    tmp_path: Path,
) -> None:
    # The first message alone is over the front's 256 KiB buffer and more follow: the
    # front must stop calling receive() while the daemon catches up, then go on (a pause
    # announced after the daemon had already drained the buffer once stalled it).
    script = tmp_path / "app.wsgi"
    script.write_text(
        "def application(environ, start_response):\n"
        "    data = environ['wsgi.input'].read()\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [str(len(data)).encode()]\n"
    )
    app = WSGIApp(str(script), daemon={"processes": 1, "threads": 2})
    parts = [b"x" * 300_000, b"y" * 1000, b"z" * 1000]
    asked = 0

    async def receive() -> dict[str, object]:
        nonlocal asked
        asked += 1
        if parts:
            body = parts.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(parts)}
        await asyncio.Event().wait()  # the client stays; the app answers first
        raise AssertionError("unreachable")

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "http_version": "1.1",
        "headers": [(b"host", b"t"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "root_path": "",
    }
    try:
        await asyncio.wait_for(app(scope, receive, send), 20)
    finally:
        await app.aclose()
    assert asked == 4 and not parts
    assert sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"302000"  # type: ignore[misc]
