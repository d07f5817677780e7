"""The frames as values: one slotted dataclass per frame type.

Rule: sans-IO, as the whole ``wire`` package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from asyncwsgi.daemon.wire.encode import (
    encode_body,
    encode_body_end,
    encode_body_error,
    encode_cancel,
    encode_drain,
    encode_hello,
    encode_ping,
    encode_pong,
    encode_request,
    encode_response_abort,
    encode_response_body,
    encode_response_end,
    encode_response_head,
    encode_retire,
    encode_window,
)
from asyncwsgi.daemon.wire.layout import (
    AbortReason,
    BodyErrorReason,
    FrameType,
    RetireReason,
)

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
