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
