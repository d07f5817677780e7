"""Echo the size and SHA-256 of a streamed upload, read in 64 KiB blocks."""

import hashlib


def application(environ, start_response):
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    size = 0
    while True:
        block = stream.read(65536)
        if not block:
            break
        size += len(block)
        digest.update(block)
    body = f"{size} {digest.hexdigest()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
