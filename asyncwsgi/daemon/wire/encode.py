"""Frames to bytes: one ``encode_*`` function per frame type.

Rule: sans-IO, as the whole ``wire`` package. The two hot frames (REQUEST, RESPONSE_HEAD)
are one ``struct.pack`` and one ``bytes.join`` each.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import chain

from asyncwsgi.daemon.wire.layout import (
    _BODY,
    _BODY_END,
    _BODY_ERROR,
    _CANCEL,
    _DRAIN_BYTES,
    _HEADER,
    _HELLO,
    _HELLO_FRAME,
    _HELLO_SIZE,
    _PING,
    _PONG,
    _REQUEST,
    _REQUEST_FRAME,
    _REQUEST_SIZE,
    _RESPONSE_ABORT,
    _RESPONSE_BODY,
    _RESPONSE_END,
    _RESPONSE_FRAME,
    _RESPONSE_HEAD,
    _RESPONSE_SIZE,
    _RETIRE,
    _U8_FRAME,
    _U32_FRAME,
    _U32_MAX,
    _U64_FRAME,
    _WINDOW,
    DEFAULT_RESPONSE_WINDOW,
    FLAG_BODY_END,
    FLAG_EXPECT_CONTINUE,
    FLAG_FINAL,
    FLAG_HAS_CLIENT,
    FLAG_HAS_SERVER,
    FLAG_SERVER_ERROR,
    MAGIC,
    PROTOCOL_VERSION,
    AbortReason,
    BodyErrorReason,
    RetireReason,
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
