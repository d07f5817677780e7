"""Response edge cases over real sockets: bodies nobody takes, write() before a file."""

from __future__ import annotations

import time
from pathlib import Path

import httpx


def test_head_of_an_endless_stream_ends(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server("edge_apps:endless")
    marker = tmp_path / "closed"
    response = httpx.head(server.url + "/", headers={"X-Marker": str(marker)}, timeout=5)
    assert response.status_code == 200
    assert response.content == b""
    # The generator was stopped and closed, rather than iterated for nothing forever.
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.read_text() == "closed"
    # The connection is still usable: a GET on a fresh request streams as usual.
    with httpx.stream("GET", server.url + "/", timeout=5) as stream:
        first = next(stream.iter_bytes())
        assert first.startswith(b"data: 0")


def test_write_then_file_wrapper_sends_both(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server("edge_apps:write_then_file")
    data = bytes(range(256)) * 4000
    path = tmp_path / "blob"
    path.write_bytes(data)
    response = httpx.get(server.url + "/", headers={"X-File": str(path)}, timeout=10)
    assert response.status_code == 200
    assert response.content == b"head:" + data
    assert "RuntimeError" not in server.stderr()
