# Fallback copy of examples/hello.wsgi, used by benchmarks/run.py only when
# examples/hello.wsgi does not exist.  Keep the two byte-for-byte equivalent.

BODY = b"Hello, world!\n"


def application(environ, start_response):
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))],
    )
    return [BODY]
