"""Applications for response edge cases."""

import itertools


def endless(environ, start_response):
    """An endless stream (server-sent events style); HEAD must not iterate it forever."""
    marker = environ.get("HTTP_X_MARKER")
    start_response("200 OK", [("Content-Type", "text/event-stream")])

    def events():
        try:
            for i in itertools.count():
                yield f"data: {i}\n\n".encode()
        finally:
            if marker:
                with open(marker, "w") as f:
                    f.write("closed")

    return events()


def write_then_file(environ, start_response):
    """Uses write() first, then returns wsgi.file_wrapper: both parts must arrive."""
    path = environ["HTTP_X_FILE"]
    write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
    write(b"head:")
    return environ["wsgi.file_wrapper"](open(path, "rb"))
