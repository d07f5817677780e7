"""The control socket: how ``python -m asyncwsgi reload [GROUP]`` reaches a running server.

Rule: asyncio and the standard library, and nothing of the package but ``errors``; every
mode's server opens one. This module moves one line each way; what a command *does* is the
handler's business (the server passes one to :class:`ControlServer`).

Where the socket lives
----------------------

The setting ``control_socket`` (``--control-socket``) is a path, ``"none"`` for no control
socket, or ``""`` for the default place, ``DIR/PID.sock``, where ``DIR`` is the first of
``$XDG_RUNTIME_DIR/asyncwsgi`` (when ``XDG_RUNTIME_DIR`` names a directory),
``~/.cache/asyncwsgi`` and ``<tempdir>/asyncwsgi-<uid>`` that will do. ``DIR`` is created
with mode 0700 and refused (logged, and the next one tried) when another user owns it or
others may write to it -- in a shared ``/tmp`` anyone can create ``asyncwsgi-<uid>`` first,
which is why it comes last. The socket itself has mode 0600. The command finds the socket
by ``--control-socket``, else ``$ASYNCWSGI_CONTROL_SOCKET``, else the one live socket in
those directories (:func:`find_control_socket`).

Protocol
--------

One exchange per connection. The client sends one line of UTF-8 words separated by spaces
and ending in ``"\\n"`` (4 KiB at most, newline included); the server answers one line ending
in ``"\\n"`` and closes the connection. An answer starts with the word ``ok`` or ``error``::

    reload            -> ok reloading GROUP1 GROUP2      (every process group)
    reload GROUP      -> ok reloading GROUP
                      -> error no process group named 'x' (groups: default)
    status            -> ok {"...": ...}                 (one line of JSON)

Answers this module gives by itself: ``error request too long``, ``error request is not
UTF-8``, ``error empty request``, and ``error internal: MESSAGE`` when the handler raised
(its traceback goes to the ``asyncwsgi.error`` log). A client that sends no complete line
within 5 seconds is disconnected without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from asyncwsgi.errors import AsyncWSGIError

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_REQUEST",
    "ControlError",
    "ControlServer",
    "control_dirs",
    "default_control_dir",
    "default_control_path",
    "find_control_socket",
    "resolve_control_path",
    "send_command",
]

MAX_REQUEST = 4096
"""Longest request line in bytes, its newline included."""

IDLE_TIMEOUT = 5.0
"""Seconds a client has to send its request line."""

MAX_ANSWER = 1 << 20
"""Longest answer :func:`send_command` reads (a status answer carries JSON)."""

log = logging.getLogger("asyncwsgi.error")

Handler = Callable[[list[str]], Awaitable[str]]


class ControlError(AsyncWSGIError):
    """The control socket cannot be set up, found or reached."""


# -- where the socket lives -----------------------------------------------------------------


# AF_UNIX path bytes (108 on Linux, the NUL included), and the longest name DIR/PID.sock
# can add to DIR ("/" + a 7-digit pid + ".sock").
_SUN_PATH_MAX = 107
_SOCKET_NAME_MAX = 13


def control_dirs() -> list[str]:
    """Where default control sockets live, best first: ``$XDG_RUNTIME_DIR/asyncwsgi``
    when it names a directory; ``~/.cache/asyncwsgi``, which no other user can create
    before us; ``<tempdir>/asyncwsgi-<uid>`` last, as another user could have made it
    first (then it is refused, and said so)."""
    dirs = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isdir(runtime):
        dirs.append(os.path.join(runtime, "asyncwsgi"))
    home = os.path.expanduser("~")
    if os.path.isabs(home) and os.path.isdir(home):
        dirs.append(os.path.join(home, ".cache", "asyncwsgi"))
    dirs.append(os.path.join(tempfile.gettempdir(), f"asyncwsgi-{os.getuid()}"))
    return dirs


def _check_private_dir(path: str) -> None:
    # lstat, so that a symlink planted in a shared /tmp is refused rather than followed.
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise ControlError(f"control socket directory {path} is not a directory")
    if info.st_uid != os.getuid():
        raise ControlError(
            f"control socket directory {path} is owned by uid {info.st_uid}, not by you"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ControlError(
            f"control socket directory {path} is writable by other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); expected 0700"
        )


def _make_private_dir(path: str) -> None:
    if len(os.fsencode(path)) + _SOCKET_NAME_MAX > _SUN_PATH_MAX:
        raise ControlError(f"control socket directory {path} is too long a path for a socket")
    try:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):  # ~/.cache, made as the XDG base directory spec says
            os.makedirs(parent, 0o700, exist_ok=True)
            os.chmod(parent, 0o700)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ControlError(f"cannot create control socket directory {path}: {exc}") from exc
    else:
        # mkdir's mode goes through the umask; make it exactly 0700 whatever the umask.
        os.chmod(path, 0o700)
    _check_private_dir(path)


def default_control_dir() -> str:
    """The directory of default control sockets: the first of :func:`control_dirs` that
    is, or can be made, a directory of ours that only we can write (mode 0700). Each one
    refused is logged with its reason; :class:`ControlError` when none will do."""
    reasons = []
    for path in control_dirs():
        try:
            _make_private_dir(path)
        except ControlError as exc:
            log.warning("not using %s for the control socket: %s", path, exc)
            reasons.append(str(exc))
            continue
        return path
    raise ControlError("; ".join(reasons))


def default_control_path(pid: int | None = None) -> str:
    """``DIR/PID.sock``: the default control socket of the server with that pid (ours)."""
    if pid is None:
        pid = os.getpid()
    return os.path.join(default_control_dir(), f"{pid}.sock")


def resolve_control_path(setting: str) -> str | None:
    """The socket path the ``control_socket`` setting asks for; None when it is ``"none"``."""
    if setting == "":
        return default_control_path()
    if setting == "none":
        return None
    return setting


def _listening(path: str) -> bool:
    """Whether something accepts connections on the socket at ``path``.

    False for a socket file nobody listens on (left by a server that died) or no file.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        # Non-blocking: a listener answers a UNIX connect at once, or says its backlog is full.
        probe.setblocking(False)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except BlockingIOError:
            return True
    return True


def find_control_socket() -> str:
    """The control socket of the one asyncwsgi server of this user running on default paths.

    Every directory of :func:`control_dirs` is looked in (a server may have had to skip the
    first); one that is not private is not trusted, and is named if nothing is found.
    Stale socket files (nothing listening) are skipped and left in place: deleting them is
    the business of the server that binds the same path next.
    """
    directories = control_dirs()
    live: list[str] = []
    refused: list[str] = []
    for directory in directories:
        try:
            _check_private_dir(directory)
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        except (OSError, ControlError) as exc:
            refused.append(str(exc))
            continue
        live += _live_sockets(directory, names)
    if not live:
        where = ", ".join(directories)
        why = "".join(f" ({reason})" for reason in refused)
        raise ControlError(
            f"no running asyncwsgi server found in {where}{why}; pass --control-socket PATH"
        )
    if len(live) > 1:
        raise ControlError(
            f"several asyncwsgi servers are running ({', '.join(live)}); pass --control-socket PATH"
        )
    return live[0]


def _live_sockets(directory: str, names: list[str]) -> list[str]:
    live = []
    for name in sorted(names, key=_pid_order):
        path = os.path.join(directory, name)
        if not name.endswith(".sock"):
            continue
        try:
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                continue
            if _listening(path):
                live.append(path)
        except OSError:
            continue
    return live


def _pid_order(name: str) -> tuple[int, str]:
    stem = name.removesuffix(".sock")
    return (int(stem), name) if stem.isdigit() else (-1, name)


# -- the client -----------------------------------------------------------------------------


def send_command(path: str, words: list[str], *, timeout: float = 30.0) -> str:
    """Send one command to the control socket at ``path`` and return the answer line.

    Blocking (this is the command line's side). The answer comes back without its newline.
    Raises :class:`ControlError` when the socket does not exist, nobody listens on it, no
    answer comes within ``timeout`` seconds, or a word is empty or holds whitespace.
    """
    for word in words:
        if not word or len(word.split()) != 1:
            raise ControlError(f"a command word must be non-empty and without spaces: {word!r}")
    request = (" ".join(words) + "\n").encode("utf-8")
    deadline = _Deadline(timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.settimeout(deadline.left())
            sock.connect(path)
            sock.settimeout(deadline.left())
            sock.sendall(request)
            answer = _read_line(sock, deadline)
            if answer is None:
                raise ConnectionResetError
        except FileNotFoundError:
            raise ControlError(f"no control socket at {path} (is the server running?)") from None
        except ConnectionRefusedError:
            raise ControlError(
                f"nothing listens on control socket {path} (the server that made it is gone)"
            ) from None
        except (ConnectionResetError, BrokenPipeError):
            raise ControlError(
                f"control socket {path} closed the connection without answering"
            ) from None
        except PermissionError:
            raise ControlError(f"permission denied on control socket {path}") from None
        except TimeoutError:
            raise ControlError(
                f"no answer from control socket {path} within {timeout:g} s"
            ) from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ControlError(f"cannot talk to control socket {path}: {reason}") from None
    finally:
        sock.close()
    return answer


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self._end = time.monotonic() + timeout

    def left(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left


def _read_line(sock: socket.socket, deadline: _Deadline) -> str | None:
    """The first line the peer sends, or None when it hangs up without sending anything."""
    buffer = bytearray()
    while b"\n" not in buffer:
        if len(buffer) > MAX_ANSWER:
            raise ControlError("the control socket's answer is too long")
        sock.settimeout(deadline.left())
        chunk = sock.recv(65536)
        if not chunk:
            if buffer:
                break
            return None
        buffer += chunk
    line, _, _ = bytes(buffer).partition(b"\n")
    return line.decode("utf-8", "replace").rstrip("\r")


# -- the server -----------------------------------------------------------------------------


class ControlServer:
    """A UNIX socket server that hands each command line to ``handler`` and sends its answer.

    ``handler(words)`` gets the request's words (``["reload", "default"]``) and returns one
    line starting with ``ok`` or ``error``. Use :meth:`start` and :meth:`close`, or
    ``async with``.
    """

    def __init__(
        self,
        path: str,
        handler: Handler,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.path = path
        self._handler = handler
        self._idle_timeout = idle_timeout
        self._server: asyncio.AbstractServer | None = None
        self._identity: tuple[int, int] | None = None
        self._exchanges: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and listen. A stale socket file at the path is replaced; a live one is not."""
        if self._server is not None:
            raise RuntimeError("control server already started")
        path = self.path
        self._clear_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bound = False
        try:
            sock.bind(path)
            bound = True
            # Before listen(): until then nobody can connect, so the umask's mode is harmless.
            os.chmod(path, 0o600)
            info = os.stat(path)
            sock.listen(16)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(
                self._exchange,
                sock=sock,
                # readuntil() allows this many bytes before the newline.
                limit=MAX_REQUEST - 1,
            )
        except BaseException as exc:
            sock.close()
            if bound:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            if isinstance(exc, OSError):
                raise ControlError(f"cannot open control socket {path}: {exc}") from exc
            raise
        self._identity = (info.st_dev, info.st_ino)

    @staticmethod
    def _clear_stale(path: str) -> None:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise ControlError(f"cannot open control socket {path}: a file that is not a socket")
        try:
            live = _listening(path)
        except OSError as exc:
            raise ControlError(f"cannot check control socket {path}: {exc}") from exc
        if live:
            raise ControlError(f"control socket {path} is in use by another server")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    async def close(self) -> None:
        """Stop listening, drop clients still connected, and remove the socket file if it
        is still the one this server made (a successor may have replaced it)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        exchanges = list(self._exchanges)
        for task in exchanges:
            task.cancel()
        await asyncio.gather(*exchanges, return_exceptions=True)
        await server.wait_closed()
        identity, self._identity = self._identity, None
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if (info.st_dev, info.st_ino) == identity:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._exchanges.add(task)
        try:
            answer = await self._answer(reader)
            if answer is not None:
                writer.write(answer.encode("utf-8") + b"\n")
                await asyncio.wait_for(writer.drain(), self._idle_timeout)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self._exchanges.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> str | None:
        """The answer line to send, or None to hang up without one."""
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\n"), self._idle_timeout)
        except asyncio.TimeoutError:
            return None
        except asyncio.LimitOverrunError:
            return "error request too long"
        except asyncio.IncompleteReadError as exc:
            # EOF before a newline: a client that shut down its side after the words is
            # still understood; one that sent nothing gets nothing.
            if not exc.partial:
                return None
            raw = exc.partial
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "error request is not UTF-8"
        words = line.split()
        if not words:
            return "error empty request"
        try:
            answer = await self._handler(words)
        except Exception as exc:
            log.exception("control command %r failed", " ".join(words))
            return _one_line(f"error internal: {str(exc) or type(exc).__name__}")
        if not isinstance(answer, str) or answer.split(" ", 1)[0] not in ("ok", "error"):
            log.error("control command %r got a malformed answer: %r", " ".join(words), answer)
            return "error internal: malformed answer from the server"
        return _one_line(answer)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())
