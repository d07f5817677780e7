"""One request in a daemon process: the exchange a worker thread answers, over the wire.

Rule: threads, not asyncio. A :class:`DaemonStream` is the
:class:`~asyncwsgi.core.exchange.Exchange` of the WSGI bridge in a daemon process: its
worker-side methods turn the application's response into frames (within the response
credit the front grants), and its ``on_*`` methods, run by the process's reader thread,
feed it what the front sends: body bytes, the body's end or error, credit, a cancel.

Response credit needs no lock: the reader only adds to ``_granted`` and the worker only
adds to ``_spent``. The request body, when it did not all come with the REQUEST, is a
:class:`StreamBody`, whose reads grant the front credit for more.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from asyncwsgi.core.body import RequestBody
from asyncwsgi.core.exchange import Exchange
from asyncwsgi.core.head import PLAIN_TEXT, content_length, status_allows_body
from asyncwsgi.daemon import wire
from asyncwsgi.errors import BadRequestBody, ClientDisconnected, RequestBodyTooLarge

if TYPE_CHECKING:
    from asyncwsgi.daemon.process import Daemon

# Body bytes per frame: far under the wire's max frame size even with a head's headers.
_MAX_CHUNK: Final = 256 * 1024
# Below this a body frame is copied behind its header and sent with one sendall; above,
# sendmsg sends header and data without the copy.
_COPY_LIMIT: Final = 64 * 1024
_BODY_ERRORS: Final[dict[wire.BodyErrorReason, tuple[type[OSError], str]]] = {
    wire.BodyErrorReason.DISCONNECTED: (ClientDisconnected, "client disconnected"),
    wire.BodyErrorReason.MALFORMED: (BadRequestBody, "malformed request body"),
    wire.BodyErrorReason.TOO_LARGE: (RequestBodyTooLarge, "request body too large"),
}


class StreamBody(RequestBody):
    """A request body that comes in BODY frames, as the front is granted credit.

    The front may send what it was granted; a read grants back what it took once that is
    half a window, and the first read of an ``Expect: 100-continue`` body grants the first
    window, which is the front's cue to send the ``100 Continue``.
    """

    __slots__ = ("_credit", "_length", "_stream", "_threshold", "_unacked", "_window")

    def __init__(self, stream: DaemonStream, frame: wire.Request, window: int) -> None:
        # No high-water mark: the credit bounds what the front sends.
        super().__init__(window, expect_continue=frame.expect_continue)
        self._stream = stream
        self._length = frame.body_length
        self._window = window
        self._threshold = max(1, window // 2)
        self._credit = 0 if frame.expect_continue else window
        self._unacked = 0
        if frame.body:
            self.feed(frame.body)

    def _fed(self, size: int) -> None:
        self._credit -= size

    def _consumed(self, size: int) -> None:
        self._unacked += size
        if self._unacked >= self._threshold:
            self._grant()

    def _first_read(self) -> None:
        self._unacked = self._window
        self._grant()

    def _grant(self) -> None:
        """Return the credit of the bytes the application read (lock held). No more than
        the rest of a body of known length needs, and nothing once it ended. No grant is
        needed before a read waits: the front's credit, the buffer and the bytes read but
        not granted back add up to the window, and a grant goes out whenever the last
        reach half of it, so with the buffer empty the front has more than half a window
        to send."""
        grant = self._unacked
        self._unacked = 0
        if self.eof or self.error is not None:
            return
        if self._length >= 0:
            grant = min(grant, self._length - self.received - self._credit)
        if grant > 0:
            self._credit += grant
            self._stream.send(wire.encode_window(self._stream.id, grant), False)


class DaemonStream(Exchange):
    """One stream: a request from the front and the response to it."""

    __slots__ = (
        "_allowed",
        "_daemon",
        "_granted",
        "_head_sent",
        "_inline",
        "_spent",
        "_waiter",
        "body",
        "cancelled",
        "ended",
        "id",
    )

    def __init__(self, daemon: Daemon, frame: wire.Request) -> None:
        self._daemon = daemon
        self.id = frame.stream_id
        self.method = frame.method
        self.path = frame.path
        self.query = frame.query
        self.http_version = frame.http_version
        self.headers = frame.headers
        self.client = frame.client
        self.server = frame.server
        self.scheme = frame.scheme
        # The REQUEST carries the SCRIPT_NAME: the front's mount point, per request.
        self.script_name = frame.script_name
        self._head_sent = False
        self._allowed = True
        self.cancelled = False
        self.ended = False
        self._granted = frame.response_window
        self._spent = 0
        self._waiter: threading.Event | None = None
        if frame.body_end:
            # The whole body (often none) came with the REQUEST: no lock, no credit.
            self._inline = frame.body
            self.body: StreamBody | None = None
        else:
            self._inline = b""
            self.body = StreamBody(self, frame, daemon.request_window)

    @property
    def head_sent(self) -> bool:
        return self._head_sent

    @property
    def body_allowed(self) -> bool:
        return self._allowed

    # -- worker thread: the request body -------------------------------------------------

    def read_body(self, size: int) -> bytes:
        if self.cancelled:
            raise ClientDisconnected("client disconnected")
        body = self.body
        if body is not None:
            return body.read(size)
        data = self._inline
        if size < 0 or size >= len(data):
            self._inline = b""
            return data
        self._inline = data[size:]
        return data[:size]

    # -- worker thread: the response -----------------------------------------------------

    def respond(
        self,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        final: bool,
        body_length: int = -1,
    ) -> None:
        if self.head_sent:
            raise RuntimeError("response head already sent")
        if self.cancelled:
            raise ClientDisconnected("client disconnected")
        length = -1
        for name, value in headers:
            if len(name) == 14 and name.lower() == "content-length":
                # The front would reject it after the fact; fail here, where the
                # application can still be answered with a 500.
                length = content_length(value, length)
        allowed = self.method != "HEAD" and status_allows_body(int(status[:3]))
        if not allowed:
            if final and body_length < 0 and self.method == "HEAD":
                body_length = len(body)  # a HEAD answer carries the GET's length
            body = b""
        size = len(body)
        if size <= self._granted - self._spent and size <= _MAX_CHUNK:
            frame = wire.encode_response_head(
                self.id, status, headers, body, final=final, body_length=body_length
            )
            self._head_sent = True
            self._allowed = allowed
            self._spent += size
            self.send(frame, final)
            return
        # More body than credit: the head with what fits, the rest as credit comes.
        if final and body_length < 0:
            body_length = size
        first = min(max(self._granted - self._spent, 0), _MAX_CHUNK)
        frame = wire.encode_response_head(
            self.id, status, headers, body[:first], final=False, body_length=body_length
        )
        self._head_sent = True
        self._allowed = allowed
        self._spent += first
        self.send(frame, False)
        self._write_body(memoryview(body)[first:])
        if final:
            self.send(wire.encode_response_end(self.id), True)

    def write(self, data: bytes, *, final: bool = False) -> None:
        if self.cancelled:
            raise ClientDisconnected("client disconnected")
        if not self.head_sent:
            raise RuntimeError("write() before the response head")
        if data and self.body_allowed:
            self._write_body(data)
        if final:
            self.send(wire.encode_response_end(self.id), True)

    def sendfile(self, file: Any, offset: int, count: int) -> None:
        """The file's bytes as body frames, read as credit allows (no fd passing: see
        the wire protocol's choices)."""
        if not self.head_sent:
            raise RuntimeError("sendfile() before the response head")
        if self.body_allowed:
            fd = file.fileno()
            while count > 0:
                block = os.pread(fd, self._allowance(count), offset)
                if not block:
                    break  # the file shrank; the front sees the short body
                offset += len(block)
                count -= len(block)
                self._spent += len(block)
                self._send_body(block)
        self.write(b"", final=True)

    def send_error(self, status: str, message: bytes) -> None:
        if self.head_sent:
            self.abort()
            return
        if self.cancelled:
            self.send(wire.encode_response_abort(self.id, wire.AbortReason.CANCELLED), True)
            return
        frame = wire.encode_response_head(
            self.id, status, PLAIN_TEXT, message, final=True, server_error=True
        )
        self._head_sent = True
        self._allowed = False
        self.send(frame, True)

    def abort(self) -> None:
        reason = wire.AbortReason.CANCELLED if self.cancelled else wire.AbortReason.APP_ERROR
        self.send(wire.encode_response_abort(self.id, reason), True)

    def _write_body(self, data: bytes | memoryview) -> None:
        size = len(data)
        available = self._granted - self._spent
        if size <= available and size <= _MAX_CHUNK:
            self._spent += size
            self._send_body(data)
            return
        view = memoryview(data)
        offset = 0
        while offset < size:
            n = self._allowance(size - offset)
            self._spent += n
            self._send_body(view[offset : offset + n])
            offset += n

    def _allowance(self, want: int) -> int:
        """How many of ``want`` body bytes may go now (at most a frame's worth), waiting
        for the front's credit while there is none."""
        while True:
            if self.cancelled:
                raise ClientDisconnected("client disconnected")
            available = self._granted - self._spent
            if available > 0:
                return min(available, want, _MAX_CHUNK)
            self._wait_credit()

    def _wait_credit(self) -> None:
        """Block until the front grants response credit (it does as the client reads);
        a client that takes nothing for ``send_timeout`` is given up on."""
        waiter = self._waiter
        if waiter is None:
            # Published before the credit is checked: the reader adds credit, then sets
            # the waiter it finds, so one of the two sees the other.
            waiter = self._waiter = threading.Event()
        deadline = time.monotonic() + self._daemon.send_timeout
        while True:
            waiter.clear()
            if self.cancelled or self.ended:
                raise ClientDisconnected("client disconnected")
            if self._granted > self._spent:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClientDisconnected("timed out waiting for the client to read")
            waiter.wait(remaining)

    # -- worker thread: frames out -------------------------------------------------------

    def send(self, frame: bytes, last: bool) -> None:
        """Send a frame of this stream; ``last`` ends the stream. After the end, last
        frames are dropped and any other frame raises ClientDisconnected."""
        if self.ended:
            if last:
                return
            raise ClientDisconnected("the response has ended")
        daemon = self._daemon
        if not last:
            daemon.send(frame)
            return
        self.ended = True
        # Before the frame goes out: the front may reuse the id once it has it.
        daemon.streams.pop(self.id, None)
        try:
            daemon.send(frame)
        except ClientDisconnected:
            pass  # the front is gone: the reader sees the end of input, and we exit

    def _send_body(self, data: bytes | memoryview) -> None:
        """One RESPONSE_BODY frame; the caller has taken the credit."""
        if self.ended:
            raise ClientDisconnected("the response has ended")
        header = wire.encode_response_body_header(self.id, len(data))
        if len(data) <= _COPY_LIMIT:
            self._daemon.send(header + data)
        else:
            self._daemon.send_parts(header, data)

    # -- reader thread ---------------------------------------------------------------------

    def on_body(self, data: bytes) -> None:
        body = self.body
        if body is not None and not body.eof and body.error is None:
            body.feed(data)
        # else: the REQUEST said the body was complete, or it ended: stale

    def on_body_end(self) -> None:
        if self.body is not None:
            self.body.feed_eof()

    def on_body_error(self, reason: wire.BodyErrorReason, detail: str) -> None:
        if self.body is not None:
            exc_type, default = _BODY_ERRORS[reason]
            # The body will not complete: whatever is buffered is not worth reading.
            self.body.fail(exc_type(detail or default), discard=True)

    def on_cancel(self) -> None:
        self.cancelled = True
        if self.body is not None:
            self.body.fail(ClientDisconnected("client disconnected"), discard=True)
        waiter = self._waiter
        if waiter is not None:
            waiter.set()

    def on_window(self, increment: int) -> None:
        self._granted += increment
        waiter = self._waiter
        if waiter is not None:
            waiter.set()
