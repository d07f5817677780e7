"""Unit tests of asyncwsgi/http/framing.py with byte literals: no sockets, no loop."""

from __future__ import annotations

import pytest

from asyncwsgi.core.head import status_allows_body
from asyncwsgi.http.framing import (
    CHUNKED,
    LAST_CHUNK,
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    Head,
    build_head,
    chunk,
    simple_response,
)
from asyncwsgi.logs import log_field

SERVER = b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nServer: asyncwsgi\r\n"


def head(
    status: str = "200 OK",
    headers: list[tuple[str, str]] | None = None,
    *,
    http11: bool = True,
    keep_alive: bool = True,
    is_head: bool = False,
    body_length: int = -1,
    server_headers: bytes = SERVER,
) -> Head:
    return build_head(
        status,
        headers if headers is not None else [("Content-Type", "text/plain")],
        http11=http11,
        keep_alive=keep_alive,
        is_head=is_head,
        server_headers=server_headers,
        body_length=body_length,
    )


def header_lines(h: Head) -> list[bytes]:
    assert h.data.endswith(b"\r\n\r\n")
    return h.data[: -len(b"\r\n\r\n")].split(b"\r\n")[1:]


def names(h: Head) -> list[bytes]:
    return [line.partition(b":")[0].lower() for line in header_lines(h)]


# --------------------------------------------------------------------------------------
# Content-Length
# --------------------------------------------------------------------------------------


def test_content_length_given_by_the_app() -> None:
    h = head(headers=[("Content-Type", "text/plain"), ("Content-Length", "5")])
    assert h.data == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n" + SERVER + b"\r\n"
    )
    assert h.framing == LENGTH
    assert h.content_length == 5
    assert h.keep_alive is True
    assert h.status_code == 200


def test_content_length_of_the_app_wins_over_the_known_body_length() -> None:
    h = head(headers=[("Content-Length", "5")], body_length=7)
    assert h.content_length == 5
    assert names(h).count(b"content-length") == 1
    assert b"Content-Length: 5\r\n" in h.data


def test_content_length_computed_from_the_whole_body() -> None:
    h = head(body_length=11)
    assert h.data == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n" + SERVER + b"\r\n"
    )
    assert h.framing == LENGTH
    assert h.content_length == 11


def test_empty_body_gets_content_length_zero() -> None:
    h = head(body_length=0)
    assert b"\r\nContent-Length: 0\r\n" in h.data
    assert h.framing == LENGTH
    assert h.content_length == 0
    assert h.keep_alive is True


def test_content_length_header_name_is_case_insensitive() -> None:
    h = head(headers=[("content-length", "3")], body_length=99)
    assert h.framing == LENGTH
    assert h.content_length == 3
    assert names(h).count(b"content-length") == 1


@pytest.mark.parametrize("value", ["abc", "-1", "", "5x", "0x5", "1.5"])
def test_invalid_content_length_from_the_app_is_an_error(value: str) -> None:
    with pytest.raises(ValueError, match="Content-Length"):
        head(headers=[("Content-Length", value)])


@pytest.mark.parametrize("value", ["+5", "1_0", "\uff15"], ids=["plus", "underscore", "fullwidth"])
def test_content_length_python_int_accepts_but_http_does_not(value: str) -> None:
    # int() takes these, but on the wire they are not 1*DIGIT and a client or proxy
    # would disagree with us about where the body ends.
    with pytest.raises(ValueError, match="Content-Length"):
        head(headers=[("Content-Length", value)])


def test_two_different_content_lengths_from_the_app_are_an_error() -> None:
    with pytest.raises(ValueError, match="Content-Length"):
        head(headers=[("Content-Length", "5"), ("Content-Length", "7")])


# --------------------------------------------------------------------------------------
# Chunked and close-delimited bodies
# --------------------------------------------------------------------------------------


def test_unknown_length_on_http11_is_chunked() -> None:
    h = head()
    assert h.data == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        + SERVER
        + b"\r\n"
    )
    assert h.framing == CHUNKED
    assert h.content_length == -1
    assert h.keep_alive is True


def test_unknown_length_on_http11_without_keep_alive_is_chunked_and_closes() -> None:
    h = head(keep_alive=False)
    assert h.framing == CHUNKED
    assert h.keep_alive is False
    assert b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n" in h.data


def test_unknown_length_on_http10_is_delimited_by_close() -> None:
    h = head(http11=False, keep_alive=False)
    assert h.data == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n" + SERVER + b"\r\n"
    )
    assert h.framing == UNTIL_CLOSE
    assert h.keep_alive is False


def test_unknown_length_on_http10_keep_alive_still_closes() -> None:
    # A 1.0 client cannot read chunked; the only delimiter left is the close.
    h = head(http11=False, keep_alive=True)
    assert h.framing == UNTIL_CLOSE
    assert h.keep_alive is False
    assert b"\r\nConnection: close\r\n" in h.data
    assert b"keep-alive" not in h.data.lower()
    assert b"transfer-encoding" not in h.data.lower()


def test_http10_keep_alive_with_length_says_keep_alive() -> None:
    h = head(http11=False, keep_alive=True, body_length=3)
    assert h.framing == LENGTH
    assert h.keep_alive is True
    assert b"\r\nConnection: keep-alive\r\n" in h.data
    assert b"close" not in h.data.lower()


def test_http11_keep_alive_sends_no_connection_header() -> None:
    h = head(body_length=3)
    assert b"connection" not in h.data.lower()


def test_http11_without_keep_alive_says_close() -> None:
    h = head(keep_alive=False, body_length=3)
    assert h.keep_alive is False
    assert names(h).count(b"connection") == 1
    assert b"\r\nConnection: close\r\n" in h.data


# --------------------------------------------------------------------------------------
# Responses without a body
# --------------------------------------------------------------------------------------


def test_head_carries_the_length_get_would_have() -> None:
    h = head(is_head=True, body_length=14)
    assert h.data == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n" + SERVER + b"\r\n"
    )
    assert h.framing == NO_BODY
    assert h.content_length == 14
    assert h.keep_alive is True


def test_head_keeps_the_content_length_of_the_app() -> None:
    h = head(headers=[("Content-Length", "14")], is_head=True, body_length=0)
    assert h.framing == NO_BODY
    assert h.content_length == 14
    assert names(h).count(b"content-length") == 1


def test_head_of_an_empty_body_claims_no_length() -> None:
    # Many applications skip the body for HEAD; an empty one says nothing about the length
    # a GET would have, so no Content-Length is made up (a GET's empty body gets 0).
    get = head(body_length=0)
    h = head(is_head=True, body_length=0)
    assert h.framing == NO_BODY
    assert b"Content-Length: 0" in get.data
    assert b"content-length" not in h.data.lower()


def test_head_with_unknown_length_is_not_chunked_and_keeps_alive() -> None:
    h = head(is_head=True)
    assert h.framing == NO_BODY
    assert b"transfer-encoding" not in h.data.lower()
    assert b"content-length" not in h.data.lower()
    assert h.keep_alive is True
    assert b"connection" not in h.data.lower()


def test_head_on_http10_keep_alive_with_unknown_length_keeps_alive() -> None:
    # No body bytes follow, so nothing needs the close to delimit them.
    h = head(is_head=True, http11=False, keep_alive=True)
    assert h.framing == NO_BODY
    assert h.keep_alive is True
    assert b"\r\nConnection: keep-alive\r\n" in h.data


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified", "103 Early Hints"])
@pytest.mark.parametrize("body_length", [-1, 0])
def test_status_without_body(status: str, body_length: int) -> None:
    h = head(status, body_length=body_length)
    assert h.framing == NO_BODY
    assert h.status_code == int(status[:3])
    assert h.keep_alive is True
    assert h.data.startswith(f"HTTP/1.1 {status}\r\n".encode())
    lower = h.data.lower()
    assert b"transfer-encoding" not in lower
    assert b"content-length" not in lower
    assert b"connection" not in lower


@pytest.mark.parametrize(
    ("code", "allowed"),
    [(100, False), (101, False), (199, False), (200, True), (204, False), (205, True),
     (304, False), (301, True), (404, True), (500, True)],
)  # fmt: skip
def test_status_allows_body(code: int, allowed: bool) -> None:
    assert status_allows_body(code) is allowed


# --------------------------------------------------------------------------------------
# Headers the server owns
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["close", "Close", "keep-alive, close", "CLOSE"])
def test_connection_close_from_the_app_closes(value: str) -> None:
    h = head(headers=[("Connection", value)], body_length=2)
    assert h.keep_alive is False
    assert names(h).count(b"connection") == 1
    assert b"\r\nConnection: close\r\n" in h.data


def test_connection_keep_alive_from_the_app_is_dropped() -> None:
    h = head(headers=[("Connection", "keep-alive"), ("X-A", "1")], body_length=2)
    assert h.keep_alive is True
    assert b"connection" not in h.data.lower()
    assert b"\r\nX-A: 1\r\n" in h.data


def test_connection_keep_alive_from_the_app_cannot_undo_close() -> None:
    h = head(headers=[("Connection", "keep-alive")], keep_alive=False, body_length=2)
    assert h.keep_alive is False
    assert b"\r\nConnection: close\r\n" in h.data
    assert b"keep-alive" not in h.data.lower()


def test_hop_by_hop_headers_are_dropped_and_others_kept_in_order() -> None:
    app_headers = [
        ("X-First", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "gzip"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Upgrade", "websocket"),
        ("Proxy-Authenticate", "Basic"),
        ("proxy-authorization", "Basic abc"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("x-last", "Mixed Case Value"),
    ]
    h = head(headers=app_headers, body_length=0)
    assert header_lines(h) == [
        b"X-First: 1",
        b"Set-Cookie: a=1",
        b"Set-Cookie: b=2",
        b"x-last: Mixed Case Value",
        b"Content-Length: 0",
        b"Date: Thu, 01 Jan 2026 00:00:00 GMT",
        b"Server: asyncwsgi",
    ]


def test_transfer_encoding_from_the_app_is_replaced_by_the_servers() -> None:
    h = head(headers=[("Transfer-Encoding", "chunked")])
    assert h.framing == CHUNKED
    assert names(h).count(b"transfer-encoding") == 1


def test_transfer_encoding_from_the_app_with_a_length_is_dropped() -> None:
    h = head(headers=[("Transfer-Encoding", "chunked"), ("Content-Length", "4")])
    assert h.framing == LENGTH
    assert b"transfer-encoding" not in h.data.lower()


def test_server_headers_come_last_and_may_be_empty() -> None:
    h = head(body_length=1, server_headers=b"")
    assert h.data == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\n")


def test_status_line_is_http11_even_for_http10_clients() -> None:
    h = head("404 Not Found", http11=False, keep_alive=False, body_length=0)
    assert h.data.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert h.status_code == 404


def test_latin1_header_values_are_encoded_as_latin1() -> None:
    h = head(headers=[("X-Name", "caf\xe9")], body_length=0)
    assert b"\r\nX-Name: caf\xe9\r\n" in h.data


# --------------------------------------------------------------------------------------
# chunk() and simple_response()
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a", b"1\r\na\r\n"),
        (b"hello", b"5\r\nhello\r\n"),
        (b"\r\n", b"2\r\n\r\n\r\n"),
        (b"x" * 15, b"f\r\n" + b"x" * 15 + b"\r\n"),
        (b"x" * 255, b"ff\r\n" + b"x" * 255 + b"\r\n"),
        (b"x" * 4096, b"1000\r\n" + b"x" * 4096 + b"\r\n"),
    ],
    ids=["1", "5", "crlf", "15", "255", "4096"],
)
def test_chunk(data: bytes, expected: bytes) -> None:
    assert chunk(data) == expected


def test_last_chunk() -> None:
    assert LAST_CHUNK == b"0\r\n\r\n"


def test_simple_response_closing() -> None:
    assert simple_response("400 Bad Request", b"400 Bad Request\n", SERVER, close=True) == (
        b"HTTP/1.1 400 Bad Request\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 16\r\n"
        b"Connection: close\r\n" + SERVER + b"\r\n"
        b"400 Bad Request\n"
    )


def test_simple_response_keeping_the_connection() -> None:
    body = "caf\xe9 \u2603\n".encode()
    assert simple_response("503 Service Unavailable", body, b"", close=False) == (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


def test_simple_response_empty_body() -> None:
    data = simple_response("408 Request Timeout", b"", SERVER, close=True)
    head_part, sep, body = data.partition(b"\r\n\r\n")
    assert sep and body == b""
    assert b"\r\nContent-Length: 0\r\n" in head_part + b"\r\n"


@pytest.mark.parametrize(
    ("data", "logged"),
    [
        (b"/plain?x=1", "/plain?x=1"),
        (b'a"b', 'a\\"b'),
        (b"a\\b", "a\\\\b"),
        (b'x\n127.0.0.1 - - "GET', 'x\\x0a127.0.0.1 - - \\"GET'),
        (b"\x00\x1f\x7f\xff", "\\x00\\x1f\\x7f\\xff"),
        (b"caf\xc3\xa9", "caf\\xc3\\xa9"),
    ],
)
def test_log_field_escapes_as_apache(data: bytes, logged: str) -> None:
    assert log_field(data) == logged
