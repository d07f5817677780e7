"""Upload and large-response endpoints for tests/http/test_memory.py.

Served as ``wsgi_memory_app:application``. ``POST /upload`` reads the body in 64 KiB
blocks, as an upload app does, and answers ``<size> <sha256>``; with ``?pause=S`` it waits
S seconds before reading and again at the byte count given in an ``X-Halfway`` header.
``GET /big`` answers 1 MiB in one piece, ``GET /big-stream`` 1 MiB in 16 pieces; each
call builds fresh bytes (so a server that buffers them shows it in its RSS) and appends a
line to the file named by ``WSGI_TEST_EVENTS``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from urllib.parse import parse_qs

BLOCK = 64 * 1024
SIZE = 1024 * 1024
EVENTS = os.environ.get("WSGI_TEST_EVENTS", "")
_counter = itertools.count()
_lock = threading.Lock()


def record(event: str) -> None:
    if EVENTS:
        with _lock, open(EVENTS, "a", encoding="utf-8") as f:
            f.write(event + "\n")


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/upload":
        # ?pause=S: a slow consumer, S seconds before reading and again half way; a
        # client then sends much faster than the app reads.
        pause = float(parse_qs(environ.get("QUERY_STRING", "")).get("pause", ["0"])[0])
        stream = environ["wsgi.input"]
        digest = hashlib.sha256()
        size = 0
        time.sleep(pause)
        halfway = int(environ.get("HTTP_X_HALFWAY", "0"))
        while True:
            block = stream.read(BLOCK)
            if not block:
                break
            if halfway and size < halfway <= size + len(block):
                time.sleep(pause)
            size += len(block)
            digest.update(block)
        body = f"{size} {digest.hexdigest()}".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
    if path == "/big":
        n = next(_counter)
        record(f"big {n}")
        start_response(
            "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(SIZE))]
        )
        return [bytes([n % 251]) * SIZE]
    if path == "/big-stream":
        n = next(_counter)
        record(f"big-stream {n}")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (bytes([(n + i) % 251]) * BLOCK for i in range(SIZE // BLOCK))
    body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [body]
