"""uvicorn factory: a plain ASGI hello world, the ceiling any bridge under uvicorn can
reach (same status, headers and body as ``examples/hello.wsgi``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"14")],
}
_BODY = {"type": "http.response.body", "body": b"Hello, world!\n"}


async def hello(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_BODY)


def create() -> Any:
    return hello
