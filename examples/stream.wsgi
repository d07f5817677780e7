"""A streamed response: a generator, sent chunked since it has no Content-Length."""

import time


def application(environ, start_response):
    count = int(environ.get("QUERY_STRING", "").partition("n=")[2] or 5)
    start_response("200 OK", [("Content-Type", "text/plain")])

    def lines():
        for i in range(count):
            yield f"line {i}\n".encode()
            time.sleep(0.01)

    return lines()
