"""Unit tests of the wire package (asyncwsgi/daemon/wire/) with byte literals: no sockets,
no loop.

The literals were written from the layout table in the package docstring, not copied from
the encoder's output, so they pin the format: a change to any byte is a protocol change.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncwsgi.core.exchange import RequestHead
from asyncwsgi.daemon import wire
from asyncwsgi.daemon.wire import (
    DEFAULT_MAX_FRAME_SIZE,
    AbortReason,
    Body,
    BodyEnd,
    BodyError,
    BodyErrorReason,
    Cancel,
    Drain,
    Frame,
    FrameDecoder,
    FrameType,
    Hello,
    Ping,
    Pong,
    Request,
    ResponseAbort,
    ResponseBody,
    ResponseEnd,
    ResponseHead,
    Retire,
    RetireReason,
    Side,
    Window,
)
from asyncwsgi.errors import AsyncWSGIError, ProtocolError

pytestmark = pytest.mark.timeout(120)

U32 = 0xFFFFFFFF

# --------------------------------------------------------------------------------------
# One exact frame per type (several for the two hot frames)
# --------------------------------------------------------------------------------------

FULL_REQUEST = Request(
    stream_id=1,
    method="GET",
    path=b"/p",
    query=b"q=1",
    http_version="1.1",
    headers=[(b"Host", b"h")],
    client=("1.2.3.4", 5),
    server=("::1", 80),
    scheme="http",
    script_name="/app",
    body_length=3,
    expect_continue=False,
    body=b"abc",
    body_end=True,
    response_window=0x10000,
)
FULL_REQUEST_BYTES = (
    b"\x00\x00\x00\x4c"  # payload length 76
    b"\x10"  # REQUEST
    b"\x0e"  # BODY_END | HAS_CLIENT | HAS_SERVER
    b"\x00\x00\x00\x01"  # stream 1
    b"\x00\x00\x00\x00\x00\x00\x00\x03"  # body length 3
    b"\x00\x01\x00\x00"  # response window 65536
    b"\x00\x05"  # client port
    b"\x00\x50"  # server port 80
    b"\x00\x01"  # N = 1 header
    b"\x00\x18"  # T = 24
    b"\x00\x04"  # S = 4
    b"\x00\x00\x00\x02"  # P = 2
    b"\x00\x00\x00\x03"  # Q = 3
    b"\x00\x00\x00\x06"  # H = 6
    b"GET\x001.1\x00http\x001.2.3.4\x00::1"
    b"/app"
    b"/p"
    b"q=1"
    b"Host\x00h"
    b"abc"
)

CHUNKED_REQUEST = Request(
    stream_id=0x01020304,
    method="POST",
    path=b"/up",
    query=b"",
    http_version="1.1",
    headers=[(b"Expect", b"100-continue")],
    client=None,
    server=None,
    scheme="http",
    script_name="",
    body_length=-1,
    expect_continue=True,
    body=b"",
    body_end=False,
    response_window=0,
)
CHUNKED_REQUEST_BYTES = (
    b"\x00\x00\x00\x47"  # payload length 71
    b"\x10\x01"  # REQUEST, EXPECT_CONTINUE
    b"\x01\x02\x03\x04"
    b"\xff\xff\xff\xff\xff\xff\xff\xff"  # body length -1: chunked
    b"\x00\x00\x00\x00"  # response window 0
    b"\x00\x00\x00\x00"  # no client, no server: ports 0
    b"\x00\x01\x00\x0f\x00\x00"  # N = 1, T = 15, S = 0
    b"\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x13"  # P = 3, Q = 0, H = 19
    b"POST\x001.1\x00http\x00\x00"
    b"/up"
    b"Expect\x00100-continue"
)

EXACT: list[tuple[str, Frame, bytes]] = [
    (
        "hello",
        Hello(pid=4242, generation=3, threads=8, request_window=65536, group="web"),
        b"\x00\x00\x00\x1b\x01\x00\x00\x00\x00\x00"
        b"AWSG\x00\x02\x00\x08\x00\x00\x10\x92\x00\x01\x00\x00"
        b"\x00\x00\x00\x00\x00\x00\x00\x03web",
    ),
    (
        "ping",
        Ping(0x0102030405060708),
        b"\x00\x00\x00\x08\x02\x00\x00\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08",
    ),
    (
        "pong",
        Pong(0x0102030405060708),
        b"\x00\x00\x00\x08\x03\x00\x00\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08",
    ),
    ("drain", Drain(), b"\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00"),
    ("retire", Retire(RetireReason.SIGNAL), b"\x00\x00\x00\x01\x05\x00\x00\x00\x00\x00\x01"),
    ("request", FULL_REQUEST, FULL_REQUEST_BYTES),
    ("request-chunked-expect", CHUNKED_REQUEST, CHUNKED_REQUEST_BYTES),
    (
        "request-minimal",
        Request(
            2, "GET", b"/", b"", "1.1", [], None, None, "http", "", 0, False, b"", True, 262144
        ),
        b"\x00\x00\x00\x31\x10\x02\x00\x00\x00\x02"
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00"
        b"\x00\x00\x00\x0e\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00"
        b"GET\x001.1\x00http\x00\x00/",
    ),
    ("body", Body(3, b"xyz"), b"\x00\x00\x00\x03\x11\x00\x00\x00\x00\x03xyz"),
    ("body-end", BodyEnd(3), b"\x00\x00\x00\x00\x12\x00\x00\x00\x00\x03"),
    (
        "body-error",
        BodyError(3, BodyErrorReason.TOO_LARGE, "over 10 bytes"),
        b"\x00\x00\x00\x0e\x13\x00\x00\x00\x00\x03\x03over 10 bytes",
    ),
    ("cancel", Cancel(3), b"\x00\x00\x00\x00\x14\x00\x00\x00\x00\x03"),
    (
        "response-head-final",
        ResponseHead(1, "200 OK", [("Content-Type", "text/plain")], b"hi", final=True),
        b"\x00\x00\x00\x2e\x20\x01\x00\x00\x00\x01"
        b"\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x1e\x00\x01"
        b"200 OK\x00Content-Type\x00text/plain"
        b"hi",
    ),
    (
        "response-head-streamed",
        ResponseHead(2, "206 Partial Content", [], b"", final=False, body_length=1000),
        b"\x00\x00\x00\x21\x20\x00\x00\x00\x00\x02"
        b"\x00\x00\x00\x00\x00\x00\x03\xe8\x00\x00\x00\x13\x00\x00"
        b"206 Partial Content",
    ),
    (
        "response-head-server-error",
        ResponseHead(5, "413 X", [], b"", final=True, server_error=True),
        b"\x00\x00\x00\x13\x20\x03\x00\x00\x00\x05"
        b"\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x05\x00\x00"
        b"413 X",
    ),
    ("response-body", ResponseBody(1, b"chunk"), b"\x00\x00\x00\x05\x21\x00\x00\x00\x00\x01chunk"),
    ("response-end", ResponseEnd(1), b"\x00\x00\x00\x00\x22\x00\x00\x00\x00\x01"),
    (
        "response-abort",
        ResponseAbort(1, AbortReason.APP_ERROR),
        b"\x00\x00\x00\x01\x23\x00\x00\x00\x00\x01\x01",
    ),
    ("window", Window(7, 65536), b"\x00\x00\x00\x04\x30\x00\x00\x00\x00\x07\x00\x01\x00\x00"),
]
EXACT_IDS = [name for name, _, _ in EXACT]
BY_NAME = {name: (frame, data) for name, frame, data in EXACT}
RESPONSE, RESPONSE_BYTES = BY_NAME["response-head-final"]


def test_every_frame_type_has_an_exact_bytes_case() -> None:
    assert {frame.TYPE for _, frame, _ in EXACT} == set(FrameType)


def test_docstring_table_lists_every_frame_type() -> None:
    doc = wire.__doc__ or ""
    for frame_type in FrameType:
        assert f"0x{frame_type.value:02x}   {frame_type.name} " in doc, frame_type


@pytest.mark.parametrize(("name", "frame", "data"), EXACT, ids=EXACT_IDS)
def test_exact_bytes(name: str, frame: Frame, data: bytes) -> None:
    assert frame.encode() == data
    assert data[4] == frame.TYPE
    assert int.from_bytes(data[:4], "big") == len(data) - wire.HEADER_SIZE


@pytest.mark.parametrize(("name", "frame", "data"), EXACT, ids=EXACT_IDS)
def test_exact_bytes_decode(name: str, frame: Frame, data: bytes) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(data) == [frame]
    assert decoder.buffered == 0


def test_encode_functions_match_the_dataclasses() -> None:
    assert wire.encode_drain() == Drain().encode()
    assert wire.encode_body_header(3, 3) + b"xyz" == wire.encode_body(3, b"xyz")
    assert wire.encode_response_body_header(1, 5) + b"chunk" == ResponseBody(1, b"chunk").encode()
    assert (
        wire.encode_request(
            1,
            method="GET",
            path=b"/p",
            query=b"q=1",
            headers=[(b"Host", b"h")],
            client=("1.2.3.4", 5),
            server=("::1", 80),
            script_name="/app",
            body_length=3,
            body=b"abc",
            body_end=True,
            response_window=0x10000,
        )
        == FULL_REQUEST_BYTES
    )
    assert (
        wire.encode_response_head(1, "200 OK", [("Content-Type", "text/plain")], b"hi", final=True)
        == RESPONSE_BYTES
    )


def test_request_without_body_always_ends_the_body() -> None:
    data = wire.encode_request(9, method="GET", path=b"/", body_length=0, body_end=False)
    (frame,) = FrameDecoder().feed(data)
    assert isinstance(frame, Request)
    assert frame.body_end is True
    assert frame.body == b""


def test_request_fields_match_the_exchange_protocol() -> None:
    # The daemon hands these straight to the WSGI bridge as an Exchange's request side,
    # the fields of the request core's RequestHead.
    request_side = set(RequestHead.__slots__)
    assert request_side == {
        "method", "path", "query", "http_version", "headers", "client", "server", "scheme",
        "script_name",
    }  # fmt: skip
    assert request_side <= set(Request.__dataclass_fields__)
    (frame,) = FrameDecoder().feed(FULL_REQUEST_BYTES)
    assert isinstance(frame, Request)
    assert (frame.method, frame.path, frame.query, frame.http_version) == (
        "GET",
        b"/p",
        b"q=1",
        "1.1",
    )
    assert frame.headers == [(b"Host", b"h")]
    assert frame.client == ("1.2.3.4", 5)
    assert frame.server == ("::1", 80)
    assert frame.scheme == "http"


def test_non_ascii_texts() -> None:
    frames: list[Frame] = [
        Hello(1, 2, 3, 4, group="grüppe ☃"),
        Request(
            stream_id=4,
            method="GET",
            path=b"/\xff%20",
            query=b"x=\xe9",
            http_version="1.0",
            headers=[(b"X-L1", b"caf\xe9")],
            client=("h\xe9", 1),
            server=None,
            scheme="https",
            script_name="/mount/\u2603\udcff",
            body_length=-1,
            expect_continue=False,
            body=b"\x00\x01",
            body_end=False,
            response_window=7,
        ),
        ResponseHead(4, "200 Ça va", [("X-Name", "é\xff")], b"", final=True),
        BodyError(4, BodyErrorReason.MALFORMED, "bad chunk ☹"),
    ]
    data = b"".join(frame.encode() for frame in frames)
    assert FrameDecoder().feed(data) == frames


# --------------------------------------------------------------------------------------
# Splitting and joining
# --------------------------------------------------------------------------------------

ALL_FRAMES = [frame for _, frame, _ in EXACT]
ALL_BYTES = b"".join(data for _, _, data in EXACT)


def test_many_frames_in_one_feed() -> None:
    assert FrameDecoder().feed(ALL_BYTES) == ALL_FRAMES


def test_every_split_point() -> None:
    for split in range(len(ALL_BYTES) + 1):
        decoder = FrameDecoder()
        frames = decoder.feed(ALL_BYTES[:split])
        frames += decoder.feed(ALL_BYTES[split:])
        assert frames == ALL_FRAMES, split
        assert decoder.buffered == 0


def test_every_pair_of_split_points_around_the_hot_frames() -> None:
    data = FULL_REQUEST_BYTES + RESPONSE_BYTES
    expected = [FULL_REQUEST, RESPONSE]
    for first in range(len(data) + 1):
        for second in range(first, len(data) + 1):
            decoder = FrameDecoder()
            frames = decoder.feed(data[:first])
            frames += decoder.feed(data[first:second])
            frames += decoder.feed(data[second:])
            assert frames == expected, (first, second)


def test_one_byte_at_a_time() -> None:
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for i in range(len(ALL_BYTES)):
        frames += decoder.feed(ALL_BYTES[i : i + 1])
        assert (decoder.buffered == 0) == _ends_a_frame(i + 1), i
    assert frames == ALL_FRAMES
    assert decoder.buffered == 0


def _ends_a_frame(offset: int) -> bool:
    total = 0
    for _, _, data in EXACT:
        total += len(data)
        if total == offset:
            return True
    return False


def test_partial_frame_is_held_and_reported() -> None:
    decoder = FrameDecoder()
    data = wire.encode_body(1, b"x" * 100)
    assert decoder.feed(data[:5]) == []
    assert decoder.buffered == 5
    assert decoder.feed(data[5:50]) == []
    assert decoder.buffered == 50
    assert decoder.feed(data[50:] + data[:3]) == [Body(1, b"x" * 100)]
    assert decoder.buffered == 3


def test_large_frame_in_small_pieces() -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB
    data = wire.encode_response_body(5, payload) + wire.encode_response_end(5)
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for i in range(0, len(data), 1000):
        frames += decoder.feed(data[i : i + 1000])
    assert frames == [ResponseBody(5, payload), ResponseEnd(5)]


def test_accepts_bytearray_and_memoryview() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(bytearray(ALL_BYTES[:7])) == []
    assert decoder.feed(memoryview(ALL_BYTES)[7:]) == ALL_FRAMES


def test_empty_feed() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(ALL_BYTES[:3]) == []
    assert decoder.feed(b"") == []
    assert decoder.buffered == 3


def test_frame_of_exactly_the_maximum_size() -> None:
    decoder = FrameDecoder(max_frame_size=16)
    assert decoder.feed(wire.encode_body(1, b"a" * 16)) == [Body(1, b"a" * 16)]


# --------------------------------------------------------------------------------------
# Protocol errors
# --------------------------------------------------------------------------------------


def test_protocol_error_is_an_asyncwsgi_error() -> None:
    assert issubclass(ProtocolError, AsyncWSGIError)


def test_oversized_frame_rejected_from_its_header_alone() -> None:
    decoder = FrameDecoder(max_frame_size=16)
    data = wire.encode_body(1, b"a" * 17)
    with pytest.raises(ProtocolError, match="17 bytes is over the 16-byte limit"):
        decoder.feed(data[: wire.HEADER_SIZE])


def test_default_maximum() -> None:
    header = wire.encode_body_header(1, DEFAULT_MAX_FRAME_SIZE + 1)
    with pytest.raises(ProtocolError, match="over the"):
        FrameDecoder().feed(header)
    assert FrameDecoder().feed(wire.encode_body_header(1, DEFAULT_MAX_FRAME_SIZE)) == []


def test_http_instead_of_frames() -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_unknown_frame_type() -> None:
    with pytest.raises(ProtocolError, match="unknown frame type 0x7f"):
        FrameDecoder().feed(b"\x00\x00\x00\x00\x7f\x00\x00\x00\x00\x01")


def test_unknown_type_rejected_before_its_payload_arrives() -> None:
    with pytest.raises(ProtocolError, match="unknown frame type 0x06"):
        FrameDecoder().feed(b"\x00\x00\x00\x10\x06\x00\x00\x00\x00\x00")


def test_decoder_refuses_input_after_an_error() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(b"\x00\x00\x00\x00\x7f\x00\x00\x00\x00\x01")
    with pytest.raises(ProtocolError, match="already failed"):
        decoder.feed(ALL_BYTES)


@pytest.mark.parametrize(
    ("sent_by", "frame"),
    [
        (Side.DAEMON, FULL_REQUEST),
        (Side.DAEMON, Body(1, b"x")),
        (Side.DAEMON, Cancel(1)),
        (Side.DAEMON, Drain()),
        (Side.FRONT, Hello(1, 1, 1, 1)),
        (Side.FRONT, ResponseHead(1, "200 OK", [], b"", final=True)),
        (Side.FRONT, ResponseEnd(1)),
        (Side.FRONT, Retire(RetireReason.SIGNAL)),
        (Side.DAEMON, Ping(1)),
        (Side.FRONT, Pong(1)),
    ],
    ids=lambda v: v.name if isinstance(v, Side) else type(v).__name__,
)
def test_frames_from_the_wrong_side(sent_by: Side, frame: Frame) -> None:
    with pytest.raises(ProtocolError, match=f"never sent by the {sent_by.value}"):
        FrameDecoder(sent_by=sent_by).feed(frame.encode())


def test_frames_from_the_right_side() -> None:
    either = (Window,)
    front_only = (Request, Body, BodyEnd, BodyError, Cancel, Drain, Ping)
    front_frames = [f for f in ALL_FRAMES if isinstance(f, (*front_only, *either))]
    daemon_frames = [f for f in ALL_FRAMES if not isinstance(f, front_only)]
    assert len(front_frames) + len(daemon_frames) == len(ALL_FRAMES) + 1
    data = b"".join(f.encode() for f in front_frames)
    assert FrameDecoder(sent_by=Side.FRONT).feed(data) == front_frames
    data = b"".join(f.encode() for f in daemon_frames)
    assert FrameDecoder(sent_by=Side.DAEMON).feed(data) == daemon_frames


def _frame(frame_type: int, payload: bytes, *, flags: int = 0, stream: int = 1) -> bytes:
    return (
        len(payload).to_bytes(4, "big")
        + bytes([frame_type, flags])
        + stream.to_bytes(4, "big")
        + payload
    )


def _request_payload(
    *,
    body_length: int = 0,
    counts: tuple[int, int, int, int, int, int] | None = None,
    texts: bytes = b"GET\x001.1\x00http\x00\x00",
    script: bytes = b"",
    path: bytes = b"/",
    block: bytes = b"",
    headers: int = 0,
    ports: tuple[int, int] = (0, 0),
    body: bytes = b"",
) -> bytes:
    lengths = counts or (headers, len(texts), len(script), len(path), 0, len(block))
    n, t, s, p, q, h = lengths
    return (
        body_length.to_bytes(8, "big", signed=True)
        + (1000).to_bytes(4, "big")
        + ports[0].to_bytes(2, "big")
        + ports[1].to_bytes(2, "big")
        + n.to_bytes(2, "big")
        + t.to_bytes(2, "big")
        + s.to_bytes(2, "big")
        + p.to_bytes(4, "big")
        + q.to_bytes(4, "big")
        + h.to_bytes(4, "big")
        + texts
        + script
        + path
        + block
        + body
    )


def test_request_helper_builds_a_valid_frame() -> None:
    (frame,) = FrameDecoder().feed(_frame(0x10, _request_payload(), flags=0x02))
    assert isinstance(frame, Request)
    assert (frame.method, frame.path, frame.headers, frame.body_end) == ("GET", b"/", [], True)


MALFORMED = [
    # connection frames off stream 0, stream frames on stream 0
    ("ping on a stream", _frame(0x02, b"\x00" * 8, stream=1), "belongs on stream 0"),
    ("drain on a stream", _frame(0x04, b"", stream=9), "belongs on stream 0"),
    ("body on stream 0", _frame(0x11, b"x", stream=0), "needs a stream id"),
    ("request on stream 0", _frame(0x10, _request_payload(), flags=2, stream=0), "stream id"),
    ("window on stream 0", _frame(0x30, b"\x00\x00\x00\x01", stream=0), "needs a stream id"),
    # undefined flags
    ("flags on body", _frame(0x11, b"x", flags=0x01), "undefined flags 0x01"),
    ("flags on ping", _frame(0x02, b"\x00" * 8, flags=0x80, stream=0), "undefined flags"),
    ("request flag 0x10", _frame(0x10, _request_payload(), flags=0x12), "undefined flags"),
    ("response flag 0x04", _frame(0x20, b"\xff" * 8 + b"\x00" * 6, flags=4), "undefined flags"),
    # wrong sizes
    ("short ping", _frame(0x02, b"\x00" * 7, stream=0), "must be 8"),
    ("long pong", _frame(0x03, b"\x00" * 9, stream=0), "must be 8"),
    ("drain payload", _frame(0x04, b"x", stream=0), "must be 0"),
    ("body-end payload", _frame(0x12, b"x"), "must be 0"),
    ("cancel payload", _frame(0x14, b"x"), "must be 0"),
    ("response-end payload", _frame(0x22, b"x"), "must be 0"),
    ("short window", _frame(0x30, b"\x00\x00\x01"), "must be 4"),
    ("empty abort", _frame(0x23, b""), "must be 1"),
    ("retire 2 bytes", _frame(0x05, b"\x01\x01", stream=0), "must be 1"),
    ("body-error empty", _frame(0x13, b""), "without a reason"),
    # bad values
    ("zero window", _frame(0x30, b"\x00\x00\x00\x00"), "zero increment"),
    ("abort reason 0", _frame(0x23, b"\x00"), "unknown reason 0"),
    ("abort reason 9", _frame(0x23, b"\x09"), "unknown reason 9"),
    ("body-error reason", _frame(0x13, b"\x63oops"), "unknown reason 99"),
    ("retire reason", _frame(0x05, b"\xff", stream=0), "unknown reason 255"),
    # HELLO
    ("short hello", _frame(0x01, b"AWSG\x00\x02", stream=0), "needs 24"),
    ("bad magic", _frame(0x01, b"HTTP" + b"\x00\x01" + b"\x00" * 18, stream=0), "magic"),
    ("version 3", _frame(0x01, b"AWSG\x00\x03" + b"\x00" * 18, stream=0), "version 3"),
    ("short version 3", _frame(0x01, b"AWSG\x00\x03", stream=0), "version 3"),
    ("hello too short for magic", _frame(0x01, b"AWS", stream=0), "needs 24"),
    ("hello group", _frame(0x01, b"AWSG\x00\x02" + b"\x00" * 18 + b"\xff", stream=0), "UTF-8"),
    # REQUEST
    ("short request", _frame(0x10, b"\x00" * 33, flags=2), "needs 34"),
    (
        "request fields past the end",
        _frame(0x10, _request_payload(counts=(0, 14, 0, 2, 0, 0)), flags=2),
        "past the end",
    ),
    (
        "request with 4 texts",
        _frame(0x10, _request_payload(texts=b"GET\x001.1\x00http\x00"), flags=2),
        "4 texts",
    ),
    (
        "request header count",
        _frame(0x10, _request_payload(block=b"a\x00b\x00c\x00d", headers=1), flags=2),
        "4 fields; 1 headers need 2",
    ),
    (
        "request header block without headers",
        _frame(0x10, _request_payload(block=b"a\x00b", headers=0), flags=2),
        "no headers",
    ),
    (
        "request body length -2",
        _frame(0x10, _request_payload(body_length=-2), flags=2),
        "body length -2",
    ),
    (
        "no body without BODY_END",
        _frame(0x10, _request_payload(body_length=0), flags=0),
        "must have BODY_END",
    ),
    (
        "empty body with bytes",
        _frame(0x10, _request_payload(body_length=0, body=b"x"), flags=2),
        "1 body bytes of a 0-byte body",
    ),
    (
        "inline body longer than the body",
        _frame(0x10, _request_payload(body_length=2, body=b"xyz"), flags=0),
        "3 body bytes of a 2-byte body",
    ),
    (
        "BODY_END before the body is all there",
        _frame(0x10, _request_payload(body_length=5, body=b"xyz"), flags=2),
        "says that is all",
    ),
    (
        "expect-continue with body bytes",
        _frame(0x10, _request_payload(body_length=-1, body=b"x"), flags=1),
        "EXPECT_CONTINUE carries body",
    ),
    (
        "client host without HAS_CLIENT",
        _frame(0x10, _request_payload(texts=b"GET\x001.1\x00http\x00c\x00"), flags=2),
        "without HAS_CLIENT",
    ),
    (
        "server port without HAS_SERVER",
        _frame(0x10, _request_payload(ports=(0, 80)), flags=2),
        "without HAS_SERVER",
    ),
    (
        "script name not UTF-8",
        _frame(0x10, _request_payload(script=b"/\xc3("), flags=2),
        "SCRIPT_NAME is not UTF-8",
    ),
    # RESPONSE_HEAD
    ("short response head", _frame(0x20, b"\xff" * 8 + b"\x00" * 5, flags=1), "needs 14"),
    (
        "response texts past the end",
        _frame(0x20, b"\xff" * 8 + b"\x00\x00\x00\x07\x00\x00" + b"200 OK", flags=1),
        "past the end",
    ),
    (
        "response header count",
        _frame(0x20, b"\xff" * 8 + b"\x00\x00\x00\x08\x00\x01" + b"200 OK\x00a", flags=1),
        "2 texts; a status and 1 headers need 3",
    ),
    (
        "response body length -2",
        _frame(0x20, b"\xff" * 7 + b"\xfe" + b"\x00\x00\x00\x06\x00\x00" + b"200 OK", flags=1),
        "body length -2",
    ),
]


@pytest.mark.parametrize(("name", "data", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_frames(name: str, data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        FrameDecoder().feed(data)


def test_malformed_frame_after_good_ones_still_fails() -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(ALL_BYTES + _frame(0x30, b"\x00\x00\x00\x00"))


def test_lengths_never_read_into_the_next_frame() -> None:
    # A REQUEST whose fixed part is cut short is followed by bytes that would complete
    # it; the decoder must judge the frame by its own length alone.
    short = _frame(0x10, b"\x00" * 20, flags=2)
    with pytest.raises(ProtocolError, match="needs 34"):
        FrameDecoder().feed(short + b"\x00" * 100)


# --------------------------------------------------------------------------------------
# Encoder validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        lambda: wire.encode_body(0, b"x"),
        lambda: wire.encode_body_end(0),
        lambda: wire.encode_body_error(0, BodyErrorReason.DISCONNECTED),
        lambda: wire.encode_cancel(0),
        lambda: wire.encode_request(0, method="GET", path=b"/"),
        lambda: wire.encode_response_head(0, "200 OK", [], final=True),
        lambda: wire.encode_response_body(0, b"x"),
        lambda: wire.encode_response_end(0),
        lambda: wire.encode_response_abort(0, AbortReason.REFUSED),
        lambda: wire.encode_window(0, 1),
        lambda: wire.encode_window(U32 + 1, 1),
        lambda: wire.encode_response_end(-1),
    ],
)
def test_stream_frames_need_a_stream_id(encode: object) -> None:
    assert callable(encode)
    with pytest.raises(ValueError, match=r"stream id|out of range"):
        encode()


@pytest.mark.parametrize(
    ("encode", "message"),
    [
        (lambda: wire.encode_window(1, 0), "at least 1"),
        (lambda: wire.encode_window(1, U32 + 1), "out of range"),
        (lambda: wire.encode_ping(-1), "out of range"),
        (lambda: wire.encode_pong(1 << 64), "out of range"),
        (lambda: wire.encode_hello(pid=1, generation=1, threads=70000, request_window=1), "range"),
        (
            lambda: wire.encode_request(1, method="GET", path=b"/", headers=[(b"A\x00", b"b")]),
            "NUL in a request header",
        ),
        (
            lambda: wire.encode_request(1, method="GET", path=b"/", headers=[(b"A", b"b\x00c")]),
            "NUL in a request header",
        ),
        (
            lambda: wire.encode_request(1, method="GET", path=b"/", client=("a\x00b", 1)),
            "NUL in the method",
        ),
        (lambda: wire.encode_request(1, method="GET", path=b"/", client=("a", 70000)), "range"),
        (lambda: wire.encode_request(1, method="GET", path=b"/", body_length=-5), "range|-5"),
        (lambda: wire.encode_request(1, method="GÉT☃", path=b"/"), "latin-1"),
        (
            lambda: wire.encode_response_head(1, "200 OK", [("X", "a\x00b")], final=True),
            "NUL in the status or a response header",
        ),
        (
            lambda: wire.encode_response_head(1, "200\x00OK", [], final=True),
            "NUL in the status",
        ),
        (lambda: wire.encode_response_head(1, "200 OK", [("X", "☃")], final=True), "latin-1"),
        (
            lambda: wire.encode_response_head(1, "200 OK", [], final=False, body_length=-2),
            "range|-2",
        ),
    ],
)
def test_encoders_refuse_what_the_layout_cannot_carry(encode: object, message: str) -> None:
    assert callable(encode)
    with pytest.raises(ValueError, match=message):
        encode()


def test_decoder_options_are_checked() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=-1)
    with pytest.raises(TypeError):
        FrameDecoder(1 << 20)  # type: ignore[call-arg]


def test_wire_package_stays_sans_io() -> None:
    imported: set[str] = set()
    modules = sorted(Path(wire.__file__).parent.glob("*.py"))
    assert len(modules) > 1  # the package, not only its __init__
    nodes = [node for path in modules for node in ast.walk(ast.parse(path.read_text("utf-8")))]
    for node in nodes:
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "threading", "selectors", "trio", "anyio"}
    assert imported <= {
        "__future__", "enum", "struct", "collections", "dataclasses", "itertools", "typing",
        "asyncwsgi",
    }  # fmt: skip


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------

stream_ids = st.integers(1, U32)
u32s = st.integers(0, U32)
ports = st.integers(0, 0xFFFF)
# latin-1 text without NUL: what the texts blocks can carry
latin1 = st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=20)
tokens = st.binary(max_size=30).map(lambda b: b.replace(b"\x00", b"-"))
addresses = st.none() | st.tuples(latin1, ports)
# any str at all, lone surrogates included: SCRIPT_NAME is sent as UTF-8 "surrogatepass"
any_text = st.text(st.characters(exclude_categories=()), max_size=20)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    expect_continue = draw(st.booleans())
    body_length = draw(st.sampled_from([0, -1, 1]))
    if body_length == 1:
        body_length = draw(st.integers(1, 1 << 40))
    body = b""
    body_end = True
    if body_length == -1:
        body = b"" if expect_continue else draw(st.binary(max_size=200))
        body_end = draw(st.booleans())
    elif body_length > 0:
        if expect_continue:
            body_end = False
        elif body_length <= 200 and draw(st.booleans()):
            body = draw(st.binary(min_size=body_length, max_size=body_length))
        else:
            body = draw(st.binary(max_size=min(body_length - 1, 200)))
            body_end = False
    return Request(
        stream_id=draw(stream_ids),
        method=draw(latin1),
        path=draw(st.binary(max_size=100)),
        query=draw(st.binary(max_size=100)),
        http_version=draw(st.sampled_from(["1.0", "1.1"]) | latin1),
        headers=draw(st.lists(st.tuples(tokens, tokens), max_size=12)),
        client=draw(addresses),
        server=draw(addresses),
        scheme=draw(st.sampled_from(["http", "https"]) | latin1),
        script_name=draw(any_text),
        body_length=body_length,
        expect_continue=expect_continue,
        body=body,
        body_end=body_end,
        response_window=draw(u32s),
    )


response_heads = st.builds(
    ResponseHead,
    stream_id=stream_ids,
    status=latin1,
    headers=st.lists(st.tuples(latin1, latin1), max_size=12),
    body=st.binary(max_size=300),
    final=st.booleans(),
    body_length=st.integers(-1, (1 << 63) - 1),
    server_error=st.booleans(),
)

frames = st.one_of(
    st.builds(
        Hello,
        pid=u32s,
        generation=st.integers(0, (1 << 64) - 1),
        threads=ports,
        request_window=u32s,
        group=st.text(max_size=20),
    ),
    st.builds(Ping, st.integers(0, (1 << 64) - 1)),
    st.builds(Pong, st.integers(0, (1 << 64) - 1)),
    st.just(Drain()),
    st.builds(Retire, st.sampled_from(RetireReason)),
    requests(),
    st.builds(Body, stream_ids, st.binary(max_size=300)),
    st.builds(BodyEnd, stream_ids),
    st.builds(BodyError, stream_ids, st.sampled_from(BodyErrorReason), st.text(max_size=30)),
    st.builds(Cancel, stream_ids),
    response_heads,
    st.builds(ResponseBody, stream_ids, st.binary(max_size=300)),
    st.builds(ResponseEnd, stream_ids),
    st.builds(ResponseAbort, stream_ids, st.sampled_from(AbortReason)),
    st.builds(Window, stream_ids, st.integers(1, U32)),
)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    last = 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


@PROPERTY
@given(st.lists(frames, min_size=1, max_size=8), st.lists(st.integers(0, 1 << 16), max_size=20))
def test_any_frames_survive_any_chunking(sequence: list[Frame], cuts: list[int]) -> None:
    data = b"".join(frame.encode() for frame in sequence)
    decoder = FrameDecoder()
    decoded: list[Frame] = []
    for piece in _chunked(data, cuts):
        decoded += decoder.feed(piece)
    assert decoded == sequence
    assert decoder.buffered == 0


@PROPERTY
@given(requests(), response_heads, st.lists(st.integers(0, 1 << 16), max_size=10))
def test_request_and_response_round_trip(
    request: Request, head: ResponseHead, cuts: list[int]
) -> None:
    data = request.encode()
    assert data == wire.encode_request(
        request.stream_id,
        method=request.method,
        path=request.path,
        query=request.query,
        http_version=request.http_version,
        headers=request.headers,
        client=request.client,
        server=request.server,
        scheme=request.scheme,
        script_name=request.script_name,
        body_length=request.body_length,
        expect_continue=request.expect_continue,
        body=request.body,
        body_end=request.body_end,
        response_window=request.response_window,
    )
    daemon = FrameDecoder(sent_by=Side.FRONT)
    front = FrameDecoder(sent_by=Side.DAEMON)
    assert [f for piece in _chunked(data, cuts) for f in daemon.feed(piece)] == [request]
    data = head.encode()
    assert [f for piece in _chunked(data, cuts) for f in front.feed(piece)] == [head]


@PROPERTY
@given(st.binary(max_size=200), st.lists(st.integers(0, 1 << 16), max_size=10))
def test_garbage_never_escapes_as_another_exception(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_frame_size=4096)
    try:
        for piece in _chunked(data, cuts):
            for frame in decoder.feed(piece):
                # whatever decodes must encode back to a valid frame
                assert FrameDecoder().feed(frame.encode()) == [frame]
    except ProtocolError:
        pass


@PROPERTY
@given(frames, st.integers(0, 255), st.integers(0, 200))
def test_flipping_a_byte_gives_a_frame_or_a_protocol_error(
    frame: Frame, value: int, where: int
) -> None:
    data = bytearray(frame.encode())
    data[where % len(data)] = value
    try:
        FrameDecoder(max_frame_size=1 << 16).feed(bytes(data))
    except ProtocolError:
        pass
