"""Listening sockets: binding, inheriting (systemd), TLS, and accepting in batches.

Rule: the standard library and asyncio only; nothing of the package but ``settings`` and
``errors``. Every mode's server and the supervisor of server copies open their sockets
here (as gunicorn's ``sock.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
import stat
from collections.abc import Callable
from typing import Any

from asyncwsgi.errors import ConfigError
from asyncwsgi.settings import BindAddress

logger = logging.getLogger("asyncwsgi.error")


def open_socket(address: BindAddress, backlog: int, *, listen: bool = True) -> socket.socket:
    """A listening, non-blocking socket for ``address``. Raises ``ConfigError``.

    With ``listen`` False a TCP socket is only bound: it holds the port (for copies that
    listen on it with SO_REUSEPORT) and takes no connections itself.
    """
    try:
        if address.kind == "fd":
            sock = socket.socket(fileno=address.fd)
        elif address.kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(address.path).st_mode):
                    os.unlink(address.path)  # a stale socket left by an earlier run
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(address.path)
            sock.listen(backlog)
        else:
            infos = socket.getaddrinfo(
                address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, kind, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if address.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            if listen:
                sock.listen(backlog)
    except OSError as exc:
        raise ConfigError(f"bind {address}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def systemd_sockets() -> list[BindAddress]:
    """Sockets handed over by systemd socket activation (``LISTEN_FDS``)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    return [BindAddress("fd", fd=3 + i) for i in range(count)]


def make_ssl_context(certfile: str, keyfile: str) -> ssl.SSLContext | None:
    """The server's TLS context, or None to serve plain HTTP. Raises ``ConfigError``."""
    if not certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"certfile: cannot load {certfile!r}: {exc}") from exc
    return context


def describe(sock: socket.socket, address: BindAddress, *, tls: bool = False) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}"


class Listener:
    """Accepts connections on one listening socket: every waiting one, per wake-up.

    The loop's own server would do, but libuv (under uvloop) accepts a single connection
    per loop iteration; when a thousand clients connect at once to a busy server, the last
    of them then wait seconds before anything reads their request.
    """

    _BATCH = 512  # accepts per wake-up, so established connections still get their turn

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = factory
        self.ssl = ssl_context
        self._tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        self._pending: set[asyncio.Task[Any]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self.closed = False

    def start(self) -> None:
        self._retry = None
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(self._BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors or memory: stop accepting for a moment instead of
                    # spinning on a listening socket that stays readable.
                    logger.error("cannot accept connections (%s); retrying in 0.5 s", exc)
                    self.loop.remove_reader(self.sock.fileno())
                    self._retry = self.loop.call_later(0.5, self.start)
                    return
                raise
            conn.setblocking(False)
            if self._tcp:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self.loop.create_task(self._connect(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn, ssl=self.ssl)
        except Exception as exc:  # a failed TLS handshake, a client gone already
            logger.debug("connection setup failed: %s", exc)
            conn.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
