"""The bundled example answers over a real socket."""

from __future__ import annotations

import httpx

from tests.conftest import EXAMPLES


def test_hello_example(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(EXAMPLES / "hello.wsgi")
    response = httpx.get(server.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello, world!\n"
    assert response.headers["content-length"] == "14"
    assert response.headers["server"] == "asyncwsgi"
    assert "date" in response.headers
    assert server.stop() == 0
