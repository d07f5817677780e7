"""Bytes to frames: :class:`FrameDecoder` and one parser per frame type.

Rule: sans-IO, as the whole ``wire`` package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeAlias, TypeVar

from asyncwsgi.daemon.wire.frames import (
    Body,
    BodyEnd,
    BodyError,
    Cancel,
    Drain,
    Frame,
    Hello,
    Ping,
    Pong,
    Request,
    ResponseAbort,
    ResponseBody,
    ResponseEnd,
    ResponseHead,
    Retire,
    Window,
)
from asyncwsgi.daemon.wire.layout import (
    _BODY,
    _BODY_END,
    _BODY_ERROR,
    _CANCEL,
    _DRAIN,
    _HEADER,
    _HELLO,
    _HELLO_FIXED,
    _HELLO_PREFIX,
    _HELLO_SIZE,
    _PING,
    _PONG,
    _REQUEST,
    _REQUEST_FLAGS,
    _REQUEST_SIZE,
    _RESPONSE_ABORT,
    _RESPONSE_BODY,
    _RESPONSE_END,
    _RESPONSE_FLAGS,
    _RESPONSE_HEAD,
    _RESPONSE_SIZE,
    _RETIRE,
    _U32,
    _U32_MAX,
    _U64,
    _WINDOW,
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_BODY_END,
    FLAG_EXPECT_CONTINUE,
    FLAG_FINAL,
    FLAG_HAS_CLIENT,
    FLAG_HAS_SERVER,
    FLAG_SERVER_ERROR,
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    AbortReason,
    BodyErrorReason,
    FrameType,
    RetireReason,
    Side,
    _unpack_request,
    _unpack_response,
)
from asyncwsgi.errors import ProtocolError

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
    _PING: (_parse_ping, frozenset({Side.FRONT})),
    _PONG: (_parse_pong, frozenset({Side.DAEMON})),
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
