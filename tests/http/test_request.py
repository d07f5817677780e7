"""Unit tests of asyncwsgi/http/request.py with byte literals: no sockets, no loop.

Table-driven: each row is a parsed request head (header fields as the parser hands them
over, names in the client's case) and what ``body_framing`` or ``split_target`` must make
of it, a value or the ``Reject`` (status and reason) the connection answers with.
"""

from __future__ import annotations

import pytest

from asyncwsgi.http.request import Reject, body_framing, split_target, with_host

HOST = (b"Host", b"example.com")
LIMIT = 1000


def cl(value: bytes) -> tuple[bytes, bytes]:
    return (b"Content-Length", value)


def te(value: bytes) -> tuple[bytes, bytes]:
    return (b"Transfer-Encoding", value)


# --------------------------------------------------------------------------------------
# body_framing: accepted heads
# --------------------------------------------------------------------------------------

FRAMED = [
    # (header fields, HTTP version, (body length, waits for 100 Continue))
    pytest.param([HOST], "1.1", (0, False), id="no-body"),
    pytest.param([HOST, cl(b"5")], "1.1", (5, False), id="content-length"),
    pytest.param([HOST, cl(b"0")], "1.1", (0, False), id="content-length-zero"),
    pytest.param([HOST, cl(b"007")], "1.1", (7, False), id="leading-zeros"),
    pytest.param([HOST, cl(b" 5 \t")], "1.1", (5, False), id="content-length-whitespace"),
    pytest.param([HOST, cl(b"5"), cl(b"5")], "1.1", (5, False), id="same-length-twice"),
    pytest.param([HOST, cl(b" 5"), cl(b"5 ")], "1.1", (5, False), id="same-after-strip"),
    pytest.param([HOST, cl(b"1000")], "1.1", (1000, False), id="length-at-limit"),
    pytest.param([HOST, te(b"chunked")], "1.1", (-1, False), id="chunked"),
    pytest.param([HOST, te(b" Chunked ")], "1.1", (-1, False), id="chunked-any-case"),
    pytest.param([HOST, te(b"chunked,")], "1.1", (-1, False), id="empty-list-element"),
    pytest.param([(b"HOST", b"x"), (b"CONTENT-LENGTH", b"3")], "1.1", (3, False), id="names-upper"),
    pytest.param([(b"host", b"x"), (b"content-length", b"3")], "1.1", (3, False), id="names-lower"),
    pytest.param(
        [HOST, cl(b"5"), (b"Expect", b"100-continue")], "1.1", (5, True), id="expect-continue"
    ),
    pytest.param(
        [HOST, te(b"chunked"), (b"expect", b" 100-Continue ")],
        "1.1",
        (-1, True),
        id="expect-continue-any-case",
    ),
    # HTTP/1.0 clients do not know 100 Continue: they never wait for it.
    pytest.param([cl(b"5"), (b"Expect", b"100-continue")], "1.0", (5, False), id="expect-http10"),
    pytest.param([], "1.0", (0, False), id="http10-without-host"),
    pytest.param([cl(b"2")], "1.0", (2, False), id="http10-content-length"),
    # Same name lengths as the four that matter (14, 17, 6, 4): passed over.
    pytest.param(
        [HOST, (b"Content-Digest", b"x"), (b"X-Forwarded-Proto", b"https"), (b"Accept", b"*/*")],
        "1.1",
        (0, False),
        id="look-alike-names",
    ),
    pytest.param([HOST, (b"Date", b"today"), (b"Via", b"1.1 p")], "1.1", (0, False), id="others"),
]


@pytest.mark.parametrize(("headers", "version", "expected"), FRAMED)
def test_body_framing(
    headers: list[tuple[bytes, bytes]], version: str, expected: tuple[int, bool]
) -> None:
    assert body_framing(headers, version, LIMIT) == expected


def test_body_framing_leaves_the_limit_of_a_chunked_body_to_its_reading() -> None:
    # Its length is not known yet: the connection counts it as it arrives.
    assert body_framing([HOST, te(b"chunked")], "1.1", 0) == (-1, False)


# --------------------------------------------------------------------------------------
# body_framing: refused heads
# --------------------------------------------------------------------------------------

BAD_REQUEST = "400 Bad Request"
NOT_IMPLEMENTED = ("501 Not Implemented", "unsupported transfer coding")
BAD_TE = (BAD_REQUEST, "Transfer-Encoding must end in chunked")
BOTH = (BAD_REQUEST, "both Content-Length and Transfer-Encoding")
CONFLICT = (BAD_REQUEST, "conflicting Content-Length headers")
BAD_CL = (BAD_REQUEST, "invalid Content-Length")
NO_HOST = (BAD_REQUEST, "HTTP/1.1 request without Host")
TWO_HOSTS = (BAD_REQUEST, "more than one Host header")
EXPECTATION = ("417 Expectation Failed", "unsupported Expect header")
TOO_LARGE = ("413 Content Too Large", "request body over the limit")

REFUSED = [
    # (header fields, HTTP version, (status, reason))
    pytest.param([HOST, te(b"gzip, chunked")], "1.1", NOT_IMPLEMENTED, id="gzip-chunked"),
    pytest.param([HOST, te(b"gzip"), te(b"chunked")], "1.1", NOT_IMPLEMENTED, id="two-fields"),
    pytest.param([HOST, te(b"chunked, chunked")], "1.1", NOT_IMPLEMENTED, id="chunked-twice"),
    pytest.param([HOST, te(b"gzip")], "1.1", BAD_TE, id="gzip-only"),
    pytest.param([HOST, te(b"chunked, gzip")], "1.1", BAD_TE, id="chunked-not-last"),
    pytest.param([HOST, te(b"chunked"), te(b"gzip")], "1.1", BAD_TE, id="gzip-field-after"),
    pytest.param([HOST, te(b"identity")], "1.1", BAD_TE, id="identity"),
    pytest.param([HOST, cl(b"5"), te(b"chunked")], "1.1", BOTH, id="cl-and-te"),
    pytest.param([HOST, te(b"chunked"), cl(b"5")], "1.0", BOTH, id="te-and-cl-http10"),
    # A coding that is wrong anyway is named before the clash with Content-Length.
    pytest.param([HOST, cl(b"5"), te(b"gzip")], "1.1", BAD_TE, id="cl-and-bad-te"),
    pytest.param([HOST, cl(b"5"), cl(b"6")], "1.1", CONFLICT, id="two-lengths"),
    # Compared as written: equal numbers in different spellings are refused too.
    pytest.param([HOST, cl(b"05"), cl(b"5")], "1.1", CONFLICT, id="two-spellings"),
    pytest.param([HOST, cl(b"")], "1.1", BAD_CL, id="cl-empty"),
    pytest.param([HOST, cl(b"   ")], "1.1", BAD_CL, id="cl-blank"),
    pytest.param([HOST, cl(b"abc")], "1.1", BAD_CL, id="cl-letters"),
    pytest.param([HOST, cl(b"-1")], "1.1", BAD_CL, id="cl-negative"),
    pytest.param([HOST, cl(b"+5")], "1.1", BAD_CL, id="cl-plus"),
    pytest.param([HOST, cl(b"1_000")], "1.1", BAD_CL, id="cl-underscore"),
    pytest.param([HOST, cl(b"0x10")], "1.1", BAD_CL, id="cl-hex"),
    pytest.param([HOST, cl(b"5, 5")], "1.1", BAD_CL, id="cl-list"),
    pytest.param([HOST, cl(b"1 2")], "1.1", BAD_CL, id="cl-inner-space"),
    pytest.param([HOST, cl("\u0665".encode())], "1.1", BAD_CL, id="cl-arabic-digit"),
    pytest.param([], "1.1", NO_HOST, id="no-host"),
    pytest.param([cl(b"5")], "1.1", NO_HOST, id="no-host-with-body"),
    pytest.param([HOST, HOST], "1.1", TWO_HOSTS, id="two-hosts"),
    pytest.param([HOST, (b"host", b"other")], "1.0", TWO_HOSTS, id="two-hosts-http10"),
    pytest.param([HOST, (b"Expect", b"teapot")], "1.1", EXPECTATION, id="expect-other"),
    pytest.param([HOST, (b"Expect", b"100-continue, x")], "1.1", EXPECTATION, id="expect-list"),
    pytest.param([(b"Expect", b"x")], "1.0", EXPECTATION, id="expect-other-http10"),
    pytest.param([HOST, cl(b"1001")], "1.1", TOO_LARGE, id="over-limit"),
    pytest.param([HOST, cl(b"9" * 30)], "1.1", TOO_LARGE, id="huge-length"),
]


@pytest.mark.parametrize(("headers", "version", "refusal"), REFUSED)
def test_body_framing_refuses(
    headers: list[tuple[bytes, bytes]], version: str, refusal: tuple[str, str]
) -> None:
    with pytest.raises(Reject) as caught:
        body_framing(headers, version, LIMIT)
    assert (caught.value.status, str(caught.value)) == refusal


def test_body_framing_refuses_a_transfer_encoding_without_a_coding() -> None:
    with pytest.raises(Reject) as caught:
        body_framing([HOST, te(b",")], "1.1", LIMIT)
    assert caught.value.status == BAD_REQUEST


# --------------------------------------------------------------------------------------
# split_target
# --------------------------------------------------------------------------------------

TARGETS = [
    # (request target, (path, query, authority)); an absolute form's authority wins
    # over the Host header (RFC 9112 section 3.2.2)
    pytest.param(b"/", (b"/", b"", None), id="root"),
    pytest.param(b"/a/b", (b"/a/b", b"", None), id="path"),
    pytest.param(b"/a?x=1&y=2", (b"/a", b"x=1&y=2", None), id="query"),
    pytest.param(b"/?", (b"/", b"", None), id="empty-query"),
    pytest.param(b"/a?b?c", (b"/a", b"b?c", None), id="question-mark-in-query"),
    pytest.param(b"/a%20b%3F?q=%2F", (b"/a%20b%3F", b"q=%2F", None), id="kept-percent-encoded"),
    pytest.param(b"//x/y", (b"//x/y", b"", None), id="double-slash-is-a-path"),
    pytest.param(b"/a#frag", (b"/a", b"", None), id="fragment-dropped"),
    pytest.param(b"*", (b"*", b"", None), id="asterisk"),
    pytest.param(b"http://example.com/p?q=1", (b"/p", b"q=1", b"example.com"), id="absolute"),
    pytest.param(
        b"https://example.com:8443/a/b",
        (b"/a/b", b"", b"example.com:8443"),
        id="absolute-port",
    ),
    pytest.param(b"http://example.com", (b"/", b"", b"example.com"), id="absolute-no-path"),
    pytest.param(
        b"http://example.com?q", (b"/", b"q", b"example.com"), id="absolute-query-no-path"
    ),
    pytest.param(
        b"http://example.com/p?q#f", (b"/p", b"q", b"example.com"), id="absolute-fragment"
    ),
    pytest.param(b"http://[::1]:8080/x", (b"/x", b"", b"[::1]:8080"), id="absolute-ipv6"),
]


@pytest.mark.parametrize(("target", "expected"), TARGETS)
def test_split_target(target: bytes, expected: tuple[bytes, bytes, bytes | None]) -> None:
    assert split_target(target) == expected


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"index.html", id="relative"),
        pytest.param(b"example.com:443", id="authority-form"),
        pytest.param(b"h/x", id="no-scheme"),
        pytest.param(b"http://", id="scheme-only"),
        pytest.param(b"?x", id="query-only"),
    ],
)
def test_split_target_refuses(target: bytes) -> None:
    with pytest.raises(Reject) as caught:
        split_target(target)
    assert (caught.value.status, str(caught.value)) == (BAD_REQUEST, "invalid request target")


@pytest.mark.parametrize("target", [b"**", b"*x", b"*?a"])
def test_split_target_refuses_what_only_starts_like_the_asterisk_form(target: bytes) -> None:
    with pytest.raises(Reject) as caught:
        split_target(target)
    assert caught.value.status == BAD_REQUEST


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param(b"/p?q#f", (b"/p", b"q", None), id="fragment-after-query"),
        pytest.param(b"/a#b?c", (b"/a", b"", None), id="question-mark-in-fragment"),
    ],
)
def test_split_target_drops_the_fragment_after_a_query(
    target: bytes, expected: tuple[bytes, bytes, bytes | None]
) -> None:
    assert split_target(target) == expected


# -- versions, Host and the absolute form (RFC 9112 sections 2.6, 3.2) ----------------------


@pytest.mark.parametrize("version", ["2.0", "0.9", "1.2", "3.0"])
def test_a_version_other_than_1_0_and_1_1_gets_505(version: str) -> None:
    with pytest.raises(Reject) as caught:
        body_framing([HOST], version, LIMIT)
    assert caught.value.status == "505 HTTP Version Not Supported"


@pytest.mark.parametrize(
    "host",
    [b"a b", b"user@host", b"h/p", b"h?x", b"h#f", b"[::1", b"h:80x", b"h\x00", b"h\t:1"],
)
def test_a_host_that_is_not_a_host_and_port_gets_400(host: bytes) -> None:
    with pytest.raises(Reject) as caught:
        body_framing([(b"Host", host)], "1.1", LIMIT)
    assert (caught.value.status, str(caught.value)) == (BAD_REQUEST, "invalid Host header")


@pytest.mark.parametrize(
    "host", [b"", b"example.com", b"example.com:8080", b"[::1]:80", b"10.0.0.1", b"x.y."]
)
def test_a_host_and_port_is_taken(host: bytes) -> None:
    assert body_framing([(b"Host", host)], "1.1", LIMIT) == (0, False)


@pytest.mark.parametrize(
    "target", [b"http://user@example.com/x", b"http://user:pw@example.com/", b"http://a b/"]
)
def test_an_absolute_form_with_userinfo_or_a_bad_host_is_refused(target: bytes) -> None:
    with pytest.raises(Reject) as caught:
        split_target(target)
    assert caught.value.status == BAD_REQUEST


def test_the_targets_authority_replaces_every_host_header() -> None:
    headers = [(b"Host", b"evil.test"), (b"Accept", b"*/*"), (b"host", b"other")]
    assert with_host(headers, b"good.test:8080") == [
        (b"Accept", b"*/*"),
        (b"Host", b"good.test:8080"),
    ]
