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
0x02   PING           front    0      -
0x03   PONG           daemon   0      -
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
    4   2  u16    protocol version, 2; any other is a ProtocolError (these first six bytes
                  keep their meaning in every version)
    6   2  u16    threads: requests the daemon runs at once; the front sends no more
                  REQUESTs than that unanswered, and queues the rest itself, so every
                  REQUEST a daemon gets goes straight to a thread
    8   4  u32    pid
    12  4  u32    request window: body bytes the front may send on a new stream before
                  any WINDOW (streams with EXPECT_CONTINUE start at 0 instead)
    16  8  u64    generation, as the pool manager gave it at spawn
    24  rest      process group name, UTF-8

PING, PONG (8 bytes): ``u64`` opaque; the daemon answers a PING with a PONG of the same
value once its reader has taken in every frame sent before the PING: a liveness probe,
and a barrier for whoever needs to know the daemon has seen what came before.

DRAIN (empty): the front sends no further REQUEST; the daemon finishes its open streams
and then exits with status 0.

RETIRE (1 byte): ``u8`` reason (:class:`RetireReason`). The daemon asks to be replaced
(SIGUSR1); the front starts a replacement, waits for its HELLO,
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

from asyncwsgi.daemon.wire.decode import (
    FrameDecoder,
)
from asyncwsgi.daemon.wire.encode import (
    encode_body,
    encode_body_end,
    encode_body_error,
    encode_body_header,
    encode_cancel,
    encode_drain,
    encode_hello,
    encode_ping,
    encode_pong,
    encode_request,
    encode_response_abort,
    encode_response_body,
    encode_response_body_header,
    encode_response_end,
    encode_response_head,
    encode_retire,
    encode_window,
)
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
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_RESPONSE_WINDOW,
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
)

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
