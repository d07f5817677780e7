"""Applications for the connection-handling regressions found in review."""

import time


def read_body(environ, start_response):
    data = environ["wsgi.input"].read()
    body = f"{len(data)}\n".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def respond_then_read(environ, start_response):
    """Sends its head and a first chunk, then reads the body (with Expect: 100-continue)."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"part1")
    data = environ["wsgi.input"].read()
    return [f"|{len(data)}".encode()]


def slow_path(environ, start_response):
    time.sleep(0.3)
    body = environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
