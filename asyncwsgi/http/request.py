"""What a request head says about its body and target, and what makes it unacceptable.

Rule: nothing here imports asyncio or touches a socket: the parsed head in, values (or a
:class:`Reject` naming the status to answer) out, so it is tested with byte literals.
The connection (``asyncwsgi.http.protocol``) calls it once a head is complete.
"""

from __future__ import annotations

import re

import httptools

# RFC 3986 host (reg-name, IPv4, or an IP literal in brackets) and an optional port: what
# a Host header may hold. Anything else ("a b", "user@host", "h/p") reaches no application.
_HOST = re.compile(
    rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.vV\-._~!$&'()*+,;=]+\])(?::[0-9]*)?"
)
_VERSIONS = ("1.0", "1.1")
# Host values already found good: clients send the same few on every request.
_GOOD_HOSTS: dict[bytes, bool] = {}
_GOOD_HOSTS_MAX = 256


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
    transfer coding other than a final chunked; and an HTTP version other than 1.0 and
    1.1 (505), an HTTP/1.1 request without exactly one Host, a Host that is not a host
    and port, an Expect other than 100-continue, a body over the limit.
    """
    if http_version not in _VERSIONS:
        raise Reject("505 HTTP Version Not Supported", f"HTTP/{http_version}")
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
            codings = [c.strip().lower() for c in value.split(b",") if c.strip()]
            if not codings:  # "Transfer-Encoding: ," names no coding: not a framing
                raise Reject("400 Bad Request", "Transfer-Encoding without a coding")
            transfer_codings.extend(codings)
        elif lname == b"expect":
            if value.strip().lower() != b"100-continue":
                raise Reject("417 Expectation Failed", "unsupported Expect header")
            expect_continue = http_version == "1.1"
        elif lname == b"host":
            if has_host:
                raise Reject("400 Bad Request", "more than one Host header")
            if value not in _GOOD_HOSTS:
                if not _HOST.fullmatch(value.strip(b" \t")):
                    raise Reject("400 Bad Request", "invalid Host header")
                if len(_GOOD_HOSTS) < _GOOD_HOSTS_MAX:
                    _GOOD_HOSTS[value] = True
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


def split_target(url: bytes) -> tuple[bytes, bytes, bytes | None]:
    """(path, query, authority) of a request target: origin form (no authority), ``*``,
    or absolute form, whose authority wins over the Host header (RFC 9112 section
    3.2.2). A fragment is no part of the target sent to the application."""
    if url[:1] == b"/":
        path, _, query = url.partition(b"#")[0].partition(b"?")
        return path, query, None
    if url == b"*":
        return b"*", b"", None
    if url[:1] == b"*":
        raise Reject("400 Bad Request", "invalid request target")
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        raise Reject("400 Bad Request", "invalid request target") from None
    authority = parsed.host or b""
    if b":" in authority:  # an IPv6 address: parse_url takes its brackets off
        authority = b"[" + authority + b"]"
    if parsed.port is not None:
        authority += b":%d" % parsed.port
    if parsed.userinfo or not _HOST.fullmatch(authority):
        raise Reject("400 Bad Request", "invalid authority in the request target")
    return parsed.path or b"/", parsed.query or b"", authority


def with_host(headers: list[tuple[bytes, bytes]], authority: bytes) -> list[tuple[bytes, bytes]]:
    """The headers with the target's authority as their one Host."""
    kept = [(name, value) for name, value in headers if name.lower() != b"host"]
    kept.append((b"Host", authority))
    return kept
