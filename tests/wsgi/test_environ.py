"""``build_environ`` (asyncwsgi.wsgi.environ) with a fake exchange: values in, a dict out."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from asyncwsgi.wsgi.environ import base_environ, build_environ
from asyncwsgi.wsgi.input import WSGIInput


@dataclass
class FakeExchange:
    method: str = "GET"
    path: bytes = b"/"
    query: bytes = b""
    http_version: str = "1.1"
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: [(b"Host", b"example")])
    client: tuple[str, int] | None = ("10.1.2.3", 54321)
    server: tuple[str, int] | None = ("127.0.0.1", 8080)
    scheme: str = "http"
    script_name: str | None = None
    head_sent: bool = False
    body: bytes = b""
    reads: list[int] = field(default_factory=list)

    def read_body(self, size: int) -> bytes:
        self.reads.append(size)
        data, self.body = self.body[:size], self.body[size:]
        return data


class FileWrapperStub:
    pass


def base(script_name: str = "", **kw: Any) -> dict[str, Any]:
    return base_environ(
        file_wrapper=FileWrapperStub, multiprocess=False, script_name=script_name, **kw
    )


def environ_for(script_name: str = "", **exchange: Any) -> dict[str, Any]:
    return build_environ(FakeExchange(**exchange), base(script_name))


# -- the request line --------------------------------------------------------------------


def test_request_line_keys() -> None:
    env = environ_for(method="POST", path=b"/a/b", query=b"x=1", http_version="1.0")
    assert env["REQUEST_METHOD"] == "POST"
    assert env["PATH_INFO"] == "/a/b"
    assert env["QUERY_STRING"] == "x=1"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["SCRIPT_NAME"] == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/caf%C3%A9", "/caf\u00c3\u00a9"),  # UTF-8 bytes, each one latin-1 character
        (b"/caf%c3%a9", "/caf\u00c3\u00a9"),
        (b"/caf\xc3\xa9", "/caf\u00c3\u00a9"),  # raw (unescaped) bytes the same way
        (b"/a%20b", "/a b"),
        (b"/a%2Fb", "/a/b"),
        (b"/100%25", "/100%"),
        (b"/%FF", "/\u00ff"),
        (b"/plain", "/plain"),
        (b"/a+b", "/a+b"),  # '+' is not a space in a path
    ],
)
def test_path_info_is_percent_decoded_as_latin1(raw: bytes, expected: str) -> None:
    env = environ_for(path=raw)
    assert env["PATH_INFO"] == expected
    assert type(env["PATH_INFO"]) is str


def test_path_info_latin1_round_trip_gives_utf8() -> None:
    env = environ_for(path=b"/caf%C3%A9")
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/caf\u00e9"


@pytest.mark.parametrize(
    "query",
    [b"a=1&b=2", b"q=caf%C3%A9&x=%2F+y", b"a=%20b&%26=%3D", b"flag", b"a=1;b=2"],
)
def test_query_string_is_raw(query: bytes) -> None:
    env = environ_for(path=b"/search", query=query)
    assert env["QUERY_STRING"] == query.decode("latin-1")
    assert env["PATH_INFO"] == "/search"


def test_query_string_empty_when_absent() -> None:
    env = environ_for(path=b"/x")
    assert env["QUERY_STRING"] == ""


def test_query_string_with_raw_high_bytes() -> None:
    env = environ_for(query=b"q=\xe9")
    assert env["QUERY_STRING"] == "q=\u00e9"


# -- SCRIPT_NAME and PATH_INFO under a mount point -----------------------------------------


@pytest.mark.parametrize(
    ("path", "script_name", "path_info"),
    [
        (b"/mount/x/y", "/mount", "/x/y"),
        (b"/mount/", "/mount", "/"),
        (b"/mount", "/mount", ""),
        (b"/deep/mount/x", "/deep/mount", "/x"),
        (b"/mount/caf%C3%A9", "/mount", "/caf\u00c3\u00a9"),
    ],
)
def test_script_name_path_info_split(path: bytes, script_name: str, path_info: str) -> None:
    env = environ_for(script_name, path=path)
    assert env["SCRIPT_NAME"] == script_name
    assert env["PATH_INFO"] == path_info


@pytest.mark.parametrize(
    "path", [b"/mount/x/y", b"/mount/", b"/mount", b"/deep/mount/x", b"/mount/caf%C3%A9"]
)
def test_script_name_plus_path_info_is_the_path(path: bytes) -> None:
    script_name = "/deep/mount" if path.startswith(b"/deep") else "/mount"
    env = environ_for(script_name, path=path)
    assert env["SCRIPT_NAME"] + env["PATH_INFO"] == environ_for(path=path)["PATH_INFO"]


def test_mount_prefix_must_end_at_a_segment_border() -> None:
    # "/mountain" is not under "/mount": it must not become SCRIPT_NAME + "ain".
    env = environ_for("/mount", path=b"/mountain")
    assert env["PATH_INFO"] != "ain"
    assert not (env["SCRIPT_NAME"] == "/mount" and env["PATH_INFO"] == "ain")


# -- headers -----------------------------------------------------------------------------


def test_http_headers_become_http_keys() -> None:
    env = environ_for(
        headers=[
            (b"Host", b"example.com"),
            (b"User-Agent", b"test/1.0"),
            (b"X-Request-Id", b"abc"),
            (b"accept-encoding", b"gzip"),
            (b"DNT", b"1"),
        ]
    )
    assert env["HTTP_HOST"] == "example.com"
    assert env["HTTP_USER_AGENT"] == "test/1.0"
    assert env["HTTP_X_REQUEST_ID"] == "abc"
    assert env["HTTP_ACCEPT_ENCODING"] == "gzip"
    assert env["HTTP_DNT"] == "1"


def test_header_values_are_latin1_text() -> None:
    env = environ_for(headers=[(b"Host", b"h"), (b"X-Name", b"caf\xc3\xa9")])
    assert env["HTTP_X_NAME"] == "caf\u00c3\u00a9"


def test_repeated_headers_are_joined_with_commas() -> None:
    env = environ_for(
        headers=[
            (b"Host", b"h"),
            (b"Accept", b"text/html"),
            (b"X-Forwarded-For", b"1.1.1.1"),
            (b"accept", b"application/json"),
            (b"x-forwarded-for", b"2.2.2.2"),
            (b"X-FORWARDED-FOR", b"3.3.3.3"),
        ]
    )
    assert env["HTTP_ACCEPT"] == "text/html,application/json"
    assert env["HTTP_X_FORWARDED_FOR"] == "1.1.1.1,2.2.2.2,3.3.3.3"


def test_repeated_cookie_headers_are_joined_with_semicolons() -> None:
    env = environ_for(headers=[(b"Host", b"h"), (b"Cookie", b"a=1"), (b"cookie", b"b=2; c=3")])
    assert env["HTTP_COOKIE"] == "a=1; b=2; c=3"


def test_content_type_and_length_have_no_http_prefix() -> None:
    env = environ_for(
        method="POST",
        headers=[
            (b"Host", b"h"),
            (b"Content-Type", b"application/x-www-form-urlencoded"),
            (b"Content-Length", b"12"),
        ],
    )
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == "12"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_content_type_and_length_absent_when_not_sent() -> None:
    env = environ_for()
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        assert env.get(key, "") == ""


def test_headers_with_underscores_are_dropped() -> None:
    env = environ_for(
        headers=[
            (b"Host", b"h"),
            (b"X-Forwarded-For", b"real"),
            (b"X_Forwarded_For", b"spoofed"),
            (b"Content_Length", b"999"),
            (b"Content_Type", b"spoofed/type"),
            (b"Remote_User", b"admin"),
        ]
    )
    assert env["HTTP_X_FORWARDED_FOR"] == "real"
    assert "CONTENT_LENGTH" not in env
    assert "CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert "HTTP_REMOTE_USER" not in env
    assert "REMOTE_USER" not in env
    assert not any("spoofed" in str(v) for v in env.values())


def test_only_underscore_spoof_dropped_when_alone() -> None:
    env = environ_for(headers=[(b"Host", b"h"), (b"X_Forwarded_For", b"spoofed")])
    assert "HTTP_X_FORWARDED_FOR" not in env


def test_building_does_not_leak_into_the_base_environ() -> None:
    shared = base()
    before = dict(shared)
    exchange = FakeExchange(headers=[(b"Host", b"h"), (b"Accept", b"a"), (b"Cookie", b"c=1")])
    first = build_environ(exchange, shared)
    second = build_environ(exchange, shared)
    assert shared == before
    assert first is not second
    # Repeated-header joining starts afresh for each request.
    assert second["HTTP_ACCEPT"] == "a"
    assert second["HTTP_COOKIE"] == "c=1"


# -- server, client, scheme --------------------------------------------------------------


def test_server_and_remote_address() -> None:
    env = environ_for(server=("192.0.2.1", 8443), client=("198.51.100.7", 40000))
    assert env["SERVER_NAME"] == "192.0.2.1"
    assert env["SERVER_PORT"] == "8443"
    assert env["REMOTE_ADDR"] == "198.51.100.7"
    assert env["REMOTE_PORT"] == "40000"
    for key in ("SERVER_PORT", "REMOTE_PORT"):
        assert type(env[key]) is str


@pytest.mark.parametrize(
    ("host", "scheme", "name", "port"),
    [
        (b"example.com:8080", "http", "example.com", "8080"),
        (b"example.com", "http", "example.com", "80"),
        (b"example.com", "https", "example.com", "443"),
    ],
)
def test_server_name_from_host_without_a_socket_address(
    host: bytes, scheme: str, name: str, port: str
) -> None:
    # A UNIX socket has no (host, port) of its own.
    env = environ_for(server=None, client=None, scheme=scheme, headers=[(b"Host", host)])
    assert env["SERVER_NAME"] == name
    assert env["SERVER_PORT"] == port
    assert env["REMOTE_ADDR"] == ""


def test_server_name_without_a_socket_address_or_host() -> None:
    env = environ_for(server=None, client=None, http_version="1.0", headers=[])
    assert env["SERVER_NAME"]
    assert env["SERVER_PORT"] == "80"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_url_scheme(scheme: str) -> None:
    assert environ_for(scheme=scheme)["wsgi.url_scheme"] == scheme


# -- wsgi.* keys -------------------------------------------------------------------------


def test_wsgi_keys() -> None:
    errors = io.StringIO()
    env = build_environ(FakeExchange(), base(errors=errors))
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.errors"] is errors
    assert env["wsgi.file_wrapper"] is FileWrapperStub
    assert isinstance(env["wsgi.input"], WSGIInput)


def test_wsgi_errors_defaults_to_stderr() -> None:
    assert environ_for()["wsgi.errors"] is sys.stderr


def test_multiprocess_flag() -> None:
    shared = base_environ(file_wrapper=FileWrapperStub, multiprocess=True)
    assert build_environ(FakeExchange(), shared)["wsgi.multiprocess"] is True


def test_wsgi_input_reads_the_exchange_body() -> None:
    exchange = FakeExchange(method="POST", body=b"line one\nline two\n")
    env = build_environ(exchange, base())
    stream = env["wsgi.input"]
    assert stream.readline() == b"line one\n"
    assert stream.read() == b"line two\n"
    assert all(n >= 1 for n in exchange.reads)


def test_each_request_gets_its_own_input() -> None:
    shared = base()
    a = build_environ(FakeExchange(body=b"a"), shared)
    b = build_environ(FakeExchange(body=b"b"), shared)
    assert a["wsgi.input"] is not b["wsgi.input"]
    assert a["wsgi.input"].read() == b"a"
    assert b["wsgi.input"].read() == b"b"


def test_cgi_values_are_native_strings() -> None:
    env = environ_for(
        path=b"/p%C3%A9",
        query=b"q=1",
        headers=[(b"Host", b"h"), (b"Content-Type", b"text/plain"), (b"X-A", b"\xff")],
    )
    for key, value in env.items():
        if not key.startswith("wsgi."):
            assert type(value) is str, key
