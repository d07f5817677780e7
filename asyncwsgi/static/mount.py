"""One static mount (``Alias URL-PATH DIR``, ``--static URL-PATH=DIR``), and the runner
that puts ``--static`` mounts in front of an application.

Rule: imports nothing of the package but ``errors``, ``core``, ``wsgi`` and this
package's ``files``. The event loop hands each request to a worker thread, which opens
the file, answers the head and sends the body with ``os.sendfile`` (the same path as
``wsgi.file_wrapper``), so a slow disk or a slow client never holds the loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from asyncwsgi.core.exchange import Exchange, ServerExchange
from asyncwsgi.errors import ClientDisconnected, ConfigError
from asyncwsgi.static.files import Found, byte_range, condition, locate
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


def check_folder(url: str, folder: str, where: str) -> tuple[str, str, bool]:
    """(the mount path without a trailing slash, the real folder or file, whether it
    is one file); ``ConfigError`` naming ``where`` when it cannot be served."""
    if not url.startswith("/"):
        raise ConfigError(f"{where}: the URL path {url!r} must start with '/'")
    real = os.path.realpath(folder)
    if os.path.isdir(real):
        is_file = False
    elif os.path.isfile(real):
        is_file = True
    else:
        raise ConfigError(f"{where}: {folder!r} is not a folder or a file")
    if not os.access(real, os.R_OK):
        raise ConfigError(f"{where}: {folder!r} cannot be read by this user")
    path = url.rstrip("/").encode("utf-8").decode("latin-1")
    return path, real, is_file


class StaticMount:
    """The files of one folder (or one file) at a URL path."""

    def __init__(self, path: str, folder: str, pool: ThreadPool, *, is_file: bool = False):
        self.path = path  # PEP 3333 text, no trailing slash ("" for "/")
        self.folder = folder  # real path
        self.is_file = is_file
        self.pool = pool
        self.requests = 0

    def __repr__(self) -> str:
        return f"<StaticMount {self.path or '/'} -> {self.folder}>"

    # Event loop thread.
    def submit(self, exchange: ServerExchange) -> None:
        self.requests += 1
        exchange.script_name = self.path
        self.pool.submit(self._serve, exchange, None)

    # Worker thread.
    def _serve(self, exchange: Exchange, _: object) -> None:
        try:
            self.serve(exchange)
        except ClientDisconnected:
            pass
        except Exception:
            logger.exception("error serving a static file below %s", self.folder)
            exchange.send_error("500 Internal Server Error", b"Internal Server Error\n")

    def serve(self, exchange: Exchange) -> None:
        if exchange.method not in ("GET", "HEAD"):
            self._error(exchange, "405 Method Not Allowed", _ALLOW)
            return
        raw = exchange.path
        if b"%2f" in raw.lower():
            self._error(exchange, "404 Not Found")  # an encoded slash separates nothing
            return
        rest = decode_path(raw)[len(self.path) :]
        found = locate(self.folder, rest, exact_file=self.is_file)
        if isinstance(found, str):
            self._error(exchange, found)
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1").strip()
            for name, value in exchange.headers
        }
        validators = [("ETag", found.etag), ("Last-Modified", found.last_modified)]
        status = condition(found, headers, exchange.method)
        if status is not None:
            if status.startswith("304"):
                exchange.respond(status, validators, b"", final=True)
            else:
                self._error(exchange, status)
            return
        self._send(exchange, found, byte_range(found, headers), validators)

    def _send(
        self,
        exchange: Exchange,
        found: Found,
        wanted: tuple[int, int] | str | None,
        validators: list[tuple[str, str]],
    ) -> None:
        if wanted == "416":
            range_header = [("Content-Range", f"bytes */{found.size}")]
            self._error(exchange, "416 Range Not Satisfiable", range_header)
            return
        try:
            file = open(found.path, "rb")  # noqa: SIM115 -- closed below, after the send
        except OSError:
            self._error(exchange, "404 Not Found")
            return
        with file:
            headers = [
                ("Content-Type", found.content_type),
                *validators,
                ("Accept-Ranges", "bytes"),
            ]
            if isinstance(wanted, tuple):
                first, count = wanted
                status = "206 Partial Content"
                last = first + count - 1
                headers.append(("Content-Range", f"bytes {first}-{last}/{found.size}"))
            else:
                first, count, status = 0, found.size, "200 OK"
            headers.append(("Content-Length", str(count)))
            exchange.respond(status, headers, b"", final=False, body_length=count)
            exchange.sendfile(file, first, count)

    @staticmethod
    def _error(exchange: Exchange, status: str, extra: Sequence[tuple[str, str]] = ()) -> None:
        body = _MESSAGES.get(status[:3], b"")
        headers = [_PLAIN, *extra, ("Content-Length", str(len(body)))]
        exchange.respond(status, headers, body, final=True)


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


class StaticFront:
    """``--static URL-PATH=DIR`` mounts in front of the application's runner: a request
    under a static mount's path (whole segments, the longest path first) gets a file;
    every other request goes to the application."""

    def __init__(self, inner: _Runner, folders: Sequence[tuple[str, str, bool]]) -> None:
        """``folders``: what :func:`check_folder` gave for each mount."""
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
