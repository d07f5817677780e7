"""The WSGI app of ``chaos.py``: a small answer on ``/``, a large one on ``/big``.

``chaos.py`` copies this file to ``chaos.wsgi`` in a fresh temporary folder and serves
it. ``/`` answers ``version=N pid=P`` (the script's version and the process that ran
it), so every response tells which code and which daemon served it; the benchmark
replaces the script under load with the line ``VERSION = N`` bumped. ``/big`` answers
``BIG_SIZE`` bytes in 64 KiB chunks, produced as they are sent: the never-reading
clients ask for it and then read nothing, so the worker writing it blocks until the
server's send timeout drops them.
"""

import os

VERSION = 1
BIG_SIZE = 16 * 1024 * 1024
_CHUNK = b"x" * 65536


def _big():
    for _ in range(BIG_SIZE // len(_CHUNK)):
        yield _CHUNK


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/big":
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(BIG_SIZE))],
        )
        return _big()
    body = b"version=%d pid=%d\n" % (VERSION, os.getpid())
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
