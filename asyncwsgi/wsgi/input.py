"""``wsgi.input``: a file-like reader over a blocking chunk source.

Rule: nothing here imports asyncio or touches a socket; the source is any callable that
returns up to ``n`` bytes (at least one) or ``b""`` at the end, so it is tested with
byte literals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

_READ_BLOCK = 64 * 1024


class WSGIInput:
    """The request body as PEP 3333 wants it: read, readline, readlines, iteration.

    Every method is correct across chunk borders: a line split over several chunks is
    returned whole, and ``read(n)`` returns ``n`` bytes unless the body ends first.
    """

    __slots__ = ("_buf", "_eof", "_source")

    def __init__(self, source: Callable[[int], bytes]) -> None:
        self._source = source
        self._buf = bytearray()
        self._eof = False

    def _fill(self, size: int) -> bool:
        """Read one more chunk into the buffer; False at the end of the body."""
        if self._eof:
            return False
        data = self._source(max(size, 1))
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def read(self, size: int | None = -1) -> bytes:
        buf = self._buf
        if size is None or size < 0:
            while self._fill(_READ_BLOCK):
                pass
            data = bytes(buf)
            buf.clear()
            return data
        if not buf and not self._eof:
            # Fast path: hand the source's chunk over without copying it twice.
            data = self._source(size) if size else b""
            if not data:
                self._eof = size > 0
                return b""
            if len(data) == size:
                return data
            buf += data
        while len(buf) < size and self._fill(size - len(buf)):
            pass
        data = bytes(buf[:size])
        del buf[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        buf = self._buf
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end >= 0:
                end += 1
                if 0 <= limit < end:
                    end = limit
                break
            if 0 <= limit <= len(buf):
                end = limit
                break
            start = len(buf)
            want = _READ_BLOCK if limit < 0 else limit - len(buf)
            if not self._fill(want):
                end = len(buf)
                break
        data = bytes(buf[:end])
        del buf[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        """PEP 3333 forbids applications to close ``wsgi.input``; accept it harmlessly."""
