"""The wire protocol's numbers: frame types, flags, reasons and the byte layouts.

Rule: sans-IO, as the whole ``wire`` package (see its docstring for the format).
"""

from __future__ import annotations

import enum
import struct
from typing import Final

PROTOCOL_VERSION: Final = 2
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


class AbortReason(enum.IntEnum):
    """Why a response ended without completing (RESPONSE_ABORT)."""

    APP_ERROR = 1  # the application failed after the head was sent
    CANCELLED = 2  # the application stopped after a CANCEL
    REFUSED = 3  # never handed to the application: safe to retry on another daemon
    SHUTDOWN = 4  # the daemon is stopping and gave up on the request


class RetireReason(enum.IntEnum):
    """Why a daemon asks to be replaced (RETIRE)."""

    SIGNAL = 1  # SIGUSR1 to the daemon process


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
