"""Fuzzing the HTTP/1.1 layer on the wire, against the running server in both modes.

Hypothesis generates request heads, bodies and chunked framings -- valid ones, pipelined
several per connection, and invalid ones (conflicting or malformed framing, obs-fold,
bare CR or LF, NUL, bad chunk sizes, bad versions, overlong lines, non-ASCII bytes,
truncated input) -- and sends them to ``python -m asyncwsgi tests/apps/fuzz_app.wsgi``,
in embedded mode and in ``--mode daemon``, cut at arbitrary byte positions (and, for a
few fixed streams, one byte at a time and split in two at every position). The echo
application (``tests/apps/fuzz_app.wsgi``) says in each answer what reached it and logs
every request it is handed, so the tests can check, for every example:

* the server's output is exactly a sequence of well-formed HTTP/1.1 responses (parsed
  strictly here, not by a client library that would smooth things over), then possibly
  a close: no garbage, no partial response, no 1xx where RFC 9110 forbids one;
* valid pipelined input gets one answer per request, in order, each echoing the request
  it answers (method, target, Host, headers, body length and hash): nothing answered
  twice, no body ever read as a request -- also a body the application leaves unread,
  which the server must drain or close the connection after -- and trailer fields never
  taken as headers; then the same connection serves one more request;
* invalid input gets, after the answers to the valid requests before it, a 4xx/5xx with
  ``Connection: close`` and a close, or just a close -- or, where RFC 9112 lets a
  recipient read the bytes leniently (obs-fold unfolded, a bare LF as a line end, ...),
  exactly the answer that reading gives; the application never sees a request that was
  not sent as one (the smuggled request hidden in each invalid body, or the one after
  the invalid request);
* a fresh connection still gets its plain ``GET`` answered afterwards.

Why here and not in tests/http/test_request.py: request smuggling and framing bugs live
between the parser (httptools), the protocol's pipelining and flow control, and in
daemon mode the hop to the daemon; only the real server on a real socket has them all.
The server runs once per mode (a module fixture) with short timeouts, so a hang fails
the test instead of blocking it; hypothesis is derandomized and keeps no database, so CI
runs the same examples every time.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import (
    HealthCheck,
    Phase,
    currently_in_test_context,
    event,
    given,
    note,
    settings,
)
from hypothesis import strategies as st

from tests.conftest import APPS, ServerProcess

APP = APPS / "fuzz_app.wsgi"

# Every answer here needs no timeout on the server's side: a client that waits longer
# than this for one has found a hang.
WAIT = 5.0
# The client never pauses for long, so the server's timeouts (2 s) never fire; an answer
# that takes longer than this after the last byte was sent is a server waiting on a
# timeout instead of on the bytes it has (and it would be a 408, which is refused too).
PROMPT = 1.5

MODES = {
    "embedded": ["--threads", "4"],
    "daemon": ["--mode", "daemon", "--processes", "2", "--threads", "4"],
}
LIMIT_LINE = 2048
LIMIT_FIELD = 2048
LIMIT_FIELDS = 40
SERVER_OPTIONS = (
    "--no-access-log --header-timeout 2 --body-timeout 2 --keep-alive-timeout 2 "
    f"--graceful-timeout 1 --limit-request-line {LIMIT_LINE} "
    f"--limit-request-field-size {LIMIT_FIELD} --limit-request-fields {LIMIT_FIELDS} "
    "--limit-request-body 1048576"
).split()

FUZZ = settings(
    deadline=None,
    # No explain phase: on a failure it reruns the example hundreds of times against the
    # server, for a hint the shrunk example already gives.
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)
# Pauses between the pieces of the fixed streams: one byte at a time, split in two.
BYTE_PAUSE = 0.0003
SPLIT_PAUSE = 0.001
VALID_EXAMPLES = 60
WHITESPACE_EXAMPLES = 25
INVALID_EXAMPLES = 12  # per kind of invalid request
TRUNCATED_EXAMPLES = 40


# --------------------------------------------------------------------------------------
# The server, once per mode
# --------------------------------------------------------------------------------------


class FuzzServer:
    """The server under test and the application's request log."""

    def __init__(self, mode: str, tmp: Path) -> None:
        self.mode = mode
        self.log = tmp / "app.log"
        self.log.touch()
        args = [str(APP), "--bind", "127.0.0.1:0", *SERVER_OPTIONS, *MODES[mode]]
        self.proc = ServerProcess(args, tmp, env={"FUZZ_APP_LOG": str(self.log)}).wait_ready()
        self.port = self.proc.port
        self._offset = 0
        self._seen: list[dict[str, str]] = []

    def requests_seen(self, nonce: str) -> Counter[str]:
        """How many times the application was handed each request of this example."""
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        self._seen.extend(json.loads(line) for line in complete.splitlines())
        return Counter(r["id"] for r in self._seen if r["id"].startswith(nonce + "-"))


def _processes_with(marker: bytes) -> list[int]:
    """Processes (ours: started by this module) whose environment holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module", params=list(MODES))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzServer]:
    mode = request.param
    srv = FuzzServer(mode, tmp_path_factory.mktemp(f"fuzz-{mode}"))
    yield srv
    srv.proc.stop()
    if not os.path.isdir("/proc"):
        return
    # The server and every daemon process it started must be gone.
    marker = b"FUZZ_APP_LOG=" + str(srv.log).encode()
    deadline = time.monotonic() + 5
    left = _processes_with(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _processes_with(marker)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"server processes left behind: {left}"


_counter = itertools.count()


def new_nonce() -> str:
    """A prefix for the ids of one example's requests (8 characters)."""
    return f"{os.getpid() % 1000:03d}{next(_counter) % 100000:05d}"


# --------------------------------------------------------------------------------------
# Requests and what the application must say about them
# --------------------------------------------------------------------------------------


@dataclass
class Req:
    """One request as sent, and the echo its answer must carry.

    ``echo`` holds the application's view (keys of tests/apps/fuzz_app.wsgi's JSON);
    a key left out is not compared. ``loose`` names headers whose value is compared
    with runs of SP/HTAB taken as one SP (an obs-fold, bare CR or NUL replaced by SP).
    """

    raw: bytes
    rid: str
    method: str = "GET"
    echo: dict[str, Any] = field(default_factory=dict)
    loose: frozenset[str] = frozenset()
    closes: bool = False  # the server must close after answering it
    continue_ok: bool = False  # a 100 Continue may come before its answer
    may_close: bool = False  # its body is left unread: the server may close after it
    features: tuple[str, ...] = ()  # for hypothesis' statistics


def env_key(name: str) -> str:
    return "HTTP_" + name.upper().replace("-", "_")


def echo_of(
    rid: str,
    method: str,
    target: str,
    *,
    version: str = "1.1",
    host: str | None = "fuzz",
    headers: dict[str, str] | None = None,
    body: bytes | None = b"",
    content_length: str = "",
) -> dict[str, Any]:
    """What the application reports for a request with this (origin-form) target, these
    ``X-`` headers (besides ``X-Fuzz-Id``) and this body (None: left unread)."""
    if target == "*":
        path, query = "*", ""
    else:
        path, _, query = target.partition("?")
    xheaders = {env_key(k): v for k, v in (headers or {}).items()}
    xheaders["HTTP_X_FUZZ_ID"] = rid
    return {
        "id": rid,
        "method": method,
        "path": unquote_to_bytes(path).decode("latin-1") if "%" in path else path,
        "uri": path + "?" + query if query else path,
        "query": query,
        "protocol": "HTTP/" + version,
        "host": host,
        "content_length": content_length,
        "headers": xheaders,
        "body_length": None if body is None else len(body),
        "body_sha256": "unread" if body is None else hashlib.sha256(body).hexdigest(),
    }


def head(line: bytes, fields: Sequence[bytes], eol: bytes = b"\r\n") -> bytes:
    return line + eol + b"".join(f + eol for f in fields) + eol


def chunked(body: bytes, sizes: Sequence[int] = (), last: bytes = b"0\r\n\r\n") -> bytes:
    """``body`` as chunks of these sizes (the rest as one more chunk), then ``last``."""
    out, pos = [], 0
    for size in [*sizes, len(body)]:
        piece = body[pos : pos + size]
        if piece:
            out.append(b"%x\r\n%b\r\n" % (len(piece), piece))
        pos += len(piece)
    return b"".join(out) + last


def smuggled(sid: str) -> bytes:
    """A complete request hidden in a body: the application must never see it."""
    return b"GET /smuggled HTTP/1.1\r\nHost: fuzz\r\nX-Fuzz-Id: %s\r\n\r\n" % sid.encode()


def plain_get(rid: str, *, close: bool = False) -> Req:
    fields = [b"Host: fuzz", b"X-Fuzz-Id: " + rid.encode()]
    if close:
        fields.append(b"Connection: close")
    raw = head(b"GET /plain/" + rid.encode() + b" HTTP/1.1", fields)
    return Req(raw, rid, "GET", echo_of(rid, "GET", "/plain/" + rid), closes=close)


# --------------------------------------------------------------------------------------
# Strategies: valid requests
# --------------------------------------------------------------------------------------

UNRESERVED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
PCHAR = UNRESERVED + "!$&'()*+,;=:@"
# RFC 9110 token characters, without "_": the server drops header names with "_" (a
# "X_Forwarded_For" would pose as "X-Forwarded-For"), on purpose.
TCHAR = "!#$%&'*+-.^`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# field-vchar: VCHAR and obs-text.
VCHAR = "".join(map(chr, range(0x21, 0x7F))) + "\x80\xa0\xe9\xff"
QDTEXT = "\t !#$%&'()*+,-./0123456789:;<=>?@[]^_`{|}~abcXYZ\x80\xff"
HOSTS = ["fuzz", "example.com", "127.0.0.1:8080", "[::1]:8080", "a-b.example:1", ""]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"]

pct = st.tuples(st.integers(0, 255), st.booleans()).map(
    lambda t: ("%%%02X" if t[1] else "%%%02x") % t[0]
)
segment = st.lists(st.one_of(st.sampled_from(PCHAR), pct), max_size=8).map("".join)
paths = st.lists(segment, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
queries = st.one_of(
    st.none(), st.lists(st.one_of(st.sampled_from(PCHAR + "/?"), pct), max_size=12).map("".join)
)
tokens = st.text(TCHAR, min_size=1, max_size=8)
field_values = st.one_of(
    st.just(""),
    st.tuples(
        st.text(VCHAR, min_size=1, max_size=1),
        st.text(VCHAR + " \t", max_size=30),
        st.text(VCHAR, min_size=1, max_size=1),
    ).map(lambda t: t[0] + t[1] + t[2]),
    st.text(VCHAR, min_size=1, max_size=1),
)
chunk_exts = st.one_of(
    tokens.map(lambda n: ";" + n),
    st.tuples(tokens, tokens).map(lambda t: f";{t[0]}={t[1]}"),
    st.tuples(tokens, st.text(QDTEXT, max_size=10), st.booleans()).map(
        lambda t: f';{t[0]}="{t[1]}' + ('\\"' if t[2] else "") + '"'
    ),
)


@st.composite
def bodies(draw: st.DrawFn, sid: str) -> bytes:
    kind = draw(st.sampled_from(["small", "small", "small", "empty", "smuggle", "big"]))
    if kind == "empty":
        return b""
    if kind == "small":
        return draw(st.binary(min_size=1, max_size=600))
    if kind == "smuggle":
        # Bytes that look like framing and a request: they are data, nothing more.
        return draw(st.binary(max_size=20)) + b"0\r\n\r\n" + smuggled(sid) + b"\r\n"
    size = draw(st.integers(20_000, 300_000))
    return random.Random(draw(st.integers(0, 2**32 - 1))).randbytes(size)


@st.composite
def valid_requests(draw: st.DrawFn, rid: str, sid: str, *, last: bool, ows: bool = False) -> Req:
    """A valid request. Only the ``last`` of a pipeline may close the connection.
    With ``ows``, field values get optional whitespace (SP, HTAB) on both sides, as
    RFC 9112 section 5 allows; without, the single SP ordinary clients send."""

    def field(name: str, value: str, *, tab_after: bool = True) -> bytes:
        if ows:
            before = draw(st.sampled_from(["", " ", "\t", "  ", " \t"]))
            after = draw(st.sampled_from(["", " ", "\t", " \t "] if tab_after else ["", " "]))
        else:
            before, after = (" " if value else ""), ""
        return f"{name}:{before}{value}{after}".encode("latin-1")

    version = draw(st.sampled_from(["1.1", "1.1", "1.1", "1.0"]))
    method = draw(st.sampled_from(METHODS))
    form = draw(st.sampled_from(["origin", "origin", "origin", "absolute", "asterisk"]))
    path, query = draw(paths), draw(queries)
    origin = path + ("" if query is None else "?" + query)
    target = origin
    authority = None
    if form == "absolute":
        authority = draw(st.sampled_from(["example.com", "127.0.0.1:8080", "[::1]:81"]))
        target = f"http://{authority}{origin}"
    elif form == "asterisk":
        method, origin, target = "OPTIONS", "*", "*"
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    if method == "TRACE":
        framing = "none"  # RFC 9110 9.3.8: a TRACE request has no content
    if framing == "chunked" and version == "1.0" and not last:
        framing = "length"
    body = b"" if framing == "none" else draw(bodies(sid))

    fields: list[bytes] = []
    host: str | None = None
    if version == "1.1" or draw(st.booleans()):
        host = draw(st.sampled_from(HOSTS))
        fields.append(field(draw(st.sampled_from(["Host", "host", "HOST"])), host))
    xheaders: dict[str, str] = {}
    for i, (suffix, value) in enumerate(
        draw(st.lists(st.tuples(tokens, field_values), max_size=5))
    ):
        name = f"X-{i}{suffix}"
        xheaders[name] = value
        fields.append(field(name, value))
    fields.append(f"X-Fuzz-Id: {rid}".encode())  # no OWS here: it names the answer
    # Sometimes the application leaves the body unread: the server must drain it (or
    # close the connection), never take it for requests.
    unread = framing != "none" and draw(st.integers(0, 4)) == 0
    if unread:
        xheaders["X-Read"] = "no"
        fields.append(b"X-Read: no")  # no OWS: it steers the application
    content_length = ""
    trailers: list[bytes] = []
    if framing == "length":
        content_length = "0" * draw(st.integers(0, 2)) + str(len(body))
        name = draw(st.sampled_from(["Content-Length", "content-length", "CONTENT-LENGTH"]))
        fields.append(field(name, content_length))
    elif framing == "chunked":
        name = draw(st.sampled_from(["Transfer-Encoding", "transfer-encoding"]))
        # The parser (llhttp) refuses a tab after "chunked" with 400: a refusal, not a
        # misreading, so the fuzz leaves that one out rather than fail on it.
        coding = draw(st.sampled_from(["chunked", "Chunked", "CHUNKED"]))
        fields.append(field(name, coding, tab_after=False))
        trailers = [
            field(f"X-Trailer-{i}{n}", v)
            for i, (n, v) in enumerate(draw(st.lists(st.tuples(tokens, field_values), max_size=3)))
        ]
    continue_ok = False
    if framing != "none" and draw(st.integers(0, 3)) == 0:
        fields.append(field("Expect", draw(st.sampled_from(["100-continue", "100-Continue"]))))
        continue_ok = version == "1.1"  # never to an HTTP/1.0 client (RFC 9110 15.2)
    if version == "1.0":
        keep = not last or draw(st.booleans())
        if keep:
            fields.append(field("Connection", draw(st.sampled_from(["keep-alive", "Keep-Alive"]))))
        closes = not keep or framing == "chunked"  # RFC 9112 6.1: close after 1.0 chunked
    else:
        connection = draw(st.sampled_from([None, "keep-alive", "close"] if last else [None]))
        if connection is not None:
            fields.append(field("Connection", connection))
        closes = connection == "close"
    fields = draw(st.permutations(fields))

    raw = head(f"{method} {target} HTTP/{version}".encode("latin-1"), fields)
    if framing == "length":
        raw += body
    elif framing == "chunked":
        raw += chunked_body(draw, body, trailers)
    if authority is not None:
        host = authority  # the target's authority replaces the Host header
    echo = echo_of(
        rid,
        method,
        origin,
        version=version,
        host=host,
        headers=xheaders,
        body=None if unread else body,
        content_length=content_length,
    )
    features = (
        f"HTTP/{version}",
        f"{form}-form target",
        f"framing: {framing}",
        *(["body over 16 KiB"] if len(body) > 16384 else []),
        *(["Expect: 100-continue"] if continue_ok else []),
        *(["body left unread"] if unread else []),
        *(["closes"] if closes else []),
    )
    return Req(
        raw,
        rid,
        method,
        echo,
        closes=closes,
        continue_ok=continue_ok,
        may_close=unread,
        features=features,
    )


def chunked_body(draw: st.DrawFn, body: bytes, trailers: Sequence[bytes]) -> bytes:
    """A valid chunked encoding of ``body``: drawn chunk sizes, size spellings (case,
    leading zeros) and extensions; the ``trailers`` after the last chunk."""
    upper = draw(st.booleans())
    zeros = draw(st.integers(0, 2))
    exts = draw(st.lists(chunk_exts, max_size=3))
    if len(body) > 4096:
        rng = random.Random(len(body))
        sizes = [rng.randint(1, 70_000) for _ in range(len(body) // 1000)]
    else:
        sizes = draw(st.lists(st.integers(1, 300), max_size=6))
    pieces, pos = [], 0
    for size in [*sizes, len(body)]:
        if pos < len(body):
            pieces.append(body[pos : pos + size])
            pos += len(pieces[-1])
    out = []
    for n, piece in enumerate(pieces):
        digits = ("%X" if upper else "%x") % len(piece)
        ext = exts[n % len(exts)] if exts and n < 50 else ""
        out.append(("0" * zeros + digits + ext).encode("latin-1") + b"\r\n" + piece + b"\r\n")
    last_ext = draw(st.sampled_from(["", *exts]))
    out.append(("0" * zeros + "0" + last_ext).encode("latin-1") + b"\r\n")
    out.extend(t + b"\r\n" for t in trailers)
    out.append(b"\r\n")
    return b"".join(out)


@st.composite
def pipelines(draw: st.DrawFn, nonce: str, *, ows: bool = False, size: int = 4) -> list[Req]:
    n = draw(st.integers(1, size))
    return [
        draw(valid_requests(f"{nonce}-p{i}", f"{nonce}-x", last=i == n - 1, ows=ows))
        for i in range(n)
    ]


@st.composite
def prefixes(draw: st.DrawFn, nonce: str) -> list[Req]:
    """Valid requests sent before an invalid one: none, one or two."""
    n = draw(st.integers(0, 2))
    return [draw(valid_requests(f"{nonce}-p{i}", f"{nonce}-x", last=False)) for i in range(n)]


@st.composite
def cuts(draw: st.DrawFn, length: int) -> tuple[list[int], float]:
    """Where to cut a stream of ``length`` bytes, and how long to pause at each cut."""
    if length < 2:
        return [], 0.0
    positions = draw(st.lists(st.integers(1, length - 1), max_size=10, unique=True))
    pause = draw(st.sampled_from([0.0, 0.0005, 0.002]))
    return sorted(positions), pause


# --------------------------------------------------------------------------------------
# Strategies: invalid requests
# --------------------------------------------------------------------------------------


@dataclass
class Bad:
    """An invalid request. When ``lenient``, RFC 9112 lets a recipient read it as a
    valid request, and ``req.echo`` is that reading's answer; after it the connection
    must still close when ``close_after`` (RFC 9112 6.3: Content-Length with
    Transfer-Encoding)."""

    kind: str
    req: Req
    lenient: bool = False
    close_after: bool = False


@dataclass
class Case:
    """What every invalid request is built from."""

    kind: str
    rid: str
    smug: bytes  # a request hidden in the body or after it: never to be served
    data: bytes  # a body
    expect: bool  # whether to ask for 100 Continue where the head is otherwise valid

    @property
    def fid(self) -> bytes:
        return b"X-Fuzz-Id: " + self.rid.encode()

    @property
    def expect_field(self) -> list[bytes]:
        return [b"Expect: 100-continue"] if self.expect else []

    def bad(self, raw: bytes, method: str = "POST") -> Bad:
        return Bad(self.kind, Req(raw, self.rid, method, continue_ok=_asks_continue(raw)))

    def lenient(
        self,
        raw: bytes,
        method: str = "POST",
        target: str = "/m",
        *,
        close_after: bool = False,
        loose: frozenset[str] = frozenset(),
        skip: Sequence[str] = (),
        **echo: Any,
    ) -> Bad:
        want = echo_of(self.rid, method, target, **echo)
        for key in skip:
            del want[key]
        req = Req(raw, self.rid, method, want, loose, close_after, _asks_continue(raw))
        return Bad(self.kind, req, lenient=True, close_after=close_after)


def _asks_continue(raw: bytes) -> bool:
    return b"\r\nExpect: 100-continue\r\n" in raw.partition(b"\r\n\r\n")[0] + b"\r\n"


HOST = b"Host: fuzz"
POST = b"POST /m HTTP/1.1"
GET = b"GET /m HTTP/1.1"
TE_CHUNKED = b"Transfer-Encoding: chunked"

# fmt: off
BAD_CONTENT_LENGTHS = [
    b"-1", b"+5", b"0x10", b"1e3", b"5 5", b"abc", b"1_0", b"5,6", b"", b"5.", b"5;",
    b"\x0b5", b"99999999999999999999999", b"\xd9\xa5", b"\xef\xbc\x95", b"0x", b"1 000",
]
BAD_TRANSFER_ENCODINGS = [
    [b"gzip"], [b"identity"], [b"chunked, gzip"], [b"chunked, identity"], [b"xchunked"],
    [b"chunkedx"], [b'"chunked"'], [b"chunked;q=1"], [b"chunk"], [b"chunked\x0b"],
    [b"gzip, chunked"], [b"identity, chunked"], [b"chunked, chunked"],
    [b"chunked", b"chunked"], [b"gzip", b"chunked"], [b"chunked", b"identity"], [b","],
    [b"chunked\x00"], [b"\xe7hunked"],
]
BAD_CHUNK_SIZES = [
    b"", b"-1", b"0x5", b"g", b" 5", b"5 ", b"+5", b"5\t", b"1_0", b"\xd9\xa5", b"5;",
    b"5;=x", b"5;a=", b'5;a="open', b"5;a b", b"5;a=b c", b"5;a=\x7f",
    b"ffffffffffffffffff", b"10000000000000000", b"1" + b"0" * 16, b"fffffffffffffffff",
    b"\xef\xbc\x95",
]
BAD_VERSIONS = [
    b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1", b"HTTP/1.1.1", b"http/1.1", b"HTTP/11",
    b"HTTP/ 1.1", b"HTTP/3", b"HTTP/1.10", b"HTTP/01.1", b"", b"HTTPS/1.1",
    b"HTTP/1.x", b"HTTP/9.9",
]
BAD_REQUEST_LINES = [
    b"GET HTTP/1.1", b"get /m HTTP/1.1", b"GET m HTTP/1.1", b"GET /m x HTTP/1.1", b"GET",
    b"GET /m HTTP/1.1 x", b"G(T /m HTTP/1.1", b"GET http:// HTTP/1.1",
    b"GET http://a b/ HTTP/1.1", b"GET http://u@h/ HTTP/1.1", b"GET *x HTTP/1.1",
    b"GET\x0b/m HTTP/1.1", b"GET /m HTTP/1.1\x0b",
]
# Characters RFC 3986 does not allow in a target, and a fragment: invalid (RFC 9112
# 3.2), but a recipient may take the bytes as they are (the fragment is never sent).
ODD_TARGETS = [
    ("/[", "/["), ("/a{b}", "/a{b}"), ("/a|b", "/a|b"), ('/a"b', '/a"b'), ("/a<b>", "/a<b>"),
    ("/a\\b", "/a\\b"), ("/a^b", "/a^b"), ("/a`b", "/a`b"), ("/%zz", "/%zz"), ("/%", "/%"),
    ("/m#f", "/m"), ("/m?q#f", "/m?q"), ("//", "//"), ("/m?a=[]", "/m?a=[]"),
]
# RFC 9112 3: a recipient may split the request line on any whitespace, ignoring it
# before and after.
SPACY_REQUEST_LINES = [
    b"GET  /m HTTP/1.1", b"GET /m  HTTP/1.1", b" GET /m HTTP/1.1", b"GET /m HTTP/1.1 ",
    b"GET\t/m\tHTTP/1.1", b"GET /m\tHTTP/1.1", b"\tGET /m HTTP/1.1",
]
BAD_HOSTS = [
    [], [b"Host: a", b"Host: a"], [b"Host: a", b"Host: b"], [b"Host: a b"], [b"Host: a/b"],
    [b"Host: u@h"], [b"Host: [::1"], [b"Host: h:x"], [b"Host: h:80:80"], [b"Host: h\\"],
]
BAD_FIELD_LINES = [
    b"X-A b", b": b", b"X A: b", b"X(A): b", b"X-A\x7f: b", b"X-A\x01: b", b"X-A:\x01b",
    b"X-A: b\x7f", b"X-A;: b", b"X@A: b", b"X-A: b\x1b",
]
# fmt: on

BUILDERS: dict[str, Callable[[st.DrawFn, Case], Bad]] = {}


def builds(kind: str) -> Callable[[Callable[[st.DrawFn, Case], Bad]], Any]:
    def register(fn: Callable[[st.DrawFn, Case], Bad]) -> Callable[[st.DrawFn, Case], Bad]:
        BUILDERS[kind] = fn
        return fn

    return register


@builds("content-length-and-transfer-encoding")
def _cl_and_te(draw: st.DrawFn, c: Case) -> Bad:
    # A recipient may read the body as chunked, but must close after it (RFC 9112 6.3).
    # CL.TE: a complete request follows the chunked body.
    body = chunked(c.data) + c.smug
    length = draw(st.sampled_from([len(body), 0, 3, len(chunked(c.data))]))
    te = draw(st.sampled_from([TE_CHUNKED, b"transfer-encoding: Chunked"]))
    framing = [b"Content-Length: %d" % length, te]
    if draw(st.booleans()):
        framing.reverse()
    raw = head(POST, [HOST, c.fid, *framing]) + body
    return c.lenient(raw, close_after=True, skip=["content_length"], body=c.data)


@builds("transfer-encoding-and-short-content-length")
def _te_and_short_cl(draw: st.DrawFn, c: Case) -> Bad:
    # TE.CL: the chunk data is a request; read by Content-Length, it would be the next.
    body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(c.smug), c.smug)
    raw = head(POST, [HOST, c.fid, b"Content-Length: 4", TE_CHUNKED]) + body
    return c.lenient(raw, close_after=True, skip=["content_length"], body=c.smug)


@builds("content-length-invalid")
def _cl_invalid(draw: st.DrawFn, c: Case) -> Bad:
    # Read as 0, the smuggled request would be next; read as anything else, garbage.
    value = draw(st.sampled_from(BAD_CONTENT_LENGTHS))
    return c.bad(head(POST, [HOST, c.fid, b"Content-Length: " + value]) + c.smug + c.data)


@builds("content-length-twice")
def _cl_twice(draw: st.DrawFn, c: Case) -> Bad:
    a = len(c.data)
    b = draw(st.sampled_from([a, a + 1, a - 1, 0]))
    if draw(st.booleans()):
        framing = [b"Content-Length: %d, %d" % (a, b)]
    else:
        framing = [b"Content-Length: %d" % a, b"Content-Length: %d" % b]
    raw = head(POST, [HOST, c.fid, *framing]) + c.data
    if a != b:
        return c.bad(raw + c.smug)
    # The same value twice: RFC 9110 8.6 lets a recipient take it once.
    return c.lenient(raw, skip=["content_length"], body=c.data)


@builds("transfer-encoding-invalid")
def _te_invalid(draw: st.DrawFn, c: Case) -> Bad:
    # Not chunked last: 400 and close (RFC 9112 6.3); unknown codings: 501.
    framing = [b"Transfer-Encoding: " + v for v in draw(st.sampled_from(BAD_TRANSFER_ENCODINGS))]
    if draw(st.booleans()):
        framing.append(b"Content-Length: %d" % len(c.data))
    raw = head(POST, [HOST, c.fid, *framing, *c.expect_field])
    return c.bad(raw + chunked(c.data) + c.smug)


@builds("transfer-encoding-empty-element")
def _te_empty_element(draw: st.DrawFn, c: Case) -> Bad:
    # A sender must not send empty list elements; a recipient ignores them (RFC 9110
    # 5.6.1.2) or rejects the request.
    value = draw(st.sampled_from([b", chunked", b"chunked ,", b" , chunked", b"chunked,,"]))
    raw = head(POST, [HOST, c.fid, b"Transfer-Encoding: " + value]) + chunked(c.data)
    return c.lenient(raw, body=c.data)


@builds("obs-fold")
def _obs_fold(draw: st.DrawFn, c: Case) -> Bad:
    where = draw(st.sampled_from(["value", "content-length", "first-line", "after-field"]))
    if where == "value":
        # RFC 9112 5.2: reject, or replace the obs-fold with SP.
        fold = draw(st.sampled_from([b"\r\n ", b"\r\n\t", b"\r\n  \t"]))
        raw = head(POST, [HOST, c.fid, b"X-Fold: a" + fold + b"b"])
        return c.lenient(raw, loose=frozenset({"HTTP_X_FOLD"}), headers={"X-Fold": "a b"})
    if where == "content-length":
        raw = head(POST, [HOST, c.fid, b"Content-Length:\r\n %d" % len(c.data)]) + c.data
        return c.lenient(raw, skip=["content_length"], body=c.data)
    if where == "after-field":
        line = draw(st.sampled_from([b"\tX-A: b", b" ", b" x"]))
        raw = head(GET, [HOST, c.fid, b"X-Pre: p", line])
        unfolded = "p " + line.decode().strip()
        return c.lenient(raw, "GET", loose=frozenset({"HTTP_X_PRE"}), headers={"X-Pre": unfolded})
    # RFC 9112 2.2: a whitespace-preceded line before the first field: reject, or consume
    # it without processing it.
    raw = head(POST, [b" X-Ws: 1", HOST, c.fid, b"Content-Length: %d" % len(c.data)])
    return c.lenient(raw + c.data, content_length=str(len(c.data)), body=c.data)


@builds("bare-cr")
def _bare_cr(draw: st.DrawFn, c: Case) -> Bad:
    # RFC 9112 2.2: a bare CR makes the element invalid, or is replaced by SP.
    where = draw(st.sampled_from(["value", "line-end", "request-line", "chunk-size"]))
    if where == "value":
        raw = head(POST, [HOST, c.fid, b"X-Cr: a\rb", b"Content-Length: 0"])
        return c.lenient(
            raw, loose=frozenset({"HTTP_X_CR"}), headers={"X-Cr": "a b"}, content_length="0"
        )
    if where == "line-end":
        raw = head(POST, [HOST, c.fid, b"X-Cr: a\rX-Other: b", b"Content-Length: 0"])
        want = {"X-Cr": "a X-Other: b"}
        return c.lenient(raw, loose=frozenset({"HTTP_X_CR"}), headers=want, content_length="0")
    if where == "request-line":
        return c.bad(head(POST + b"\r", [HOST, c.fid]) + c.smug)
    fields = [HOST, c.fid, TE_CHUNKED, *c.expect_field]
    return c.bad(head(POST, fields) + b"%x\r\r\n%b\r\n0\r\n\r\n" % (len(c.data), c.data) + c.smug)


@builds("bare-lf")
def _bare_lf(draw: st.DrawFn, c: Case) -> Bad:
    where = draw(st.sampled_from(["head", "one-field", "chunk-size", "chunk-data", "last"]))
    size, data = len(c.data), c.data
    if where in ("head", "one-field"):
        # RFC 9112 2.2: a recipient may take a bare LF for a line terminator.
        fields = [HOST, c.fid, b"Content-Length: %d" % size]
        if where == "head":
            raw = head(POST, fields, eol=b"\n")
        else:
            raw = POST + b"\r\n" + HOST + b"\n" + head(b"", fields[1:])[2:]
        return c.lenient(raw + data, content_length=str(size), body=data)
    # In chunked framing a bare LF is no line end (RFC 9112 7.1), but read as one the
    # body is still unambiguous: that reading is allowed here too.
    if where == "chunk-size":
        body = b"%x\n%b\r\n0\r\n\r\n" % (size, data)
    elif where == "chunk-data":
        body = b"%x\r\n%b\n0\r\n\r\n" % (size, data)
    else:
        body = b"%x\r\n%b\r\n0\n\n" % (size, data)
    return c.lenient(head(POST, [HOST, c.fid, TE_CHUNKED]) + body, body=data)


@builds("nul")
def _nul(draw: st.DrawFn, c: Case) -> Bad:
    where = draw(st.sampled_from(["value", "name", "target", "method", "version", "chunk", "ext"]))
    if where == "value":
        # RFC 9110 5.5: reject, or replace the NUL with SP.
        raw = head(POST, [HOST, c.fid, b"X-Nul: a\x00b"])
        return c.lenient(raw, loose=frozenset({"HTTP_X_NUL"}), headers={"X-Nul": "a b"})
    chunked_fields = [HOST, c.fid, TE_CHUNKED, *c.expect_field]
    raw = {
        "name": head(POST, [HOST, c.fid, b"X-N\x00ul: a"]),
        "target": head(b"POST /m\x00x HTTP/1.1", [HOST, c.fid]),
        "method": head(b"PO\x00ST /m HTTP/1.1", [HOST, c.fid]),
        "version": head(POST + b"\x00", [HOST, c.fid]),
        "chunk": head(POST, chunked_fields) + b"\x00%x\r\n%b\r\n0\r\n\r\n" % (1, b"a"),
        "ext": head(POST, chunked_fields) + b"1;a=\x00\r\na\r\n0\r\n\r\n",
    }[where]
    return c.bad(raw + c.smug)


@builds("chunk-size-invalid")
def _chunk_size_invalid(draw: st.DrawFn, c: Case) -> Bad:
    size = draw(st.sampled_from(BAD_CHUNK_SIZES))
    good = b"%x\r\n%b\r\n" % (len(c.data), c.data) * draw(st.integers(0, 2))
    # The chunk under the bad size line holds the smuggled request.
    body = good + size + b"\r\n" + c.smug + b"\r\n0\r\n\r\n" + c.smug
    return c.bad(head(POST, [HOST, c.fid, TE_CHUNKED, *c.expect_field]) + body)


@builds("chunk-size-leading-zeros")
def _chunk_size_zeros(draw: st.DrawFn, c: Case) -> Bad:
    # Valid (1*HEXDIG) however many zeros; a recipient may refuse so many.
    zeros = b"0" * draw(st.integers(10, 40))
    body = zeros + b"%x\r\n%b\r\n0\r\n\r\n" % (len(c.data), c.data)
    return c.lenient(head(POST, [HOST, c.fid, TE_CHUNKED]) + body, body=c.data)


@builds("chunk-data-mismatch")
def _chunk_data_mismatch(draw: st.DrawFn, c: Case) -> Bad:
    how = draw(st.sampled_from(["longer", "shorter", "no-crlf", "other-crlf", "lf-cr"]))
    size, data = len(c.data), c.data
    body = {
        "longer": b"%x\r\n%bXY\r\n" % (size, data),
        "shorter": b"%x\r\n%b\r\n" % (size + 2, data),
        "no-crlf": b"%x\r\n%b" % (size, data),
        "other-crlf": b"%x\r\n%bXX" % (size, data),
        "lf-cr": b"%x\r\n%b\n\r" % (size, data),
    }[how]
    raw = head(POST, [HOST, c.fid, TE_CHUNKED, *c.expect_field])
    return c.bad(raw + body + b"0\r\n\r\n" + c.smug)


@builds("last-chunk-unterminated")
def _last_chunk_unterminated(draw: st.DrawFn, c: Case) -> Bad:
    # The trailer section never ends: the next "field line" is a request line.
    body = b"%x\r\n%b\r\n0\r\n" % (len(c.data), c.data)
    return c.bad(head(POST, [HOST, c.fid, TE_CHUNKED]) + body + c.smug)


@builds("forbidden-trailer")
def _forbidden_trailer(draw: st.DrawFn, c: Case) -> Bad:
    # Framing and routing fields may not be trailers (RFC 9110 6.5.1): the request is
    # refused, or the trailer ignored -- never taken as a header.
    trailer = draw(st.sampled_from([b"Content-Length: 5", TE_CHUNKED, b"Host: evil.example"]))
    body = chunked(c.data, last=b"0\r\n" + trailer + b"\r\n\r\n")
    return c.lenient(head(POST, [HOST, c.fid, TE_CHUNKED]) + body, body=c.data)


@builds("chunk-ext-bws")
def _chunk_ext_bws(draw: st.DrawFn, c: Case) -> Bad:
    # BWS around ";" and "=" (RFC 9112 7.1.1): a sender must not send it; a recipient
    # removes it, or may refuse it.
    ext = draw(st.sampled_from([b" ;a=b", b"; a=b", b";a =b", b";a= b", b"\t;a"]))
    body = b"%x%b\r\n%b\r\n0\r\n\r\n" % (len(c.data), ext, c.data)
    return c.lenient(head(POST, [HOST, c.fid, TE_CHUNKED]) + body, body=c.data)


@builds("space-before-colon")
def _space_before_colon(draw: st.DrawFn, c: Case) -> Bad:
    # RFC 9112 5.1: a server MUST reject it with 400.
    ws = draw(st.sampled_from([b" ", b"\t", b"  "]))
    which = draw(st.sampled_from(["host", "content-length", "transfer-encoding", "other"]))
    if which == "host":
        return c.bad(head(GET, [b"Host" + ws + b": fuzz", c.fid]) + c.smug, "GET")
    if which == "content-length":
        fields = [HOST, c.fid, b"Content-Length" + ws + b": %d" % len(c.smug)]
        return c.bad(head(POST, fields) + c.smug)
    if which == "transfer-encoding":
        body = chunked(c.data)
        fields = [HOST, c.fid, b"Transfer-Encoding" + ws + b": chunked"]
        return c.bad(head(POST, [*fields, b"Content-Length: %d" % len(body)]) + body + c.smug)
    return c.bad(head(POST, [HOST, c.fid, b"X-A" + ws + b": b"]) + c.smug)


@builds("version-invalid")
def _version_invalid(draw: st.DrawFn, c: Case) -> Bad:
    version = draw(st.sampled_from(BAD_VERSIONS))
    line = b"GET /m" + (b" " + version if version else b"")
    return c.bad(head(line, [HOST, c.fid]) + c.smug, "GET")


@builds("version-1.2")
def _version_12(draw: st.DrawFn, c: Case) -> Bad:
    # RFC 9110 2.5: a higher minor version should be read as 1.1 (or refused).
    return c.lenient(head(b"GET /m HTTP/1.2", [HOST, c.fid]), "GET", skip=["protocol"])


@builds("request-line-invalid")
def _request_line_invalid(draw: st.DrawFn, c: Case) -> Bad:
    line = draw(st.sampled_from(BAD_REQUEST_LINES))
    return c.bad(head(line, [HOST, c.fid]) + c.smug, "GET")


@builds("request-line-lenient")
def _request_line_lenient(draw: st.DrawFn, c: Case) -> Bad:
    how = draw(st.sampled_from(["whitespace", "empty-lines", "unknown-method"]))
    if how == "whitespace":
        line = draw(st.sampled_from(SPACY_REQUEST_LINES))
        return c.lenient(head(line, [HOST, c.fid]), "GET")
    if how == "empty-lines":
        # RFC 9112 2.2: at least one empty line before a request line is ignored.
        raw = b"\r\n" * draw(st.integers(1, 2)) + head(GET, [HOST, c.fid])
        return c.lenient(raw, "GET")
    # An unknown method: 501 (RFC 9110 9.1), 400, or handed to the application.
    return c.lenient(head(b"FROB /m HTTP/1.1", [HOST, c.fid]), "FROB")


@builds("target-odd")
def _target_odd(draw: st.DrawFn, c: Case) -> Bad:
    target, seen = draw(st.sampled_from(ODD_TARGETS))
    raw = head(b"GET " + target.encode() + b" HTTP/1.1", [HOST, c.fid])
    return c.lenient(raw, "GET", seen)


@builds("connect")
def _connect(draw: st.DrawFn, c: Case) -> Bad:
    # CONNECT asks for a tunnel (RFC 9110 9.3.6): after a 2xx the connection is one, and
    # the client ignores Content-Length (RFC 9112 6.3) -- a server without tunnels must
    # refuse it; and CONNECT takes the authority form only (RFC 9112 3.2.3).
    target = draw(st.sampled_from([b"/m", b"fuzz:80", b"127.0.0.1:1", b"http://fuzz/m"]))
    raw = head(b"CONNECT " + target + b" HTTP/1.1", [HOST, c.fid])
    return c.bad(raw + c.smug, "CONNECT")


@builds("overlong")
def _overlong(draw: st.DrawFn, c: Case) -> Bad:
    # Over this server's limits: 414, 431 (or 400), and a close.
    what = draw(st.sampled_from(["target", "field", "fields", "section", "method"]))
    if what == "target":
        raw = head(b"GET /" + b"a" * LIMIT_LINE + b" HTTP/1.1", [HOST, c.fid])
    elif what == "field":
        raw = head(GET, [HOST, c.fid, b"X-Long: " + b"v" * LIMIT_FIELD])
    elif what == "fields":
        raw = head(GET, [HOST, c.fid, *(b"X-F%d: v" % i for i in range(LIMIT_FIELDS + 1))])
    elif what == "section":
        raw = head(GET, [HOST, c.fid, *(b"X-F%d: " % i + b"v" * 2000 for i in range(10))])
    else:
        raw = head(b"G" * (LIMIT_LINE + 10) + b" /m HTTP/1.1", [HOST, c.fid])
    return c.bad(raw + c.smug, "GET")


@builds("non-ascii")
def _non_ascii(draw: st.DrawFn, c: Case) -> Bad:
    # (In a field value, obs-text is valid: the valid requests have it.)
    where = draw(st.sampled_from(["target", "name", "method", "version", "chunk", "host"]))
    byte = draw(st.sampled_from([b"\x80", b"\xe9", b"\xff", b"\xc3\xa9"]))
    if where == "target":
        # Not a valid target (RFC 9112 3.2), but a recipient may take it as bytes.
        raw = head(b"GET /" + byte + b" HTTP/1.1", [HOST, c.fid])
        return c.lenient(raw, "GET", "/" + byte.decode("latin-1"))
    if where == "chunk":
        body = byte + b"\r\n" + c.data + b"\r\n0\r\n\r\n"
        return c.bad(head(POST, [HOST, c.fid, TE_CHUNKED]) + body + c.smug)
    raw = {
        "name": head(GET, [HOST, c.fid, b"X-" + byte + b": v"]),
        "method": head(b"G" + byte + b"T /m HTTP/1.1", [HOST, c.fid]),
        "version": head(b"GET /m HTTP/1." + byte, [HOST, c.fid]),
        # RFC 9112 3.2: an invalid Host MUST get 400.
        "host": head(GET, [b"Host: h" + byte, c.fid]),
    }[where]
    return c.bad(raw + c.smug, "GET")


@builds("host-invalid")
def _host_invalid(draw: st.DrawFn, c: Case) -> Bad:
    # RFC 9112 3.2: a 1.1 request without Host, with two, or with an invalid one MUST
    # get 400.
    hosts = draw(st.sampled_from(BAD_HOSTS))
    return c.bad(head(GET, [*hosts, c.fid]) + c.smug, "GET")


@builds("field-syntax")
def _field_syntax(draw: st.DrawFn, c: Case) -> Bad:
    line = draw(st.sampled_from(BAD_FIELD_LINES))
    return c.bad(head(GET, [HOST, c.fid, line]) + c.smug, "GET")


@st.composite
def bad_requests(draw: st.DrawFn, kind: str, rid: str, sid: str) -> Bad:
    data = draw(st.binary(min_size=1, max_size=40))
    case = Case(kind, rid, smuggled(sid), data, draw(st.booleans()))
    return BUILDERS[kind](draw, case)


@st.composite
def truncated_requests(draw: st.DrawFn, rid: str, sid: str) -> Bad:
    """A valid request cut short: the input ends (the client half-closes) inside it."""
    whole = draw(valid_requests(rid, sid, last=False))
    cut = draw(st.integers(1, len(whole.raw) - 1))
    if whole.may_close and cut >= whole.raw.index(b"\r\n\r\n") + 4:
        # The head is whole and the application never reads the body: it may be answered
        # (RFC 9110 10.1.1), the connection closed after that.
        req = replace(whole, raw=whole.raw[:cut], closes=False)
        return Bad("truncated", req, lenient=True)
    req = Req(whole.raw[:cut], rid, whole.method, continue_ok=whole.continue_ok)
    return Bad("truncated", req)


# --------------------------------------------------------------------------------------
# A strict reader of the server's output
# --------------------------------------------------------------------------------------


class Incomplete(Exception):
    """More bytes are needed to parse the response."""


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw: bytes

    def values(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name]

    def header(self, name: bytes) -> bytes | None:
        values = self.values(name)
        assert len(values) <= 1, f"{name!r} repeated in {self.raw!r}"
        return values[0] if values else None

    @property
    def closes(self) -> bool:
        tokens = b",".join(self.values(b"connection")).lower().split(b",")
        return b"close" in (t.strip() for t in tokens)


_STATUS = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*")
_FIELD = re.compile(
    rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*"
    rb"((?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?)[ \t]*"
)
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})(?:;[\t\x20-\x7e\x80-\xff]*)?")


def parse_response(buf: bytes, pos: int, *, head_request: bool, eof: bool) -> tuple[Response, int]:
    """One response from ``buf[pos:]``, strictly: (it, where it ends). Raises
    :class:`Incomplete` for a prefix of a response, AssertionError for anything else."""
    end = buf.find(b"\r\n\r\n", pos)
    if end < 0:
        assert len(buf) - pos < 65536, f"no end of the response head in {buf[pos:][:200]!r}"
        raise Incomplete
    raw_head = buf[pos:end]
    status_line, *lines = raw_head.split(b"\r\n")
    m = _STATUS.fullmatch(status_line)
    assert m, f"bad status line {status_line!r} in {buf[pos:][:300]!r}"
    status = int(m.group(1))
    headers = []
    for line in lines:
        fm = _FIELD.fullmatch(line)
        assert fm, f"bad header line {line!r} in {raw_head!r}"
        headers.append((fm.group(1), fm.group(2)))
    response = Response(status, headers, b"", raw_head)
    pos = end + 4
    te = response.values(b"transfer-encoding")
    cl = response.values(b"content-length")
    if status < 200:
        assert not te and not cl, f"1xx with framing: {raw_head!r}"
        return response, pos
    assert not (te and cl), f"Transfer-Encoding with Content-Length: {raw_head!r}"
    if te:
        assert te == [b"chunked"], f"response transfer coding {te!r}"
    if cl:
        assert len(cl) == 1 and cl[0].isdigit(), f"response Content-Length {cl!r}"
    if head_request or status in (204, 304):
        assert not te or head_request, f"{status} with Transfer-Encoding"
        return response, pos
    if te:
        parts = []
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                raise Incomplete
            size_line = buf[pos:line_end]
            sm = _CHUNK_SIZE.fullmatch(size_line)
            assert sm, f"bad chunk size line {size_line!r}"
            size = int(sm.group(1), 16)
            pos = line_end + 2
            if size == 0:
                break
            if len(buf) < pos + size + 2:
                raise Incomplete
            parts.append(buf[pos : pos + size])
            assert buf[pos + size : pos + size + 2] == b"\r\n", "chunk data without CRLF"
            pos += size + 2
        while True:  # trailer section
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                raise Incomplete
            line = buf[pos:line_end]
            pos = line_end + 2
            if not line:
                break
            assert _FIELD.fullmatch(line), f"bad trailer line {line!r}"
        response.body = b"".join(parts)
        return response, pos
    if cl:
        length = int(cl[0])
        if len(buf) < pos + length:
            raise Incomplete
        response.body = buf[pos : pos + length]
        return response, pos + length
    # Neither: the body ends with the connection.
    if not eof:
        raise Incomplete
    response.body = buf[pos:]
    return response, len(buf)


class Wire:
    """One client connection: sends from a thread, reads and parses strictly."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.closing = False  # a response said Connection: close
        self.send_error: BaseException | None = None
        self.sent_at = 0.0
        self._sender: threading.Thread | None = None

    def close(self) -> None:
        self.sock.close()

    def send(
        self, data: bytes, positions: Sequence[int] = (), pause: float = 0.0, *, end: bool = False
    ) -> None:
        """Send ``data`` in pieces cut at ``positions``, pausing between them, from a
        thread (so the answers are read meanwhile); ``end``: half-close after it."""

        def run() -> None:
            try:
                start = 0
                for cut in [*positions, len(data)]:
                    if cut > start:
                        self.sock.sendall(data[start:cut])
                    start = cut
                    if pause and cut < len(data):
                        time.sleep(pause)
                self.sent_at = time.monotonic()
                if end:
                    self.sock.shutdown(socket.SHUT_WR)
            except OSError as exc:  # the server closed early: fine for invalid input
                self.send_error = exc
                self.sent_at = time.monotonic()

        self._sender = threading.Thread(target=run, daemon=True)
        self._sender.start()

    def sent(self) -> None:
        """Wait until the sending thread is done."""
        if self._sender is not None:
            self._sender.join(WAIT * 4)
            assert not self._sender.is_alive(), "sending blocked: the server stopped reading"
            self._sender = None

    def _more(self) -> None:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            raise AssertionError(
                f"nothing from the server for {WAIT} s; unparsed: {self.buf[self.pos :][:300]!r}"
            ) from None
        if not data:
            self.eof = True
        self.buf += data

    def response(self, *, head_request: bool = False) -> Response | None:
        """The next response; None when the connection closed where one would begin."""
        while True:
            if self.pos < len(self.buf) or self.eof:
                try:
                    resp, self.pos = parse_response(
                        self.buf, self.pos, head_request=head_request, eof=self.eof
                    )
                    assert not self.closing, f"a response after Connection: close: {resp.raw!r}"
                    self.closing = resp.closes
                    return resp
                except Incomplete:
                    if self.eof:
                        if self.pos == len(self.buf):
                            return None
                        raise AssertionError(
                            f"connection closed inside a response: {self.buf[self.pos :]!r}"
                        ) from None
            self._more()

    def answer(self, req: Req) -> Response:
        """The final response to ``req``, after at most one 100 Continue where legal."""
        interim = 0
        while True:
            resp = self.response(head_request=req.method == "HEAD")
            assert resp is not None, f"connection closed before the answer to {req.rid}"
            if resp.status >= 200:
                return resp
            assert resp.status == 100, f"unexpected interim response {resp.raw!r}"
            assert req.continue_ok, f"100 Continue to {req.rid}, which did not ask for one"
            interim += 1
            assert interim == 1, f"two 100 Continue for {req.rid}"

    def closed(self) -> None:
        """The server closes the connection with nothing more to say."""
        while not self.eof:
            self._more()
        assert self.pos == len(self.buf), f"bytes after the last answer: {self.buf[self.pos :]!r}"


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


def _squeeze(value: str) -> str:
    return re.sub(r"[ \t]+", " ", value).strip(" ")


def report(text: str) -> None:
    """Print ``text`` with a falsifying example (the fixed streams need none)."""
    if currently_in_test_context():
        note(text)


def check_echo(resp: Response, req: Req) -> None:
    """``resp`` is the application's answer to exactly ``req``."""
    assert resp.status == 200, f"{req.rid}: {resp.status} {resp.raw!r} {resp.body[:200]!r}"
    assert resp.header(b"x-echo-id") == req.rid.encode(), (
        f"answer to {resp.header(b'x-echo-id')!r} where {req.rid} was expected"
    )
    if "body_length" in req.echo:
        want = f"{req.echo['body_length']} {req.echo['body_sha256']}".encode()
        assert resp.header(b"x-echo-body") == want, f"{req.rid}: body differs"
    if req.method != "HEAD":
        got = json.loads(resp.body)
        for key, want in req.echo.items():
            if key == "headers":
                have = dict(got["headers"])
                for name in req.loose:
                    if name in have and name in want:
                        have[name] = _squeeze(have[name])
                want = {k: _squeeze(v) if k in req.loose else v for k, v in want.items()}
                assert have == want, f"{req.rid}: headers {have!r} != {want!r}"
            else:
                assert got[key] == want, f"{req.rid}: {key} {got[key]!r} != {want!r}"
    if req.closes:
        assert resp.closes, f"{req.rid}: no Connection: close before the server closes"


def check_server_alive(server: FuzzServer, nonce: str) -> None:
    """A fresh connection gets a plain GET answered."""
    wire = Wire(server.port)
    try:
        req = plain_get(f"{nonce}-H", close=True)
        wire.send(req.raw)
        check_echo(wire.answer(req), req)
        wire.closed()
        wire.sent()
    finally:
        wire.close()


def check_app_saw(
    server: FuzzServer, nonce: str, *, exactly: Sequence[str] = (), at_most: Sequence[str] = ()
) -> None:
    """Which of this example's requests the application was handed: each once at most;
    every one of ``exactly``; none outside ``exactly`` and ``at_most``."""
    seen = server.requests_seen(nonce)
    seen.pop(f"{nonce}-H", None)
    twice = {rid: n for rid, n in seen.items() if n > 1}
    assert not twice, f"the application was handed these more than once: {twice}"
    missing = set(exactly) - set(seen)
    assert not missing, f"answered but never handed to the application: {missing}"
    extra = set(seen) - set(exactly) - set(at_most)
    assert not extra, f"the application saw requests that were never sent as such: {extra}"


def run_valid(
    server: FuzzServer, nonce: str, reqs: Sequence[Req], positions: Sequence[int], pause: float
) -> None:
    """Send a valid pipeline; each request gets its own answer, in order; then the
    connection serves one more request (or closes, if the last asked for it)."""
    stream = b"".join(r.raw for r in reqs)
    report(f"mode={server.mode} cuts={list(positions)} pause={pause} stream={stream!r}")
    if currently_in_test_context():
        event(f"{len(reqs)} request(s) on the connection")
        for feature in {f for r in reqs for f in r.features}:
            event(feature)
    wire = Wire(server.port)
    answered = []
    try:
        wire.send(stream, positions, pause)
        for req in reqs:
            resp = wire.answer(req)
            check_echo(resp, req)
            answered.append(req.rid)
            if resp.closes:
                assert req.closes or req.may_close, f"{req.rid}: Connection: close {resp.raw!r}"
                break
        if wire.closing:
            # The last request asked for it, or the server would not drain a body left
            # unread: the requests after it are never answered (nor handed to the app),
            # and the rest of the stream may not have been taken.
            wire.closed()
            wire.sent()
            early = len(answered) < len(reqs) or req.may_close
            assert early or wire.send_error is None, f"sending failed: {wire.send_error!r}"
        else:
            wire.sent()
            assert wire.send_error is None, f"sending failed: {wire.send_error!r}"
            after = plain_get(f"{nonce}-a")
            wire.send(after.raw, end=True)
            check_echo(wire.answer(after), after)
            answered.append(after.rid)
            wire.closed()
            wire.sent()
    finally:
        wire.close()
    check_server_alive(server, nonce)
    check_app_saw(server, nonce, exactly=answered)


def run_invalid(
    server: FuzzServer,
    nonce: str,
    prefix: Sequence[Req],
    bad: Bad,
    suffix: Req | None,
    positions: Sequence[int],
    pause: float,
) -> None:
    """Send valid requests, an invalid one, maybe a valid one after it, then half-close.
    The valid ones before are answered; the invalid one gets a 4xx/5xx and a close, or
    just a close, or (where RFC 9112 allows a lenient reading) that reading's answer."""
    reqs = [*prefix, bad.req, *([suffix] if suffix else [])]
    stream = b"".join(r.raw for r in reqs)
    report(f"mode={server.mode} kind={bad.kind} cuts={list(positions)} stream={stream!r}")
    wire = Wire(server.port)
    finals: list[Response] = []
    interim: dict[str, Response] = {}
    try:
        wire.send(stream, positions, pause, end=True)
        while True:
            req = reqs[len(finals)] if len(finals) < len(reqs) else None
            resp = wire.response(head_request=req is not None and req.method == "HEAD")
            if resp is None:
                break
            assert req is not None, f"more answers than requests: {resp.raw!r}"
            if resp.status < 200:
                assert resp.status == 100 and req.continue_ok, f"interim {resp.raw!r}"
                assert interim.get(req.rid) is None, f"two 100 Continue for {req.rid}"
                interim[req.rid] = resp
                continue
            finals.append(resp)
        wire.sent()
        took = time.monotonic() - wire.sent_at
        assert took < PROMPT, f"the server took {took:.2f} s to finish"
    finally:
        wire.close()

    for i, req in enumerate(prefix):
        assert i < len(finals), f"closed after {i} answers to the {len(prefix)} valid requests"
        check_echo(finals[i], req)
        if finals[i].closes:
            # Allowed after a body the application left unread; and, as the client
            # half-closed, after the last request before the invalid one (what follows
            # may be no complete request at all).
            last = i == len(prefix) - 1
            assert last or req.may_close, f"{req.rid}: Connection: close {finals[i].raw!r}"
            check_server_alive(server, nonce)
            check_app_saw(server, nonce, exactly=[r.rid for r in prefix[: i + 1]])
            return
    rest = finals[len(prefix) :]
    app_may_see = [bad.req.rid]
    outcome = f"{rest[0].status}" if rest else "closed"
    if currently_in_test_context():
        event(f"{bad.kind}: {outcome}")
    if rest:
        resp = rest[0]
        if resp.status >= 400:
            assert resp.status != 408, "408: the server waited for bytes it had been sent"
            assert resp.closes, f"{resp.status} without Connection: close"
            assert len(rest) == 1, f"answers after the {resp.status}: {[r.raw for r in rest]}"
        else:
            assert bad.req.method != "CONNECT" or resp.status >= 300, (
                f"{resp.status} to CONNECT: to the client the connection is now a tunnel, "
                f"and this Content-Length body tunnel data: {resp.raw!r} {resp.body!r}"
            )
            assert bad.lenient, f"the invalid request was answered: {resp.raw!r} {resp.body!r}"
            check_echo(resp, bad.req)
            if bad.close_after or suffix is None:
                assert len(rest) == 1, f"answers after the last: {[r.raw for r in rest[1:]]}"
            else:
                assert len(rest) == 2, f"{len(rest) - 1} answers to the one request after"
                check_echo(rest[1], suffix)
                app_may_see.append(suffix.rid)
    check_server_alive(server, nonce)
    check_app_saw(server, nonce, exactly=[r.rid for r in prefix], at_most=app_may_see)


# --------------------------------------------------------------------------------------
# The fuzz tests
# --------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=VALID_EXAMPLES)
@given(data=st.data())
def test_valid_pipelines_are_answered_in_order(server: FuzzServer, data: st.DataObject) -> None:
    nonce = new_nonce()
    reqs = data.draw(pipelines(nonce), label="pipeline")
    stream_length = sum(len(r.raw) for r in reqs)
    positions, pause = data.draw(cuts(stream_length), label="cuts")
    run_valid(server, nonce, reqs, positions, pause)


@settings(FUZZ, max_examples=WHITESPACE_EXAMPLES)
@given(data=st.data())
def test_optional_whitespace_around_field_values(server: FuzzServer, data: st.DataObject) -> None:
    """RFC 9112 section 5: a field line is ``name ":" OWS value OWS``, and the OWS on
    either side is no part of the value -- for the application's headers as for the
    framing (Content-Length, Transfer-Encoding), Host, Connection and Expect."""
    nonce = new_nonce()
    reqs = data.draw(pipelines(nonce, ows=True, size=2), label="pipeline")
    positions, pause = data.draw(cuts(sum(len(r.raw) for r in reqs)), label="cuts")
    run_valid(server, nonce, reqs, positions, pause)


@pytest.mark.parametrize("kind", list(BUILDERS))
@settings(FUZZ, max_examples=INVALID_EXAMPLES)
@given(data=st.data())
def test_invalid_requests_are_refused_and_never_smuggled(
    server: FuzzServer, kind: str, data: st.DataObject
) -> None:
    nonce = new_nonce()
    bad = data.draw(bad_requests(kind, f"{nonce}-m", f"{nonce}-x"), label="invalid")
    prefix = data.draw(prefixes(nonce), label="valid requests before")
    suffix = plain_get(f"{nonce}-s")
    stream_length = sum(len(r.raw) for r in [*prefix, bad.req, suffix])
    positions, pause = data.draw(cuts(stream_length), label="cuts")
    run_invalid(server, nonce, prefix, bad, suffix, positions, pause)


@settings(FUZZ, max_examples=TRUNCATED_EXAMPLES)
@given(data=st.data())
def test_truncated_requests_are_not_answered_as_complete(
    server: FuzzServer, data: st.DataObject
) -> None:
    nonce = new_nonce()
    bad = data.draw(truncated_requests(f"{nonce}-m", f"{nonce}-x"), label="truncated")
    prefix = data.draw(prefixes(nonce), label="valid requests before")
    stream_length = sum(len(r.raw) for r in [*prefix, bad.req])
    positions, pause = data.draw(cuts(stream_length), label="cuts")
    run_invalid(server, nonce, prefix, bad, None, positions, pause)


# --------------------------------------------------------------------------------------
# Fixed streams, one byte at a time and split at every position
# --------------------------------------------------------------------------------------


def fixed_pipeline(nonce: str) -> list[Req]:
    """Chunked with extensions, a trailer and 100-continue; a request in a body the
    application leaves unread (the server drains it, or closes after the answer); HEAD;
    HTTP/1.0 keep-alive; a last request that closes."""
    ids = [f"{nonce}-p{i}" for i in range(5)]
    fids = [b"X-Fuzz-Id: " + rid.encode() for rid in ids]
    chunks = (
        b'7;ext=1\r\nhello, \r\n5;q="a;b"\r\nworld\r\n7\r\n\r\n0\r\n\r\n\r\n'
        b"0\r\nX-Trailer: t\r\n\r\n"
    )
    body_a = b"hello, world\r\n0\r\n\r\n"
    fields_a = [HOST, fids[0], TE_CHUNKED, b"Expect: 100-continue", b"X-A: v"]
    body_b = smuggled(f"{nonce}-x")
    fields_b = [HOST, fids[1], b"Content-Length: %d" % len(body_b), b"X-Read: no"]
    a, b, c, d, e = ids
    return [
        Req(
            head(b"POST /up?x=1 HTTP/1.1", fields_a) + chunks,
            a,
            "POST",
            echo_of(a, "POST", "/up?x=1", headers={"X-A": "v"}, body=body_a),
            continue_ok=True,
        ),
        Req(
            head(b"PUT /%41b HTTP/1.1", fields_b) + body_b,
            b,
            "PUT",
            echo_of(
                b,
                "PUT",
                "/%41b",
                headers={"X-Read": "no"},
                body=None,
                content_length=str(len(body_b)),
            ),
            may_close=True,
        ),
        Req(head(b"HEAD /h HTTP/1.1", [HOST, fids[2]]), c, "HEAD", echo_of(c, "HEAD", "/h")),
        Req(
            head(b"GET /old HTTP/1.0", [fids[3], b"Connection: keep-alive"]),
            d,
            "GET",
            echo_of(d, "GET", "/old", version="1.0", host=None),
        ),
        Req(
            head(b"DELETE /last HTTP/1.1", [HOST, fids[4], b"Connection: close"]),
            e,
            "DELETE",
            echo_of(e, "DELETE", "/last"),
            closes=True,
        ),
    ]


def fixed_smuggling(nonce: str) -> tuple[list[Req], Bad, Req]:
    """A valid request, then Content-Length with Transfer-Encoding hiding a request."""
    kind = "content-length-and-transfer-encoding"
    c = Case(kind, f"{nonce}-m", smuggled(f"{nonce}-x"), b"abc", False)
    body = chunked(c.data) + c.smug
    raw = head(POST, [HOST, c.fid, b"Content-Length: %d" % len(body), TE_CHUNKED]) + body
    bad = c.lenient(raw, close_after=True, skip=["content_length"], body=c.data)
    return [plain_get(f"{nonce}-p0")], bad, plain_get(f"{nonce}-s")


def fixed_bad_chunk(nonce: str) -> tuple[list[Req], Bad, Req]:
    """A valid request, then chunk data not followed by CRLF."""
    c = Case("chunk-data-mismatch", f"{nonce}-m", smuggled(f"{nonce}-x"), b"hello", False)
    raw = head(POST, [HOST, c.fid, TE_CHUNKED]) + b"5\r\nhelloXX0\r\n\r\n" + c.smug
    return [plain_get(f"{nonce}-p0")], c.bad(raw), plain_get(f"{nonce}-s")


INVALID_FIXED = {"smuggling": fixed_smuggling, "bad-chunk": fixed_bad_chunk}


def test_pipeline_one_byte_at_a_time(server: FuzzServer) -> None:
    nonce = new_nonce()
    reqs = fixed_pipeline(nonce)
    run_valid(server, nonce, reqs, range(1, sum(len(r.raw) for r in reqs)), BYTE_PAUSE)


@pytest.mark.parametrize("case", list(INVALID_FIXED))
def test_invalid_one_byte_at_a_time(server: FuzzServer, case: str) -> None:
    nonce = new_nonce()
    prefix, bad, suffix = INVALID_FIXED[case](nonce)
    length = sum(len(r.raw) for r in [*prefix, bad.req, suffix])
    run_invalid(server, nonce, prefix, bad, suffix, range(1, length), BYTE_PAUSE)


def test_pipeline_split_in_two_at_every_position(server: FuzzServer) -> None:
    length = sum(len(r.raw) for r in fixed_pipeline("0" * 8)[:2])
    for cut in range(1, length):
        nonce = new_nonce()
        run_valid(server, nonce, fixed_pipeline(nonce)[:2], [cut], SPLIT_PAUSE)


@pytest.mark.parametrize("case", list(INVALID_FIXED))
def test_invalid_split_in_two_at_every_position(server: FuzzServer, case: str) -> None:
    prefix, bad, suffix = INVALID_FIXED[case]("0" * 8)
    length = sum(len(r.raw) for r in [*prefix, bad.req, suffix])
    for cut in range(1, length):
        nonce = new_nonce()
        prefix, bad, suffix = INVALID_FIXED[case](nonce)
        run_invalid(server, nonce, prefix, bad, suffix, [cut], SPLIT_PAUSE)
