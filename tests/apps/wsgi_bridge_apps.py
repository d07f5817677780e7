"""WSGI applications for tests/wsgi/test_wsgi_bridge.py, dispatched on PATH_INFO.

Served as ``wsgi_bridge_apps:application`` (or ``:validated``, the same app inside
``wsgiref.validate.validator``). Events worth checking from the test (``close()`` calls,
generator progress) are appended, one per line, to the file named by the environment
variable ``WSGI_TEST_EVENTS``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

EVENTS = os.environ.get("WSGI_TEST_EVENTS", "")
_lock = threading.Lock()


def record(event: str) -> None:
    if EVENTS:
        with _lock, open(EVENTS, "a", encoding="utf-8") as f:
            f.write(event + "\n")


def _query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _text(start_response, body, status="200 OK", ctype="text/plain"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _lines_response(start_response, lines):
    body = json.dumps([line.decode("latin-1") for line in lines]).encode()
    return _text(start_response, body, ctype="application/json")


class Recorded:
    """A response iterable whose close() is recorded under ``name``."""

    def __init__(self, name, chunks, fail_at=-1):
        self.name = name
        self.chunks = chunks
        self.fail_at = fail_at

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError(f"{self.name}: failing on purpose in iteration")
            yield chunk

    def close(self):
        record(f"close {self.name}")


class Forever:
    """Yields 64 KiB blocks until closed; close() records how far it got."""

    def __init__(self):
        self.blocks = 0
        self.closed = False

    def __iter__(self):
        block = b"z" * 65536
        while not self.closed:
            self.blocks += 1
            if self.blocks == 2:
                record("forever started")
            yield block

    def close(self):
        self.closed = True
        record("close forever")


class ExcAfter:
    """Sends part of a body, then calls start_response with exc_info: too late."""

    def __init__(self, start_response):
        self.start_response = start_response

    def __iter__(self):
        yield b"partial-body"
        try:
            raise ValueError("exc-after-marker")
        except ValueError:
            self.start_response(
                "500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info()
            )
            record("exc-after: start_response did not raise")
        yield b"should never be sent"

    def close(self):
        record("close exc-after")


def application(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)
    stream = environ["wsgi.input"]

    if path == "/simple":
        return _text(start_response, b"hello world\n")

    if path == "/stream":

        def generate():
            start_response("200 OK", [("Content-Type", "text/plain")])
            for i in range(5):
                yield b"chunk %d\n" % i

        return generate()

    if path == "/read-n":
        n = int(q.get("n", "7"))
        pieces = []
        while True:
            piece = stream.read(n)
            if not piece:
                break
            assert len(piece) <= n
            pieces.append(piece)
        body = b"".join(pieces)
        full = all(len(p) == n for p in pieces[:-1])
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("X-Pieces", str(len(pieces))),
                ("X-Full-Pieces", "yes" if full else "no"),
            ],
        )
        return [body]

    if path == "/readline":
        lines = []
        while True:
            line = stream.readline()
            if not line:
                break
            lines.append(line)
        return _lines_response(start_response, lines)

    if path == "/readline-n":
        n = int(q.get("n", "5"))
        lines = []
        while True:
            line = stream.readline(n)
            if not line:
                break
            lines.append(line)
        return _lines_response(start_response, lines)

    if path == "/readlines":
        return _lines_response(start_response, stream.readlines())

    if path == "/iter":
        return _lines_response(start_response, list(stream))

    if path == "/sha256":
        digest = hashlib.sha256()
        size = 0
        while True:
            block = stream.read(65536)
            if not block:
                break
            size += len(block)
            digest.update(block)
        return _text(start_response, f"{size} {digest.hexdigest()}".encode())

    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one,")
        write(b"")
        write(b"two,")
        return [b"three,", b"four"]

    if path == "/write-only":
        write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "9")])
        write(b"only ")
        write(b"this")
        return []

    if path.startswith("/file"):
        wrapper = environ["wsgi.file_wrapper"]
        if path == "/file-bytesio":
            data = bytes(range(256)) * 1000
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return wrapper(io.BytesIO(data), 4096)
        if path == "/file-pipe":
            data = bytes(range(256)) * 1000
            rfd, wfd = os.pipe()

            def feed():
                with os.fdopen(wfd, "wb") as w:
                    w.write(data)

            threading.Thread(target=feed, daemon=True).start()
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return wrapper(os.fdopen(rfd, "rb"), 8192)
        f = open(q["path"], "rb")  # noqa: SIM115 - the file wrapper closes it
        if "offset" in q:
            f.seek(int(q["offset"]))
        headers = [("Content-Type", "application/octet-stream")]
        if "length" in q:
            headers.append(("Content-Length", q["length"]))
        start_response("200 OK", headers)
        result = wrapper(f, 8192)
        record(f"file-wrapper {type(result).__name__}")
        return result

    if path == "/errors":
        errors = environ["wsgi.errors"]
        errors.write("message-to-wsgi-errors\n")
        errors.writelines(["line-a\n", "line-b\n"])
        errors.flush()
        return _text(start_response, b"ok")

    if path == "/environ" or path.startswith("/environ/"):
        keys = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int))}
        keys["__name__"] = __name__
        return _text(start_response, json.dumps(keys).encode(), ctype="application/json")

    if path == "/empty-then-data":
        gate = q["gate"]

        def generate():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b""
            record("empty yielded")
            deadline = time.monotonic() + 10
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.01)
            yield b"data"
            yield b""
            yield b"-more"

        return generate()

    if path == "/exc-before":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("handled by the app")
        except ValueError:
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain"), ("X-App-Error", "yes")],
                sys.exc_info(),
            )
            return [b"the app's own error page"]

    if path == "/exc-before-empty-chunk":

        def generate():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b""  # nothing sent yet: the status can still change
            try:
                raise ValueError("handled by the app")
            except ValueError:
                start_response(
                    "503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info()
                )
            yield b"replaced"

        return generate()

    if path == "/exc-after":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ExcAfter(start_response)

    if path == "/error-before":
        raise RuntimeError("error-before-marker secret=hunter2")

    if path == "/error-in-first-next":

        def generate():
            start_response("200 OK", [("Content-Type", "text/plain")])
            raise RuntimeError("error-in-first-next-marker")
            yield b"never"

        return generate()

    if path == "/error-after":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Recorded("error-after", [b"partial-body", b"never sent"], fail_at=1)

    if path == "/error-after-length":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return Recorded("error-after-length", [b"x" * 10, b"y" * 10], fail_at=1)

    if path == "/close":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Recorded("normal", [b"a", b"b", b"c"])

    if path == "/close-single":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Recorded("single", [b"only"])

    if path == "/close-error":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Recorded("error", [b"a", b"b"], fail_at=1)

    if path == "/forever":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Forever()

    if path == "/slow":
        time.sleep(float(q.get("s", "1")))
        return _text(start_response, b"slow done")

    return _text(start_response, b"not found\n", status="404 Not Found")


validated = validator(application)


def simple(environ, start_response):
    return _text(start_response, b"simple callable\n")


def app(environ, start_response):
    return _text(start_response, b"callable named app\n")
