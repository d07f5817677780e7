"""Running one WSGI call: the PEP 3333 reference for start_response, exc_info, write()
and close().

Everything here runs on a worker thread. :func:`call_application` is the one place that
decides what a WSGI application's behaviour means on the wire.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Iterator
from typing import Any

from asyncwsgi.core.exchange import Exchange
from asyncwsgi.core.head import INTERNAL_ERROR, check_headers, check_status
from asyncwsgi.errors import BadRequestBody, ClientDisconnected
from asyncwsgi.wsgi.types import Environ, ExcInfo, WSGIApplication

logger = logging.getLogger("asyncwsgi.error")


class FileWrapper:
    """``wsgi.file_wrapper``: sent with ``os.sendfile`` when it wraps a regular file."""

    def __init__(self, filelike: Any, blksize: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            data = read(self.blksize)
            if not data:
                return
            yield data


class _Response:
    """The start_response/write state of one call."""

    __slots__ = ("exchange", "headers", "status")

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Any:
        if exc_info is not None:
            try:
                if self.exchange.head_sent:
                    # Too late to change the response: PEP 3333 says re-raise.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        check_status(status)
        check_headers(headers)
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable; also used for each chunk of the iterable."""
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"WSGI body chunks must be bytes, not {type(data).__name__}")
            data = bytes(data)
        exchange = self.exchange
        if exchange.head_sent:
            if data:
                exchange.write(data)
            return
        if self.status is None:
            raise AssertionError("write() or a body chunk before start_response()")
        if data:  # headers go out with the first non-empty chunk
            exchange.respond(self.status, self.headers, data, final=False)

    def finish(self) -> None:
        exchange = self.exchange
        if exchange.head_sent:
            exchange.write(b"", final=True)
        elif self.status is None:
            raise AssertionError("the application returned without calling start_response()")
        else:
            exchange.respond(self.status, self.headers, b"", final=True)


def _regular_file(filelike: Any) -> tuple[int, int] | None:
    """(offset, size) when ``filelike`` is a regular file we can sendfile from."""
    try:
        fd = filelike.fileno()
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        offset = int(filelike.tell())
    except (AttributeError, OSError, ValueError):
        return None
    return offset, max(st.st_size - offset, 0)


def call_application(app: WSGIApplication, environ: Environ, exchange: Exchange) -> None:
    """Call ``app`` and send what it returns; ``close()`` is always called.

    An exception before anything was sent gives a 500 with a generic body; after that
    the connection is closed, since the status is gone. Either way the traceback is
    logged once, here, and never sent to the client.
    """
    response = _Response(exchange)
    result: Iterable[bytes] | None = None
    try:
        result = app(environ, response.start_response)
        if type(result) is list and len(result) == 1 and not exchange.head_sent:
            # The common case: the whole body in one piece, sent in one write.
            data = result[0]
            if type(data) is not bytes:
                raise TypeError(f"WSGI body chunks must be bytes, not {type(data).__name__}")
            if response.status is None:
                raise AssertionError("the application returned without calling start_response()")
            exchange.respond(response.status, response.headers, data, final=True)
        elif (
            isinstance(result, FileWrapper)
            and response.status is not None
            and not exchange.head_sent
        ):
            _send_file(response, result, exchange)
        else:
            write = response.write
            for data in result:
                write(data)
                if not exchange.body_allowed:
                    # HEAD, 204 or 304 with the head sent: the client takes no body, so an
                    # endless generator must not be iterated for nothing.
                    break
            response.finish()
    except ClientDisconnected:
        logger.debug("client disconnected during %s %s", exchange.method, environ["PATH_INFO"])
        # Gone, or too slow to wait for: end the connection (a no-op if already closed).
        exchange.abort()
    except BadRequestBody as exc:
        # The client's fault, not the application's: no traceback, and the server's
        # exchange answers with the 4xx it recorded.
        logger.info("bad request body for %s %s: %s", exchange.method, environ["PATH_INFO"], exc)
        _fail(exchange)
    except Exception:
        logger.exception(
            "error in WSGI application during %s %s", exchange.method, environ["PATH_INFO"]
        )
        _fail(exchange)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                logger.exception("error in the close() of a WSGI response")
                _fail(exchange)


def _send_file(response: _Response, wrapper: FileWrapper, exchange: Exchange) -> None:
    where = _regular_file(wrapper.filelike)
    if where is None:
        write = response.write
        for data in wrapper:
            write(data)
        response.finish()
        return
    offset, size = where
    assert response.status is not None
    exchange.respond(response.status, response.headers, b"", final=False, body_length=size)
    exchange.sendfile(wrapper.filelike, offset, size)


def _fail(exchange: Exchange) -> None:
    try:
        exchange.send_error("500 Internal Server Error", INTERNAL_ERROR)
    except ClientDisconnected:
        pass
