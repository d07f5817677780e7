"""Response framing: the bytes of a status line, headers and body chunks.

Rule: nothing here imports asyncio or touches a socket. Functions take values and return
bytes, so they are tested with byte literals and may run on any thread. The rules a head
follows (Content-Length, hop-by-hop fields, which statuses have a body) are the request
core's (``asyncwsgi.core.head``); this module writes them as HTTP/1.1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from asyncwsgi.core import head as head_rules
from asyncwsgi.core.head import HOP_BY_HOP, status_allows_body

# Framing of a response body on the wire.
LENGTH = 0  # Content-Length delimited
CHUNKED = 1  # Transfer-Encoding: chunked
UNTIL_CLOSE = 2  # HTTP/1.0 without Content-Length: the body ends when the connection does
NO_BODY = 3  # HEAD, 1xx, 204, 304

LAST_CHUNK = b"0\r\n\r\n"


@dataclass(slots=True)
class Head:
    """The decided framing of one response."""

    data: bytes
    framing: int
    content_length: int  # -1 when not known
    keep_alive: bool
    status_code: int


def build_head(
    status: str,
    headers: Iterable[tuple[str, str]],
    *,
    http11: bool,
    keep_alive: bool,
    is_head: bool,
    server_headers: bytes,
    body_length: int = -1,
) -> Head:
    """Build the response head.

    ``body_length`` is the length of the whole body when the caller already holds all of
    it (a one-element response); it becomes the Content-Length when the application gave
    none. ``server_headers`` are the pre-encoded ``Date``/``Server`` lines.
    """
    status_code = int(status[:3])
    content_length = -1
    # Plain string concatenation: measured faster than a list and join for the few
    # headers a response has, and this runs for every response.
    text = "HTTP/1.1 " + status + "\r\n"
    for name, value in headers:
        lname = name.lower()
        if lname == "content-length":
            content_length = head_rules.content_length(value, content_length)
        elif lname in HOP_BY_HOP:
            if lname == "connection" and head_rules.wants_close(value):
                keep_alive = False
            continue
        text += name + ": " + value + "\r\n"

    if is_head or not status_allows_body(status_code):
        framing = NO_BODY
        if content_length < 0 and body_length > 0 and is_head:
            # A HEAD answer carries the length the GET would have had.
            content_length = body_length
            text += f"Content-Length: {body_length}\r\n"
    elif content_length >= 0:
        framing = LENGTH
    elif body_length >= 0:
        framing = LENGTH
        content_length = body_length
        text += f"Content-Length: {body_length}\r\n"
    elif http11:
        framing = CHUNKED
        text += "Transfer-Encoding: chunked\r\n"
    else:
        framing = UNTIL_CLOSE
        keep_alive = False

    if not keep_alive:
        text += "Connection: close\r\n"
    elif not http11:
        text += "Connection: keep-alive\r\n"
    data = text.encode("latin-1") + server_headers + b"\r\n"
    return Head(data, framing, content_length, keep_alive, status_code)


# What an access log line may not carry as is: a quote or backslash (they would end or
# fake a quoted field) and any byte that is not printable ASCII (a newline would forge a
# whole line).
def chunk(data: bytes) -> bytes:
    """Frame ``data`` (non-empty) as one chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def simple_response(status: str, body: bytes, server_headers: bytes, *, close: bool) -> bytes:
    """A complete plain-text response, used for errors the server answers by itself."""
    connection = b"Connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 %b\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\n%b%b\r\n%b"
        % (status.encode("latin-1"), len(body), connection, server_headers, body)
    )
