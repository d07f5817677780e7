"""WSGI applications for the WSGIApp tests (in-process, real hosts and differential),
dispatched on PATH_INFO.

Events worth checking after a response (``close()`` calls, what ``wsgi.input`` raised)
are appended to :data:`EVENTS`; in-process tests read it directly, host tests through
the ``/_stats`` endpoint of ``asgi_host_app``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs
from wsgiref.util import FileWrapper

EVENTS: list[str] = []
_lock = threading.Lock()


def record(event: str) -> None:
    with _lock:
        EVENTS.append(event)


def count(event: str) -> int:
    with _lock:
        return EVENTS.count(event)


def _query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _text(start_response, body, status="200 OK", ctype="text/plain"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _json(start_response, data):
    return _text(start_response, json.dumps(data).encode(), ctype="application/json")


class Recorded:
    """A response iterable whose ``close()`` is recorded as ``close NAME``."""

    def __init__(self, name, chunks, fail_at=-1):
        self.name = name
        self.chunks = chunks
        self.fail_at = fail_at

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError(f"{self.name}: failing on purpose")
            yield chunk

    def close(self):
        record(f"close {self.name}")


def _forever(size):
    block = b"x" * size
    while True:
        yield block


ENVIRON_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_PROTOCOL",
    "wsgi.url_scheme",
    "wsgi.input_terminated",
    "wsgi.multithread",
    "wsgi.run_once",
    "wsgi.version",
)


def app_environ(environ, start_response):
    data = {k: environ.get(k) for k in ENVIRON_KEYS}
    data.update({k: v for k, v in environ.items() if k.startswith("HTTP_")})
    for key in ("REQUEST_URI", "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR"):
        data[key] = environ.get(key)
    return _json(start_response, data)


def app_readline(environ, start_response):
    """``readline(size)`` first, possibly before any body byte has arrived."""
    size = int(_query(environ).get("size", "-1"))
    stream = environ["wsgi.input"]
    first = stream.readline(size)
    rest = stream.read()
    return _json(start_response, {"first": first.decode("latin-1"), "rest": len(rest)})


def app_readlines(environ, start_response):
    hint = int(_query(environ).get("hint", "-1"))
    lines = environ["wsgi.input"].readlines(hint)
    return _json(start_response, [line.decode("latin-1") for line in lines])


def app_iterate(environ, start_response):
    lines = list(environ["wsgi.input"])
    return _json(start_response, [line.decode("latin-1") for line in lines])


def app_read_blocks(environ, start_response):
    """read(n) repeatedly: every block but the last has exactly n bytes."""
    n = int(_query(environ).get("n", "1000"))
    stream = environ["wsgi.input"]
    sizes = []
    digest = hashlib.sha256()
    while True:
        block = stream.read(n)
        if not block:
            break
        sizes.append(len(block))
        digest.update(block)
    exact = all(size == n for size in sizes[:-1])
    return _json(start_response, {"blocks": len(sizes), "exact": exact, "sha": digest.hexdigest()})


def app_upload(environ, start_response):
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    size = 0
    while True:
        block = stream.read(65536)
        if not block:
            break
        size += len(block)
        digest.update(block)
    return _text(start_response, f"{size} {digest.hexdigest()}\n".encode())


def app_echo(environ, start_response):
    body = environ["wsgi.input"].read()
    ctype = environ.get("CONTENT_TYPE") or "application/octet-stream"
    return _text(start_response, body, ctype=ctype)


def app_read_outcome(environ, start_response):
    """Read the whole body, recording whether read() raised or the body came back short."""
    stream = environ["wsgi.input"]
    expected = int(environ.get("CONTENT_LENGTH") or -1)
    got = 0
    try:
        while True:
            block = stream.read(8192)
            if not block:
                break
            got += len(block)
    except OSError as exc:
        record(f"read error {type(exc).__name__}")
        raise
    if expected >= 0 and got < expected:
        record(f"read short {got}")
    else:
        record(f"read ok {got}")
    return _text(start_response, b"%d\n" % got)


def app_stream(environ, start_response):
    q = _query(environ)
    n = int(q.get("n", "5"))
    size = int(q.get("size", "0"))
    start_response("200 OK", [("Content-Type", "text/plain")])

    def chunks():
        for i in range(n):
            yield (b"chunk %d\n" % i) if not size else bytes([65 + i % 26]) * size

    return Recorded("stream", chunks())


def app_infinite(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Recorded("infinite", _forever(int(_query(environ).get("size", "16384"))))


def app_write(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    write(b"")
    return [b"then ", b"returned\n"]


def app_exc_info(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "yes")])
    try:
        raise ValueError("something broke")
    except ValueError:
        body = b"replaced by exc_info\n"
        start_response(
            "503 Service Unavailable",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
            sys.exc_info(),
        )
        return [body]


def app_exc_info_late(environ, start_response):
    """exc_info after the head went out: PEP 3333 says re-raise, so the response ends."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"first part\n"
        try:
            raise ValueError("late")
        except ValueError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"never sent\n"

    return body()


def app_error_before(environ, start_response):
    raise RuntimeError("failing before start_response")


def app_error_after(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Recorded("error-after", [b"one\n", b"two\n", b"three\n"], fail_at=2)


def app_status(environ, start_response):
    code = _query(environ).get("code", "200")
    status = {"204": "204 No Content", "304": "304 Not Modified", "404": "404 Not Found"}
    headers = [("Content-Type", "text/plain")]
    if code == "304":
        headers.append(("Content-Length", "99"))  # describes the resource, not this body
    start_response(status.get(code, "200 OK"), headers)
    return [b"" if code in ("204", "304") else b"status body\n"]


def app_short(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"12345"]


def app_long(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"12345", b"67890"]


def app_headers(environ, start_response):
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("X-Mixed-Case", "Value"),
            ("Connection", "keep-alive"),
        ],
    )
    return [b"headers\n"]


def app_file(environ, start_response):
    size = int(_query(environ).get("size", "300000"))
    f = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the file wrapper's close()
    f.write(bytes(i % 251 for i in range(size)))
    f.seek(0)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    # wsgi.file_wrapper is optional in PEP 3333 (a2wsgi has none): fall back as apps must.
    return environ.get("wsgi.file_wrapper", FileWrapper)(f, 32768)


def app_sleep(environ, start_response):
    time.sleep(int(_query(environ).get("ms", "100")) / 1000)
    return _text(start_response, b"slept\n")


def app_hello(environ, start_response):
    return _text(start_response, b"Hello, world!\n")


ROUTES = {
    "/hello": app_hello,
    "/environ": app_environ,
    "/readline": app_readline,
    "/readlines": app_readlines,
    "/iterate": app_iterate,
    "/read-blocks": app_read_blocks,
    "/upload": app_upload,
    "/echo": app_echo,
    "/read-outcome": app_read_outcome,
    "/stream": app_stream,
    "/infinite": app_infinite,
    "/write": app_write,
    "/exc-info": app_exc_info,
    "/exc-info-late": app_exc_info_late,
    "/error-before": app_error_before,
    "/error-after": app_error_after,
    "/status": app_status,
    "/short": app_short,
    "/long": app_long,
    "/headers": app_headers,
    "/file": app_file,
    "/sleep": app_sleep,
}


def application(environ, start_response) -> Iterator[bytes]:
    path = environ["PATH_INFO"]
    route = ROUTES.get(path)
    if route is None and path.startswith("/environ/"):
        route = app_environ
    if route is None:
        return _text(start_response, b"no such route\n", status="404 Not Found")
    return route(environ, start_response)
