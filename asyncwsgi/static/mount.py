"""One static mount (``Alias URL-PATH DIR``, ``--static URL-PATH=DIR``), and the runner
that puts ``--static`` mounts in front of an application.

Rule: imports nothing of the package but ``errors``, ``core``, ``wsgi`` and this
package's ``files``. The event loop decides the answer (the file's ``stat``, the
conditions, the range); a small file (up to :data:`SMALL_FILE`), a ``HEAD`` and every
answer without a body go out from the loop at once, and a larger file from a worker
thread with ``os.sendfile`` (the same path as ``wsgi.file_wrapper``), so a slow client of
a large file never holds the loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from asyncwsgi.core.exchange import Exchange, ServerExchange
from asyncwsgi.errors import ClientDisconnected, ConfigError
from asyncwsgi.static.files import Found, byte_range, condition, locate, open_found
from asyncwsgi.wsgi.environ import decode_path
from asyncwsgi.wsgi.pool import ThreadPool

logger = logging.getLogger("asyncwsgi.error")

_ALLOW = [("Allow", "GET, HEAD")]
_MESSAGES = {
    "400": b"Bad Request\n",
    "404": b"Not Found\n",
    "405": b"Method Not Allowed\n",
    "412": b"Precondition Failed\n",
    "416": b"Range Not Satisfiable\n",
}
_PLAIN = ("Content-Type", "text/plain; charset=utf-8")
STATIC_THREADS = 4  # the worker threads of a server's static mounts, and up to ...
STATIC_MAX_THREADS = 64  # ... this many while clients are slow to take the bytes


def check_folder(folder: str, where: str) -> tuple[str, bool]:
    """(the folder or file as an absolute path, whether it is one file); ``ConfigError``
    naming ``where`` when it cannot be served."""
    absolute = os.path.abspath(folder)
    if os.path.isdir(absolute):
        is_file = False
    elif os.path.isfile(absolute):
        is_file = True
    else:
        raise ConfigError(f"{where}: {folder!r} is not a folder or a file")
    if not os.access(absolute, os.R_OK):
        raise ConfigError(f"{where}: {folder!r} cannot be read by this user")
    # Kept as given (made absolute): a symlink in it is followed anew on each request,
    # as Apache does, so "static -> release-N/static" can move under a running server.
    return absolute, is_file


def mount_path(url: str) -> str:
    """A URL path as mounts keep it: PEP 3333 text, no trailing slash ("" for "/")."""
    return url.rstrip("/").encode("utf-8").decode("latin-1")


# Files up to this size are read and answered on the event loop (from the page cache, as
# nginx reads them): no hand-off to a thread, whose GIL hand-offs would cost more than
# the read. Larger ones go out from a worker thread with os.sendfile.
SMALL_FILE = 64 * 1024


class StaticMount:
    """The files of one folder (or one file) at a URL path."""

    def __init__(self, path: str, folder: str, pool: ThreadPool, *, is_file: bool = False):
        self.path = path  # PEP 3333 text, no trailing slash ("" for "/")
        self.folder = folder  # absolute; its symlinks are followed on each request
        self.is_file = is_file
        self.pool = pool
        self.requests = 0

    def __repr__(self) -> str:
        return f"<StaticMount {self.path or '/'} -> {self.folder}>"

    # Event loop thread.
    def submit(self, exchange: ServerExchange) -> None:
        self.requests += 1
        exchange.script_name = self.path
        try:
            answer = self.decide(exchange)
            if isinstance(answer, _File):
                if exchange.method == "HEAD" or answer.count <= SMALL_FILE:
                    self._send_small(exchange, answer)
                else:
                    self.pool.submit(self._serve_large, exchange, answer)
                return
            status, headers, body = answer
            exchange.loop_respond(status, headers, body, final=True)
        except Exception:
            logger.exception("error serving a static file below %s", self.folder)
            exchange.loop_send_error("500 Internal Server Error", b"Internal Server Error\n")

    def decide(self, exchange: ServerExchange) -> _File | tuple[str, list[tuple[str, str]], bytes]:
        """What to answer: a file (or part of one) to send, or a whole small answer."""
        if exchange.method not in ("GET", "HEAD"):
            return _error("405 Method Not Allowed", _ALLOW)
        raw = exchange.path
        if b"%2f" in raw.lower():
            return _error("404 Not Found")  # an encoded slash separates nothing
        rest = decode_path(raw)[len(self.path) :]
        found = locate(self.folder, rest, exact_file=self.is_file)
        if isinstance(found, str):
            return _error(found)
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1").strip()
            for name, value in exchange.headers
        }
        validators = [("ETag", found.etag), ("Last-Modified", found.last_modified)]
        status = condition(found, headers, exchange.method)
        if status is not None:
            if status.startswith("304"):
                return status, validators, b""
            return _error(status)
        # Ranges are for GET (RFC 9110, 14.2): a HEAD gets the whole file's head.
        wanted = byte_range(found, headers) if exchange.method == "GET" else None
        if wanted == "416":
            return _error("416 Range Not Satisfiable", [("Content-Range", f"bytes */{found.size}")])
        head = [("Content-Type", found.content_type), *validators, ("Accept-Ranges", "bytes")]
        if isinstance(wanted, tuple):
            first, count = wanted
            head.append(("Content-Range", f"bytes {first}-{first + count - 1}/{found.size}"))
            status = "206 Partial Content"
        else:
            first, count, status = 0, found.size, "200 OK"
        head.append(("Content-Length", str(count)))
        return _File(found, status, head, first, count)

    def _send_small(self, exchange: ServerExchange, file: _File) -> None:
        data = b""
        if exchange.method != "HEAD" and file.count:
            fd = open_found(file.found)
            if fd < 0:
                status, headers, body = _error("404 Not Found")
                exchange.loop_respond(status, headers, body, final=True)
                return
            try:
                data = os.pread(fd, file.count, file.first)
            finally:
                os.close(fd)
            if len(data) != file.count:  # it changed under us: say so rather than lie
                exchange.loop_send_error("500 Internal Server Error", b"file changed\n")
                return
        exchange.loop_respond(file.status, file.headers, data, final=True, body_length=file.count)

    # Worker thread.
    def _serve_large(self, exchange: Exchange, file: _File) -> None:
        try:
            fd = open_found(file.found)
            if fd < 0:
                status, headers, body = _error("404 Not Found")
                exchange.respond(status, headers, body, final=True)
                return
            with open(fd, "rb") as handle:
                exchange.respond(
                    file.status, file.headers, b"", final=False, body_length=file.count
                )
                exchange.sendfile(handle, file.first, file.count)
        except ClientDisconnected:
            pass
        except Exception:
            logger.exception("error serving a static file below %s", self.folder)
            exchange.send_error("500 Internal Server Error", b"Internal Server Error\n")


class _File:
    """A file, or the part of it a Range asked for, to send with its head."""

    __slots__ = ("count", "first", "found", "headers", "status")

    def __init__(
        self, found: Found, status: str, headers: list[tuple[str, str]], first: int, count: int
    ) -> None:
        self.found = found
        self.status = status
        self.headers = headers
        self.first = first
        self.count = count


def _error(
    status: str, extra: Sequence[tuple[str, str]] = ()
) -> tuple[str, list[tuple[str, str]], bytes]:
    body = _MESSAGES.get(status[:3], b"")
    return status, [_PLAIN, *extra, ("Content-Length", str(len(body)))], body


# --------------------------------------------------------------------------------------
# --static in front of an application
# --------------------------------------------------------------------------------------


class _Runner(Protocol):
    def submit(self, exchange: ServerExchange) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def restarts(self, reason: str) -> dict[str, Callable[[], None]]: ...

    def status(self) -> dict[str, Any]: ...

    def stop_note(self) -> str: ...

    def reopen_logs(self) -> None: ...


class StaticFront:
    """``--static URL-PATH=DIR`` mounts in front of the application's runner: a request
    under a static mount's path (whole segments, the longest path first) gets a file;
    every other request goes to the application."""

    def __init__(self, inner: _Runner, folders: Sequence[tuple[str, str, bool]]) -> None:
        """``folders``: each mount's path (:func:`mount_path`), then what
        :func:`check_folder` gave for it."""
        self.inner = inner
        self.pool = ThreadPool(
            STATIC_THREADS, max_threads=STATIC_MAX_THREADS, name="asyncwsgi-static"
        )
        mounts = [StaticMount(p, real, self.pool, is_file=f) for p, real, f in folders]
        self.mounts = sorted(mounts, key=lambda m: -len(m.path))

    def submit(self, exchange: ServerExchange) -> None:
        path = decode_path(exchange.path)
        for mount in self.mounts:
            prefix = mount.path
            if not prefix or path == prefix or path.startswith(prefix + "/"):
                mount.submit(exchange)
                return
        self.inner.submit(exchange)

    async def start(self) -> None:
        await self.inner.start()
        for mount in self.mounts:
            logger.info("static %s -> %s", mount.path or "/", mount.folder)

    async def close(self) -> None:
        await self.pool.stop()
        await self.inner.close()

    def restarts(self, reason: str) -> dict[str, Callable[[], None]]:
        return self.inner.restarts(reason)

    def status(self) -> dict[str, Any]:
        info = self.inner.status()
        info["static"] = [
            {"path": m.path or "/", "folder": m.folder, "requests": m.requests} for m in self.mounts
        ]
        return info

    def stop_note(self) -> str:
        return self.inner.stop_note()

    def reopen_logs(self) -> None:
        self.inner.reopen_logs()
