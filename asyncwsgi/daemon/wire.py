"""The front<->daemon wire protocol: frames to bytes and bytes to frames.

Rule: nothing here imports asyncio, threads or sockets, or touches a socket. The
``encode_*`` functions take values and return bytes; :class:`FrameDecoder` takes bytes in
whatever pieces they arrive and returns frames. The connection code on each side owns the
socket, the per-stream state and the flow-control bookkeeping; this module pins the bytes,
so it is tested with byte literals.

One UNIX-socket connection joins the front (the server's event loop, which parses HTTP)
and one daemon process (which runs the application). Many requests are in flight on it at
once, each a *stream* with a 32-bit id picked by the front.

Frame layout
============

Every frame is a 10-byte header and a payload. All integers are big-endian; ``i64`` is
signed, every other integer unsigned.

====== ==== ===== ===================================================================
offset size type  field
====== ==== ===== ===================================================================
0      4    u32   payload length in bytes (the header not included)
4      1    u8    frame type (table below); an unknown type is a ProtocolError
5      1    u8    flags; bits not defined for the type must be 0
6      4    u32   stream id: 0 on connection frames, 1..2**32-1 on stream frames
10     len  -     payload
====== ==== ===== ===================================================================

A receiver rejects a payload longer than its ``max_frame_size`` (default 1 MiB) as soon as
it has read the header. Senders split request and response bodies into frames no larger
than that; flow-control credit keeps them far smaller in practice.

====== ============== ======== ====== ===============================================
type   name           sent by  stream flags
====== ============== ======== ====== ===============================================
0x01   HELLO          daemon   0      -
0x02   PING           either   0      -
0x03   PONG           either   0      -
0x04   DRAIN          front    0      -
0x05   RETIRE         daemon   0      -
0x10   REQUEST        front    >= 1   0x01 EXPECT_CONTINUE, 0x02 BODY_END,
                                      0x04 HAS_CLIENT, 0x08 HAS_SERVER
0x11   BODY           front    >= 1   -
0x12   BODY_END       front    >= 1   -
0x13   BODY_ERROR     front    >= 1   -
0x14   CANCEL         front    >= 1   -
0x20   RESPONSE_HEAD  daemon   >= 1   0x01 FINAL, 0x02 SERVER_ERROR
0x21   RESPONSE_BODY  daemon   >= 1   -
0x22   RESPONSE_END   daemon   >= 1   -
0x23   RESPONSE_ABORT daemon   >= 1   -
0x30   WINDOW         either   >= 1   -
====== ============== ======== ====== ===============================================

Payloads (offsets from the start of the payload; "rest" runs to the end of the payload):

HELLO (24 bytes + group) -- the daemon's READY, sent once, only after the application has
been imported, and before anything else::

    0   4  bytes  magic b"AWSG" (a peer that is not an asyncwsgi daemon fails here)
    4   2  u16    protocol version, 1; any other is a ProtocolError (these first six bytes
                  keep their meaning in every version)
    6   2  u16    threads: requests the daemon runs at once; the front sends no more
                  REQUESTs than that unanswered, and queues the rest itself, so every
                  REQUEST a daemon gets goes straight to a thread
    8   4  u32    pid
    12  4  u32    request window: body bytes the front may send on a new stream before
                  any WINDOW (streams with EXPECT_CONTINUE start at 0 instead)
    16  8  u64    generation, as the pool manager gave it at spawn
    24  rest      process group name, UTF-8

PING, PONG (8 bytes): ``u64`` opaque; PONG echoes the PING's value.

DRAIN (empty): the front sends no further REQUEST; the daemon finishes its open streams
and then exits with status 0.

RETIRE (1 byte): ``u8`` reason (:class:`RetireReason`). The daemon asks to be replaced
(SIGUSR1, a changed module, ...); the front starts a replacement, waits for its HELLO,
then sends DRAIN. The daemon keeps serving until then.

REQUEST (34 bytes + fields) -- the request head, and the first body bytes when the front
already has them::

    0   8  i64    body length: 0 no body, n > 0 Content-Length n, -1 chunked (unknown)
    8   4  u32    response window: response body bytes the daemon may send on this
                  stream before any WINDOW
    12  2  u16    client port (0 without HAS_CLIENT)
    14  2  u16    server port (0 without HAS_SERVER)
    16  2  u16    N, the number of header fields
    18  2  u16    T, length of the texts
    20  2  u16    S, length of the SCRIPT_NAME
    22  4  u32    P, length of the raw path
    26  4  u32    Q, length of the raw query (without "?")
    30  4  u32    H, length of the header block
    34  T         texts, latin-1: METHOD NUL VERSION NUL SCHEME NUL CLIENT_HOST NUL
                  SERVER_HOST (e.g. "GET\\x001.1\\x00http\\x00127.0.0.1\\x00"; a host is
                  empty when its HAS_ flag is clear)
    .   S         SCRIPT_NAME, UTF-8
    .   P         raw path, as received
    .   Q         raw query, as received
    .   H         header block: the 2N names and values, in order, joined by NUL
                  ("Host\\x00a\\x00Accept\\x00*/*"; empty when N is 0)
    .   rest      inline body: the first body bytes (counted against the request
                  window). With BODY_END they are the whole body and no BODY, BODY_END
                  or BODY_ERROR follows; BODY_END is always set when the body length is
                  0, and the inline body is empty under EXPECT_CONTINUE.

BODY (any length): request body bytes, within the credit the daemon granted.

BODY_END (empty): the request body is complete.

BODY_ERROR (1 byte + detail): ``u8`` reason (:class:`BodyErrorReason`) then a UTF-8 detail
for the log. The body will not complete; the application's next read raises.

CANCEL (empty): the client is gone. The application's next read or write raises
``ClientDisconnected``; the daemon still ends the stream (usually RESPONSE_ABORT
CANCELLED) once the application returns, so the front knows the thread is free.

RESPONSE_HEAD (14 bytes + fields)::

    0   8  i64    body length: the whole body's length when the daemon knows it before
                  sending it (a file_wrapper's size), else -1; the front turns it into a
                  Content-Length when the application gave none
    8   4  u32    T, length of the texts
    12  2  u16    N, the number of header fields
    14  T         texts, latin-1: STATUS NUL NAME1 NUL VALUE1 ... NUL NAMEN NUL VALUEN
                  ("200 OK\\x00Content-Type\\x00text/plain")
    .   rest      inline body, counted against the response window. With FINAL the
                  response ends after it (the common one-chunk response is this single
                  frame); without FINAL, RESPONSE_BODY frames and RESPONSE_END follow.

    SERVER_ERROR marks a response the daemon made itself (``send_error``), not one the
    application made; the front may answer the request body's 4xx in its place.

RESPONSE_BODY (any length): response body bytes, within the credit the front granted.

RESPONSE_END (empty): the response is complete.

RESPONSE_ABORT (1 byte): ``u8`` reason (:class:`AbortReason`). The response cannot be
completed: the front closes the client connection (or answers 502 if nothing was sent,
or retries elsewhere for REFUSED, which promises the application never saw the request).

WINDOW (4 bytes): ``u32`` increment, at least 1. From the daemon it grants request body
credit; from the front it grants response body credit.

Streams and flow control
========================

- A stream opens with REQUEST and ends with the daemon's RESPONSE_END, RESPONSE_ABORT or
  FINAL RESPONSE_HEAD, the last frame the daemon sends on it. The front may reuse the id
  only after that (ids counting up from 1 and wrapping never meet an open stream).
  Frames for a stream the receiver does not consider open are stale (sent before the
  sender learned the stream had ended) and are dropped; the socket's ordering makes that
  safe even when an id is reused.
- Request body: the front sends body bytes only within credit: the HELLO's request window
  per new stream (0 with EXPECT_CONTINUE) plus the daemon's WINDOW increments. The daemon
  grants credit as the application reads, so a body nobody reads is never shipped. The
  first WINDOW on an EXPECT_CONTINUE stream is also the front's cue to send
  ``100 Continue``: it happens exactly when the application first reads the body.
- Response body: the inline body of RESPONSE_HEAD and every RESPONSE_BODY use the
  stream's response credit: the REQUEST's response window plus the front's WINDOW
  increments, sent as the client drains. A worker writing to a slow client blocks in the
  daemon instead of the front buffering without bound. Status and headers take no credit.

Choices
=======

- Not pickle: a daemon runs application code, and unpickling what it sends would let
  that code run in the front, which holds the listening sockets. Not JSON: it cannot
  carry raw bytes (paths, header values, bodies) without a re-encoding. Instead the two
  hot frames (REQUEST, RESPONSE_HEAD) are one ``struct.pack`` and one ``bytes.join`` to
  encode, and one ``unpack_from`` plus one ``split`` per text block to decode, with every
  length checked against the frame. NUL separates header fields (one C-level split instead
  of a length per field) because RFC 9110 bans NUL from field values and names are
  tokens; the encoders check, so a NUL can never shift the fields.
- No SENDFILE frame: a ``wsgi.file_wrapper`` response is a RESPONSE_HEAD with its body
  length, then RESPONSE_BODY frames. Passing the file descriptor (SCM_RIGHTS) would let
  the front sendfile, but it ties the front to files it did not open, cannot work under
  TLS, and the UNIX socket already copies at memory speed. A future version may add it.
- No STATS frame: the front opens and sees the end of every stream, so it knows each
  daemon's in-flight count better than a daemon could report it.
- Boot failures need no frame: a daemon that cannot import the application never sends
  HELLO and exits with a distinct status, which the pool manager reads.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import ClassVar, Final, TypeAlias, TypeVar

from asyncwsgi.errors import ProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_RESPONSE_WINDOW",
    "FLAG_BODY_END",
    "FLAG_EXPECT_CONTINUE",
    "FLAG_FINAL",
    "FLAG_HAS_CLIENT",
    "FLAG_HAS_SERVER",
    "FLAG_SERVER_ERROR",
    "HEADER_SIZE",
    "MAGIC",
    "PROTOCOL_VERSION",
    "AbortReason",
    "Body",
    "BodyEnd",
    "BodyError",
    "BodyErrorReason",
    "Cancel",
    "Drain",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "Hello",
    "Ping",
    "Pong",
    "Request",
    "ResponseAbort",
    "ResponseBody",
    "ResponseEnd",
    "ResponseHead",
    "Retire",
    "RetireReason",
    "Side",
    "Window",
    "encode_body",
    "encode_body_end",
    "encode_body_error",
    "encode_body_header",
    "encode_cancel",
    "encode_drain",
    "encode_hello",
    "encode_ping",
    "encode_pong",
    "encode_request",
    "encode_response_abort",
    "encode_response_body",
    "encode_response_body_header",
    "encode_response_end",
    "encode_response_head",
    "encode_retire",
    "encode_window",
]

PROTOCOL_VERSION: Final = 1
MAGIC: Final = b"AWSG"
HEADER_SIZE: Final = 10
DEFAULT_MAX_FRAME_SIZE: Final = 1 << 20
# Matches HttpLimits.write_buffer: as much response as the front would queue per connection.
DEFAULT_RESPONSE_WINDOW: Final = 256 * 1024
_U32_MAX: Final = 0xFFFFFFFF


class FrameType(enum.IntEnum):
    HELLO = 0x01
    PING = 0x02
    PONG = 0x03
    DRAIN = 0x04
    RETIRE = 0x05
    REQUEST = 0x10
    BODY = 0x11
    BODY_END = 0x12
    BODY_ERROR = 0x13
    CANCEL = 0x14
    RESPONSE_HEAD = 0x20
    RESPONSE_BODY = 0x21
    RESPONSE_END = 0x22
    RESPONSE_ABORT = 0x23
    WINDOW = 0x30


class Side(enum.Enum):
    """Which end of the connection sent a frame."""

    FRONT = "front"
    DAEMON = "daemon"


class BodyErrorReason(enum.IntEnum):
    """Why a request body will not complete (BODY_ERROR)."""

    DISCONNECTED = 1  # the client went away mid-body: reads raise ClientDisconnected
    MALFORMED = 2  # bad chunked framing: reads raise BadRequestBody, the front answers 400
    TOO_LARGE = 3  # over limit_request_body: RequestBodyTooLarge, the front answers 413
    TIMEOUT = 4  # the client stopped sending: reads raise ClientDisconnected


class AbortReason(enum.IntEnum):
    """Why a response ended without completing (RESPONSE_ABORT)."""

    APP_ERROR = 1  # the application failed after the head was sent
    CANCELLED = 2  # the application stopped after a CANCEL
    REFUSED = 3  # never handed to the application: safe to retry on another daemon
    SHUTDOWN = 4  # the daemon is stopping and gave up on the request


class RetireReason(enum.IntEnum):
    """Why a daemon asks to be replaced (RETIRE)."""

    SIGNAL = 1  # SIGUSR1 to the daemon process
    MODULES_CHANGED = 2  # reload_on_module_changes saw an imported module change
    MAX_REQUESTS = 3  # maximum_requests reached
    RESTART_INTERVAL = 4  # restart_interval elapsed


# Flag bits of REQUEST and RESPONSE_HEAD, the only frames that have any.
FLAG_EXPECT_CONTINUE: Final = 0x01
FLAG_BODY_END: Final = 0x02
FLAG_HAS_CLIENT: Final = 0x04
FLAG_HAS_SERVER: Final = 0x08
FLAG_FINAL: Final = 0x01
FLAG_SERVER_ERROR: Final = 0x02
_REQUEST_FLAGS: Final = FLAG_EXPECT_CONTINUE | FLAG_BODY_END | FLAG_HAS_CLIENT | FLAG_HAS_SERVER
_RESPONSE_FLAGS: Final = FLAG_FINAL | FLAG_SERVER_ERROR

# Frame types as plain ints for the struct calls on the hot path.
_HELLO: Final = 0x01
_PING: Final = 0x02
_PONG: Final = 0x03
_DRAIN: Final = 0x04
_RETIRE: Final = 0x05
_REQUEST: Final = 0x10
_BODY: Final = 0x11
_BODY_END: Final = 0x12
_BODY_ERROR: Final = 0x13
_CANCEL: Final = 0x14
_RESPONSE_HEAD: Final = 0x20
_RESPONSE_BODY: Final = 0x21
_RESPONSE_END: Final = 0x22
_RESPONSE_ABORT: Final = 0x23
_WINDOW: Final = 0x30

# Each encoder packs the frame header and the fixed part of its payload in one call.
_HEADER = struct.Struct(">IBBI")
_HELLO_PREFIX = struct.Struct(">4sH")
_HELLO_FIXED = struct.Struct(">4sHHIIQ")
_HELLO_FRAME = struct.Struct(">IBBI4sHHIIQ")
_U64 = struct.Struct(">Q")
_U64_FRAME = struct.Struct(">IBBIQ")
_U32 = struct.Struct(">I")
_U32_FRAME = struct.Struct(">IBBII")
_U8_FRAME = struct.Struct(">IBBIB")
_REQUEST_FIXED = struct.Struct(">qIHHHHHIII")
_REQUEST_FRAME = struct.Struct(">IBBIqIHHHHHIII")
_RESPONSE_FIXED = struct.Struct(">qIH")
_RESPONSE_FRAME = struct.Struct(">IBBIqIH")
_unpack_request = _REQUEST_FIXED.unpack_from
_unpack_response = _RESPONSE_FIXED.unpack_from
_HELLO_SIZE: Final = _HELLO_FIXED.size  # 24
_REQUEST_SIZE: Final = _REQUEST_FIXED.size  # 34
_RESPONSE_SIZE: Final = _RESPONSE_FIXED.size  # 14

_DRAIN_BYTES: Final = _HEADER.pack(0, _DRAIN, 0, 0)


# --------------------------------------------------------------------------------------
# Frames as values
# --------------------------------------------------------------------------------------
# Plain slotted dataclasses, not frozen ones: a frozen __init__ goes through
# object.__setattr__ per field, several times slower, and the decoder builds one per frame.
# Treat them as values all the same.


@dataclass(slots=True)
class Hello:
    """HELLO: the daemon is READY; its application is imported."""

    TYPE: ClassVar[FrameType] = FrameType.HELLO
    pid: int
    generation: int
    threads: int
    request_window: int
    group: str = ""

    def encode(self) -> bytes:
        return encode_hello(
            pid=self.pid,
            generation=self.generation,
            threads=self.threads,
            request_window=self.request_window,
            group=self.group,
        )


@dataclass(slots=True)
class Ping:
    TYPE: ClassVar[FrameType] = FrameType.PING
    value: int

    def encode(self) -> bytes:
        return encode_ping(self.value)


@dataclass(slots=True)
class Pong:
    TYPE: ClassVar[FrameType] = FrameType.PONG
    value: int

    def encode(self) -> bytes:
        return encode_pong(self.value)


@dataclass(slots=True)
class Drain:
    """DRAIN: no more requests are coming; finish the open streams and exit."""

    TYPE: ClassVar[FrameType] = FrameType.DRAIN

    def encode(self) -> bytes:
        return encode_drain()


@dataclass(slots=True)
class Retire:
    """RETIRE: the daemon asks the front to replace it."""

    TYPE: ClassVar[FrameType] = FrameType.RETIRE
    reason: RetireReason

    def encode(self) -> bytes:
        return encode_retire(self.reason)


@dataclass(slots=True)
class Request:
    """REQUEST: one request head. The attribute names and types match the request side of
    ``asyncwsgi.wsgi.types.Exchange``, so the daemon can hand these values straight on."""

    TYPE: ClassVar[FrameType] = FrameType.REQUEST
    stream_id: int
    method: str
    path: bytes
    query: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    client: tuple[str, int] | None
    server: tuple[str, int] | None
    scheme: str
    script_name: str
    body_length: int  # 0 none, n Content-Length, -1 chunked
    expect_continue: bool
    body: bytes  # inline body bytes
    body_end: bool  # ``body`` is the whole body
    response_window: int

    def encode(self) -> bytes:
        return encode_request(
            self.stream_id,
            method=self.method,
            path=self.path,
            query=self.query,
            http_version=self.http_version,
            headers=self.headers,
            client=self.client,
            server=self.server,
            scheme=self.scheme,
            script_name=self.script_name,
            body_length=self.body_length,
            expect_continue=self.expect_continue,
            body=self.body,
            body_end=self.body_end,
            response_window=self.response_window,
        )


@dataclass(slots=True)
class Body:
    TYPE: ClassVar[FrameType] = FrameType.BODY
    stream_id: int
    data: bytes

    def encode(self) -> bytes:
        return encode_body(self.stream_id, self.data)


@dataclass(slots=True)
class BodyEnd:
    TYPE: ClassVar[FrameType] = FrameType.BODY_END
    stream_id: int

    def encode(self) -> bytes:
        return encode_body_end(self.stream_id)


@dataclass(slots=True)
class BodyError:
    TYPE: ClassVar[FrameType] = FrameType.BODY_ERROR
    stream_id: int
    reason: BodyErrorReason
    detail: str = ""

    def encode(self) -> bytes:
        return encode_body_error(self.stream_id, self.reason, self.detail)


@dataclass(slots=True)
class Cancel:
    TYPE: ClassVar[FrameType] = FrameType.CANCEL
    stream_id: int

    def encode(self) -> bytes:
        return encode_cancel(self.stream_id)


@dataclass(slots=True)
class ResponseHead:
    """RESPONSE_HEAD: the arguments of ``Exchange.respond``, plus who made the response."""

    TYPE: ClassVar[FrameType] = FrameType.RESPONSE_HEAD
    stream_id: int
    status: str
    headers: list[tuple[str, str]]
    body: bytes
    final: bool
    body_length: int = -1
    server_error: bool = False

    def encode(self) -> bytes:
        return encode_response_head(
            self.stream_id,
            self.status,
            self.headers,
            self.body,
            final=self.final,
            body_length=self.body_length,
            server_error=self.server_error,
        )


@dataclass(slots=True)
class ResponseBody:
    TYPE: ClassVar[FrameType] = FrameType.RESPONSE_BODY
    stream_id: int
    data: bytes

    def encode(self) -> bytes:
        return encode_response_body(self.stream_id, self.data)


@dataclass(slots=True)
class ResponseEnd:
    TYPE: ClassVar[FrameType] = FrameType.RESPONSE_END
    stream_id: int

    def encode(self) -> bytes:
        return encode_response_end(self.stream_id)


@dataclass(slots=True)
class ResponseAbort:
    TYPE: ClassVar[FrameType] = FrameType.RESPONSE_ABORT
    stream_id: int
    reason: AbortReason

    def encode(self) -> bytes:
        return encode_response_abort(self.stream_id, self.reason)


@dataclass(slots=True)
class Window:
    """WINDOW: ``increment`` more body bytes may be sent on the stream (towards whoever
    sent this frame: request body when from the daemon, response body when from the
    front)."""

    TYPE: ClassVar[FrameType] = FrameType.WINDOW
    stream_id: int
    increment: int

    def encode(self) -> bytes:
        return encode_window(self.stream_id, self.increment)


Frame: TypeAlias = (
    Hello
    | Ping
    | Pong
    | Drain
    | Retire
    | Request
    | Body
    | BodyEnd
    | BodyError
    | Cancel
    | ResponseHead
    | ResponseBody
    | ResponseEnd
    | ResponseAbort
    | Window
)


# --------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------
# Encoders raise ValueError for values the layout cannot carry (a NUL in a header field,
# stream id 0 on a stream frame, a number out of its field's range, non-latin-1 text).


def _bad_stream(stream_id: int) -> ValueError:
    return ValueError(f"stream id must be 1..{_U32_MAX}, not {stream_id!r}")


def _pack(layout: struct.Struct, *values: int | bytes) -> bytes:
    try:
        return layout.pack(*values)
    except struct.error as exc:
        raise ValueError(f"value out of range for the frame layout: {exc}") from None


def encode_hello(
    *, pid: int, generation: int, threads: int, request_window: int, group: str = ""
) -> bytes:
    name = group.encode("utf-8")
    return (
        _pack(
            _HELLO_FRAME,
            _HELLO_SIZE + len(name),
            _HELLO,
            0,
            0,
            MAGIC,
            PROTOCOL_VERSION,
            threads,
            pid,
            request_window,
            generation,
        )
        + name
    )


def encode_ping(value: int) -> bytes:
    return _pack(_U64_FRAME, 8, _PING, 0, 0, value)


def encode_pong(value: int) -> bytes:
    return _pack(_U64_FRAME, 8, _PONG, 0, 0, value)


def encode_drain() -> bytes:
    return _DRAIN_BYTES


def encode_retire(reason: RetireReason) -> bytes:
    return _pack(_U8_FRAME, 1, _RETIRE, 0, 0, reason)


def encode_request(
    stream_id: int,
    *,
    method: str,
    path: bytes,
    query: bytes = b"",
    http_version: str = "1.1",
    headers: Sequence[tuple[bytes, bytes]] = (),
    client: tuple[str, int] | None = None,
    server: tuple[str, int] | None = None,
    scheme: str = "http",
    script_name: str = "",
    body_length: int = 0,
    expect_continue: bool = False,
    body: bytes = b"",
    body_end: bool = False,
    response_window: int = DEFAULT_RESPONSE_WINDOW,
) -> bytes:
    """REQUEST. ``body`` holds body bytes the front already has (within the request
    window); with ``body_end`` they are all of it. A body length of 0 always ends the
    body here."""
    if stream_id <= 0:
        raise _bad_stream(stream_id)
    if body_length < -1:
        raise ValueError(f"body length must be -1 (chunked) or more, not {body_length}")
    flags = 0
    if expect_continue:
        flags = FLAG_EXPECT_CONTINUE
    if body_end or body_length == 0:
        flags |= FLAG_BODY_END
    if client is None:
        client_host = ""
        client_port = 0
    else:
        client_host, client_port = client
        flags |= FLAG_HAS_CLIENT
    if server is None:
        server_host = ""
        server_port = 0
    else:
        server_host, server_port = server
        flags |= FLAG_HAS_SERVER
    texts = "\0".join((method, http_version, scheme, client_host, server_host)).encode("latin-1")
    if texts.count(b"\0") != 4:
        raise ValueError("NUL in the method, version, scheme or a host")
    count = len(headers)
    if count:
        block = b"\0".join(chain.from_iterable(headers))
        # A NUL inside a field would shift every later field; RFC 9110 forbids it anyway.
        if block.count(b"\0") != 2 * count - 1:
            raise ValueError("NUL in a request header field, or a header not a pair")
    else:
        block = b""
    script = script_name.encode("utf-8", "surrogatepass")
    texts_len = len(texts)
    script_len = len(script)
    path_len = len(path)
    query_len = len(query)
    block_len = len(block)
    try:
        fixed = _REQUEST_FRAME.pack(
            _REQUEST_SIZE + texts_len + script_len + path_len + query_len + block_len + len(body),
            _REQUEST,
            flags,
            stream_id,
            body_length,
            response_window,
            client_port,
            server_port,
            count,
            texts_len,
            script_len,
            path_len,
            query_len,
            block_len,
        )
    except struct.error as exc:
        raise ValueError(f"REQUEST value out of range: {exc}") from None
    return b"".join((fixed, texts, script, path, query, block, body))


def encode_body_header(stream_id: int, size: int) -> bytes:
    """The header of a BODY frame of ``size`` bytes, for writing the data after it
    without copying (``writelines``/``sendmsg``)."""
    if stream_id <= 0:
        raise _bad_stream(stream_id)
    try:
        return _HEADER.pack(size, _BODY, 0, stream_id)
    except struct.error as exc:
        raise ValueError(f"frame header out of range: {exc}") from None


def encode_body(stream_id: int, data: bytes) -> bytes:
    return encode_body_header(stream_id, len(data)) + data


def encode_body_end(stream_id: int) -> bytes:
    if stream_id <= 0:
        raise _bad_stream(stream_id)
    return _pack(_HEADER, 0, _BODY_END, 0, stream_id)


def encode_body_error(stream_id: int, reason: BodyErrorReason, detail: str = "") -> bytes:
    if stream_id <= 0:
        raise _bad_stream(stream_id)
    text = detail.encode("utf-8", "replace")
    return _pack(_U8_FRAME, 1 + len(text), _BODY_ERROR, 0, stream_id, reason) + text


def encode_cancel(stream_id: int) -> bytes:
    if stream_id <= 0:
        raise _bad_stream(stream_id)
    return _pack(_HEADER, 0, _CANCEL, 0, stream_id)


def encode_response_head(
    stream_id: int,
    status: str,
    headers: Sequence[tuple[str, str]],
    body: bytes = b"",
    *,
    final: bool,
    body_length: int = -1,
    server_error: bool = False,
) -> bytes:
    """RESPONSE_HEAD, the arguments of ``Exchange.respond``. With ``final`` the response
    is complete after ``body``. ``body`` must fit the stream's response credit."""
    if stream_id <= 0:
        raise _bad_stream(stream_id)
    if body_length < -1:
        raise ValueError(f"body length must be -1 (unknown) or more, not {body_length}")
    count = len(headers)
    if count:
        texts = "\0".join(chain((status,), chain.from_iterable(headers))).encode("latin-1")
    else:
        texts = status.encode("latin-1")
    if texts.count(b"\0") != 2 * count:
        raise ValueError("NUL in the status or a response header, or a header not a pair")
    flags = FLAG_FINAL if final else 0
    if server_error:
        flags |= FLAG_SERVER_ERROR
    try:
        fixed = _RESPONSE_FRAME.pack(
            _RESPONSE_SIZE + len(texts) + len(body),
            _RESPONSE_HEAD,
            flags,
            stream_id,
            body_length,
            len(texts),
            count,
        )
    except struct.error as exc:
        raise ValueError(f"RESPONSE_HEAD value out of range: {exc}") from None
    return b"".join((fixed, texts, body))


def encode_response_body_header(stream_id: int, size: int) -> bytes:
    """The header of a RESPONSE_BODY frame of ``size`` bytes (see encode_body_header)."""
    if stream_id <= 0:
        raise _bad_stream(stream_id)
    try:
        return _HEADER.pack(size, _RESPONSE_BODY, 0, stream_id)
    except struct.error as exc:
        raise ValueError(f"frame header out of range: {exc}") from None


def encode_response_body(stream_id: int, data: bytes) -> bytes:
    return encode_response_body_header(stream_id, len(data)) + data


def encode_response_end(stream_id: int) -> bytes:
    if stream_id <= 0:
        raise _bad_stream(stream_id)
    try:
        return _HEADER.pack(0, _RESPONSE_END, 0, stream_id)
    except struct.error as exc:
        raise ValueError(f"frame header out of range: {exc}") from None


def encode_response_abort(stream_id: int, reason: AbortReason) -> bytes:
    if stream_id <= 0:
        raise _bad_stream(stream_id)
    return _pack(_U8_FRAME, 1, _RESPONSE_ABORT, 0, stream_id, reason)


def encode_window(stream_id: int, increment: int) -> bytes:
    if stream_id <= 0:
        raise _bad_stream(stream_id)
    if increment <= 0:
        raise ValueError(f"WINDOW increment must be at least 1, not {increment!r}")
    try:
        return _U32_FRAME.pack(4, _WINDOW, 0, stream_id, increment)
    except struct.error as exc:
        raise ValueError(f"WINDOW out of range: {exc}") from None


# --------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------
# A parser gets the whole buffer and the bounds of one payload, so the hot frames slice
# their fields straight out of the received bytes instead of copying the payload first.
# Every parser checks lengths against ``end`` before reading: past it lies the next frame.

_Parser: TypeAlias = Callable[[bytes, int, int, int, int], Frame]
_Reason = TypeVar("_Reason", RetireReason, BodyErrorReason, AbortReason)


def _name(frame_type: int) -> str:
    try:
        return FrameType(frame_type).name
    except ValueError:
        return f"0x{frame_type:02x}"


def _connection_frame(frame_type: int, flags: int, stream: int) -> None:
    if stream:
        raise ProtocolError(f"{_name(frame_type)} on stream {stream}; it belongs on stream 0")
    if flags:
        raise ProtocolError(f"{_name(frame_type)} with undefined flags 0x{flags:02x}")


def _stream_frame(frame_type: int, flags: int, stream: int, allowed: int = 0) -> None:
    if not stream:
        raise ProtocolError(f"{_name(frame_type)} on stream 0; it needs a stream id")
    if flags & ~allowed:
        raise ProtocolError(f"{_name(frame_type)} with undefined flags 0x{flags:02x}")


def _size(frame_type: int, start: int, end: int, expected: int) -> None:
    if end - start != expected:
        raise ProtocolError(
            f"{_name(frame_type)} payload is {end - start} bytes; it must be {expected}"
        )


def _reason(enum_type: type[_Reason], value: int, frame_type: int) -> _Reason:
    try:
        return enum_type(value)
    except ValueError:
        raise ProtocolError(f"{_name(frame_type)} with unknown reason {value}") from None


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not UTF-8") from None


def _parse_hello(data: bytes, start: int, end: int, flags: int, stream: int) -> Hello:
    _connection_frame(_HELLO, flags, stream)
    # Magic and version first, from the six bytes every version keeps, so a daemon of
    # another version is reported as that rather than as a malformed HELLO.
    if end - start < _HELLO_PREFIX.size:
        raise ProtocolError(f"HELLO payload is {end - start} bytes; it needs {_HELLO_SIZE}")
    magic, version = _HELLO_PREFIX.unpack_from(data, start)
    if magic != MAGIC:
        raise ProtocolError(f"HELLO magic is {magic!r}, not {MAGIC!r}: not an asyncwsgi peer")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"daemon speaks wire protocol version {version}; this front speaks {PROTOCOL_VERSION}"
        )
    if end - start < _HELLO_SIZE:
        raise ProtocolError(f"HELLO payload is {end - start} bytes; it needs {_HELLO_SIZE}")
    _, _, threads, pid, window, generation = _HELLO_FIXED.unpack_from(data, start)
    group = _utf8(data[start + _HELLO_SIZE : end], "HELLO group name")
    return Hello(pid, generation, threads, window, group)


def _parse_ping(data: bytes, start: int, end: int, flags: int, stream: int) -> Ping:
    _connection_frame(_PING, flags, stream)
    _size(_PING, start, end, 8)
    return Ping(_U64.unpack_from(data, start)[0])


def _parse_pong(data: bytes, start: int, end: int, flags: int, stream: int) -> Pong:
    _connection_frame(_PONG, flags, stream)
    _size(_PONG, start, end, 8)
    return Pong(_U64.unpack_from(data, start)[0])


def _parse_drain(data: bytes, start: int, end: int, flags: int, stream: int) -> Drain:
    _connection_frame(_DRAIN, flags, stream)
    _size(_DRAIN, start, end, 0)
    return Drain()


def _parse_retire(data: bytes, start: int, end: int, flags: int, stream: int) -> Retire:
    _connection_frame(_RETIRE, flags, stream)
    _size(_RETIRE, start, end, 1)
    return Retire(_reason(RetireReason, data[start], _RETIRE))


def _parse_request(data: bytes, start: int, end: int, flags: int, stream: int) -> Request:
    if not stream or flags & ~_REQUEST_FLAGS:
        _stream_frame(_REQUEST, flags, stream, _REQUEST_FLAGS)
    pos = start + _REQUEST_SIZE
    if pos > end:
        raise ProtocolError(f"REQUEST payload is {end - start} bytes; it needs {_REQUEST_SIZE}")
    (
        body_length,
        response_window,
        client_port,
        server_port,
        count,
        texts_len,
        script_len,
        path_len,
        query_len,
        block_len,
    ) = _unpack_request(data, start)
    stop = pos + texts_len + script_len + path_len + query_len + block_len
    if stop > end:
        raise ProtocolError("REQUEST field lengths run past the end of the frame")
    texts = data[pos : pos + texts_len].decode("latin-1").split("\0")
    try:
        method, http_version, scheme, client_host, server_host = texts
    except ValueError:
        raise ProtocolError(f"REQUEST has {len(texts)} texts; it needs 5") from None
    pos += texts_len
    if script_len:
        script_name = _utf8(data[pos : pos + script_len], "REQUEST SCRIPT_NAME")
        pos += script_len
    else:
        script_name = ""
    path = data[pos : pos + path_len]
    pos += path_len
    query = data[pos : pos + query_len]
    pos += query_len
    if count:
        fields = data[pos:stop].split(b"\0")
        if len(fields) != 2 * count:
            raise ProtocolError(
                f"REQUEST header block has {len(fields)} fields; {count} headers need {2 * count}"
            )
        pairs = iter(fields)
        headers = list(zip(pairs, pairs, strict=False))  # length checked above
    elif block_len:
        raise ProtocolError("REQUEST has a header block but no headers")
    else:
        headers = []
    body_end = (flags & FLAG_BODY_END) != 0
    expect_continue = (flags & FLAG_EXPECT_CONTINUE) != 0
    inline = end - stop
    # Ordered so that the common request, without a body, costs one comparison.
    if body_length == 0:
        if not body_end or inline:
            raise _inline_body_error(body_length, inline, body_end)
    elif body_length > 0:
        if inline > body_length or (body_end and inline != body_length):
            raise _inline_body_error(body_length, inline, body_end)
    elif body_length < -1:
        raise ProtocolError(f"REQUEST body length {body_length}")
    if expect_continue and inline:
        raise ProtocolError("REQUEST with EXPECT_CONTINUE carries body bytes")
    if flags & FLAG_HAS_CLIENT:
        client: tuple[str, int] | None = (client_host, client_port)
    elif client_host or client_port:
        raise ProtocolError("REQUEST has a client address without HAS_CLIENT")
    else:
        client = None
    if flags & FLAG_HAS_SERVER:
        server: tuple[str, int] | None = (server_host, server_port)
    elif server_host or server_port:
        raise ProtocolError("REQUEST has a server address without HAS_SERVER")
    else:
        server = None
    return Request(
        stream,
        method,
        path,
        query,
        http_version,
        headers,
        client,
        server,
        scheme,
        script_name,
        body_length,
        expect_continue,
        data[stop:end],
        body_end,
        response_window,
    )


def _inline_body_error(body_length: int, inline: int, body_end: bool) -> ProtocolError:
    if body_length == 0 and not body_end:
        return ProtocolError("REQUEST without a body must have BODY_END")
    return ProtocolError(
        f"REQUEST carries {inline} body bytes of a {body_length}-byte body"
        + (" and says that is all" if body_end else "")
    )


def _parse_body(data: bytes, start: int, end: int, flags: int, stream: int) -> Body:
    if not stream or flags:
        _stream_frame(_BODY, flags, stream)
    return Body(stream, data[start:end])


def _parse_body_end(data: bytes, start: int, end: int, flags: int, stream: int) -> BodyEnd:
    _stream_frame(_BODY_END, flags, stream)
    _size(_BODY_END, start, end, 0)
    return BodyEnd(stream)


def _parse_body_error(data: bytes, start: int, end: int, flags: int, stream: int) -> BodyError:
    _stream_frame(_BODY_ERROR, flags, stream)
    if end - start < 1:
        raise ProtocolError("BODY_ERROR without a reason")
    reason = _reason(BodyErrorReason, data[start], _BODY_ERROR)
    return BodyError(stream, reason, data[start + 1 : end].decode("utf-8", "replace"))


def _parse_cancel(data: bytes, start: int, end: int, flags: int, stream: int) -> Cancel:
    _stream_frame(_CANCEL, flags, stream)
    _size(_CANCEL, start, end, 0)
    return Cancel(stream)


def _parse_response_head(
    data: bytes, start: int, end: int, flags: int, stream: int
) -> ResponseHead:
    if not stream or flags & ~_RESPONSE_FLAGS:
        _stream_frame(_RESPONSE_HEAD, flags, stream, _RESPONSE_FLAGS)
    pos = start + _RESPONSE_SIZE
    if pos > end:
        raise ProtocolError(
            f"RESPONSE_HEAD payload is {end - start} bytes; it needs {_RESPONSE_SIZE}"
        )
    body_length, texts_len, count = _unpack_response(data, start)
    stop = pos + texts_len
    if stop > end:
        raise ProtocolError("RESPONSE_HEAD texts run past the end of the frame")
    if body_length < -1:
        raise ProtocolError(f"RESPONSE_HEAD body length {body_length}")
    texts = data[pos:stop].decode("latin-1").split("\0")
    if len(texts) != 2 * count + 1:
        raise ProtocolError(
            f"RESPONSE_HEAD has {len(texts)} texts; a status and {count} headers need "
            f"{2 * count + 1}"
        )
    fields = iter(texts)
    status = next(fields)
    return ResponseHead(
        stream,
        status,
        list(zip(fields, fields, strict=False)),  # length checked above
        data[stop:end],
        (flags & FLAG_FINAL) != 0,
        body_length,
        (flags & FLAG_SERVER_ERROR) != 0,
    )


def _parse_response_body(
    data: bytes, start: int, end: int, flags: int, stream: int
) -> ResponseBody:
    if not stream or flags:
        _stream_frame(_RESPONSE_BODY, flags, stream)
    return ResponseBody(stream, data[start:end])


def _parse_response_end(data: bytes, start: int, end: int, flags: int, stream: int) -> ResponseEnd:
    _stream_frame(_RESPONSE_END, flags, stream)
    _size(_RESPONSE_END, start, end, 0)
    return ResponseEnd(stream)


def _parse_response_abort(
    data: bytes, start: int, end: int, flags: int, stream: int
) -> ResponseAbort:
    _stream_frame(_RESPONSE_ABORT, flags, stream)
    _size(_RESPONSE_ABORT, start, end, 1)
    return ResponseAbort(stream, _reason(AbortReason, data[start], _RESPONSE_ABORT))


def _parse_window(data: bytes, start: int, end: int, flags: int, stream: int) -> Window:
    _stream_frame(_WINDOW, flags, stream)
    _size(_WINDOW, start, end, 4)
    increment = _U32.unpack_from(data, start)[0]
    if not increment:
        raise ProtocolError("WINDOW with a zero increment")
    return Window(stream, increment)


# type -> (parser, the sides that may send it)
_FRAME_TYPES: Final[dict[int, tuple[_Parser, frozenset[Side]]]] = {
    _HELLO: (_parse_hello, frozenset({Side.DAEMON})),
    _PING: (_parse_ping, frozenset({Side.FRONT, Side.DAEMON})),
    _PONG: (_parse_pong, frozenset({Side.FRONT, Side.DAEMON})),
    _DRAIN: (_parse_drain, frozenset({Side.FRONT})),
    _RETIRE: (_parse_retire, frozenset({Side.DAEMON})),
    _REQUEST: (_parse_request, frozenset({Side.FRONT})),
    _BODY: (_parse_body, frozenset({Side.FRONT})),
    _BODY_END: (_parse_body_end, frozenset({Side.FRONT})),
    _BODY_ERROR: (_parse_body_error, frozenset({Side.FRONT})),
    _CANCEL: (_parse_cancel, frozenset({Side.FRONT})),
    _RESPONSE_HEAD: (_parse_response_head, frozenset({Side.DAEMON})),
    _RESPONSE_BODY: (_parse_response_body, frozenset({Side.DAEMON})),
    _RESPONSE_END: (_parse_response_end, frozenset({Side.DAEMON})),
    _RESPONSE_ABORT: (_parse_response_abort, frozenset({Side.DAEMON})),
    _WINDOW: (_parse_window, frozenset({Side.FRONT, Side.DAEMON})),
}


class FrameDecoder:
    """Bytes in, frames out, for one direction of one connection.

    :meth:`feed` takes the bytes as they arrive, split anywhere, and returns every frame
    they complete, in order; the rest is kept for the next call. ``sent_by`` makes frames
    the other side never sends (a REQUEST arriving at the front) protocol errors.

    A :class:`ProtocolError` (unknown type, payload over ``max_frame_size``, a malformed
    payload) means the peer is broken or not a peer at all: the decoder refuses all
    further input and the connection should be closed.
    """

    __slots__ = ("_buffer", "_error", "_max_frame_size", "_need", "_parsers", "_sent_by")

    def __init__(
        self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, sent_by: Side | None = None
    ) -> None:
        if not 0 <= max_frame_size <= _U32_MAX:
            raise ValueError(f"max_frame_size must be 0..{_U32_MAX}, not {max_frame_size}")
        self._max_frame_size = max_frame_size
        self._sent_by = sent_by
        # Indexed by the type byte: one list lookup per frame finds the parser and rejects
        # unknown and wrong-direction types at once.
        self._parsers: list[_Parser | None] = [None] * 256
        for frame_type, (parser, senders) in _FRAME_TYPES.items():
            if sent_by is None or sent_by in senders:
                self._parsers[frame_type] = parser
        self._buffer = bytearray()
        # Bytes the buffer must hold before parsing can make progress: the rest of a
        # header, or of the frame whose header is already in, so a large frame arriving
        # in many pieces is not re-examined on every piece.
        self._need = HEADER_SIZE
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back as the start of an incomplete frame. Non-zero at end of input
        means the peer stopped mid-frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add received bytes; return the frames they complete (often none or one)."""
        if self._error is not None:
            raise ProtocolError(f"decoder already failed: {self._error}")
        buffer = self._buffer
        chunk: bytes
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return []
            chunk = bytes(buffer)
            buffer.clear()
        elif type(data) is bytes:
            chunk = data
        else:
            chunk = bytes(data)
        frames: list[Frame] = []
        parsers = self._parsers
        limit = self._max_frame_size
        unpack = _HEADER.unpack_from
        pos = 0
        size = len(chunk)
        need = HEADER_SIZE
        try:
            while size - pos >= HEADER_SIZE:
                length, frame_type, flags, stream = unpack(chunk, pos)
                parser = parsers[frame_type]
                if parser is None:
                    raise self._unexpected(frame_type)
                if length > limit:
                    raise ProtocolError(
                        f"{_name(frame_type)} frame of {length} bytes is over the "
                        f"{limit}-byte limit"
                    )
                start = pos + HEADER_SIZE
                end = start + length
                if end > size:
                    need = end - pos
                    break
                frames.append(parser(chunk, start, end, flags, stream))
                pos = end
        except ProtocolError as exc:
            self._error = exc
            raise
        if pos < size:
            buffer += memoryview(chunk)[pos:]
        self._need = need
        return frames

    def _unexpected(self, frame_type: int) -> ProtocolError:
        if frame_type in _FRAME_TYPES and self._sent_by is not None:
            return ProtocolError(f"{_name(frame_type)} is never sent by the {self._sent_by.value}")
        return ProtocolError(f"unknown frame type 0x{frame_type:02x}")
