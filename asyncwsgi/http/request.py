"""What a request head says about its body and target, and what makes it unacceptable.

Rule: nothing here imports asyncio or touches a socket: the parsed head in, values (or a
:class:`Reject` naming the status to answer) out, so it is tested with byte literals.
The connection (``asyncwsgi.http.protocol``) calls it once a head is complete.
"""

from __future__ import annotations

import httptools


class Reject(Exception):
    """The request cannot be served: answer ``status`` and close the connection."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def body_framing(
    headers: list[tuple[bytes, bytes]], http_version: str, limit_request_body: int
) -> tuple[int, bool]:
    """(body length, whether the client waits for ``100 Continue``) from the header
    fields: 0 for no body, n for Content-Length n, -1 for chunked.

    Refused, so that no two parties can read the body differently (request smuggling):
    Content-Length together with Transfer-Encoding, differing Content-Lengths, a
    transfer coding other than a final chunked; and an HTTP/1.1 request without exactly
    one Host, an Expect other than 100-continue, a body over the limit.
    """
    content_lengths: list[bytes] = []
    transfer_codings: list[bytes] = []
    expect_continue = False
    has_host = False
    for name, value in headers:
        # Only four names matter here; their lengths rule out most headers cheaply.
        size = len(name)
        if size != 14 and size != 17 and size != 6 and size != 4:
            continue
        lname = name.lower()
        if lname == b"content-length":
            content_lengths.append(value.strip())
        elif lname == b"transfer-encoding":
            transfer_codings.extend(c.strip().lower() for c in value.split(b",") if c.strip())
        elif lname == b"expect":
            if value.strip().lower() != b"100-continue":
                raise Reject("417 Expectation Failed", "unsupported Expect header")
            expect_continue = http_version == "1.1"
        elif lname == b"host":
            if has_host:
                raise Reject("400 Bad Request", "more than one Host header")
            has_host = True
    chunked = False
    if transfer_codings:
        if transfer_codings[-1] != b"chunked":
            raise Reject("400 Bad Request", "Transfer-Encoding must end in chunked")
        if len(transfer_codings) > 1:
            raise Reject("501 Not Implemented", "unsupported transfer coding")
        chunked = True
    if content_lengths and chunked:
        raise Reject("400 Bad Request", "both Content-Length and Transfer-Encoding")
    if len(set(content_lengths)) > 1:
        raise Reject("400 Bad Request", "conflicting Content-Length headers")
    if http_version == "1.1" and not has_host:
        raise Reject("400 Bad Request", "HTTP/1.1 request without Host")
    body_length = 0
    if content_lengths:
        raw = content_lengths[0]
        if not raw.isdigit():
            raise Reject("400 Bad Request", "invalid Content-Length")
        body_length = int(raw)
    elif chunked:
        body_length = -1
    if body_length > limit_request_body:
        raise Reject("413 Content Too Large", "request body over the limit")
    return body_length, expect_continue


def split_target(url: bytes) -> tuple[bytes, bytes]:
    """(path, query) of a request target: origin form, ``*``, or absolute form."""
    if url[:1] == b"/":
        path, _, query = url.partition(b"?")
        return path.partition(b"#")[0], query
    if url == b"*":
        return b"*", b""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        raise Reject("400 Bad Request", "invalid request target") from None
    return parsed.path or b"/", parsed.query or b""
