"""What an ASGI scope says, in the request core's terms, and a WSGI head as ASGI says it.

Rule: pure functions; no threads, no event loop. Scope values in, WSGI/ASGI values out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from asyncwsgi.core.exchange import RequestHead
from asyncwsgi.core.head import HOP_BY_HOP, status_allows_body, wants_close
from asyncwsgi.core.head import content_length as parse_content_length

Message = dict[str, Any]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def fill_request(request: RequestHead, scope: Scope) -> None:
    """Set the request fields of an exchange from its ``http`` scope."""
    request.method = scope["method"]
    request.path = request_path(scope)
    request.query = scope.get("query_string") or b""
    request.http_version = scope.get("http_version") or "1.1"
    request.headers = scope.get("headers") or []
    request.client = scope.get("client")
    server = scope.get("server")
    # A UNIX socket reports (path, None): no port of its own, so use the Host header.
    request.server = server if server and server[1] is not None else None
    request.scheme = scope.get("scheme") or "http"
    request.script_name = script_name_of(scope) if scope.get("root_path") else None


def request_path(scope: Scope) -> bytes:
    """The request path as raw bytes, the form ``build_environ`` takes.

    ``raw_path`` is used when it agrees with ``path`` (it keeps bytes that are not UTF-8,
    which ``path`` has lost); otherwise ``path`` (a framework may have rewritten it),
    with ``%`` escaped so that decoding it again gives the same text.
    """
    path: str = scope["path"]
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        encoded = path.encode("utf-8", "surrogateescape")
    raw = scope.get("raw_path")
    if raw is not None:
        if raw == encoded:
            return bytes(raw)
        if b"%" in raw and unquote_to_bytes(raw).decode("utf-8", "replace") == path:
            return bytes(raw)
    return encoded.replace(b"%", b"%25") if b"%" in encoded else encoded


def script_name_of(scope: Scope) -> str:
    """SCRIPT_NAME from the ASGI ``root_path``: UTF-8 bytes as latin-1 text (PEP 3333)."""
    root: str = scope.get("root_path") or ""
    return root.encode("utf-8", "surrogateescape").decode("latin-1").rstrip("/")


def response_start(
    status: str,
    headers: list[tuple[str, str]],
    *,
    is_head: bool,
    body_length: int,
) -> tuple[Message, int, bool]:
    """The ``http.response.start`` message of a WSGI status and header list.

    Returns the message, the Content-Length the body must have (-1: not known) and
    whether the body is sent at all. ``body_length`` is the length of the whole body when
    it is already known (a one-piece response); it becomes the Content-Length when the
    application gave none, so hosts need not chunk it. Header names are lowercased and
    values stripped, as ASGI hosts require. Raises ``ValueError`` for a Content-Length
    that is not a number or two that differ, before anything is sent.
    """
    status_code = int(status[:3])
    allowed = not is_head and status_allows_body(status_code)
    content_length = -1
    out: list[tuple[bytes, bytes]] = []
    append = out.append
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == "connection" and wants_close(value):
                append((b"connection", b"close"))
            continue
        value = value.strip(" \t")
        if lname == "content-length":
            if content_length >= 0:  # a copy of the first: checked, not sent twice
                content_length = parse_content_length(value, content_length)
                continue
            content_length = parse_content_length(value)
            if not allowed and not is_head:
                # 204/304: hosts would wait for that many body bytes, which must not come.
                continue
        append((lname.encode("latin-1"), value.encode("latin-1")))
    if content_length < 0 and body_length >= 0 and (allowed or (is_head and body_length > 0)):
        # A HEAD answer carries the length the GET would have had.
        content_length = body_length
        append((b"content-length", str(body_length).encode("ascii")))
    message = {"type": "http.response.start", "status": status_code, "headers": out}
    return message, content_length if allowed else -1, allowed


def expects_body(headers: list[tuple[bytes, bytes]], http_version: str) -> bool:
    length: bytes | None = None
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            chunked = True
    if length is not None:
        return length.strip() != b"0"
    if chunked:
        return True
    # HTTP/1.x frames every body with one of the two; HTTP/2 and 3 need neither.
    return not http_version.startswith("1.")


def expects_continue(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name == b"expect" and value.strip().lower() == b"100-continue" for name, value in headers
    )
