"""systemd's notification protocol (sd_notify), for ``Type=notify`` and
``Type=notify-reload`` units.

Rule: standard library only; does nothing when ``NOTIFY_SOCKET`` is not set. The server
says ``READY=1`` once it listens, ``STOPPING=1`` when it stops, and ``RELOADING=1``
(with ``MONOTONIC_USEC``, as ``notify-reload`` requires) when a rolling restart or a
reload begins, then ``READY=1`` when the last one in progress has finished -- the new
processes serving, or the replacement given up with the old ones still serving.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

_lock = threading.Lock()
_reloading = 0


def send(message: str) -> bool:
    """Send ``message`` to the service manager; False when there is none (or it fails)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


def ready() -> None:
    send("READY=1")


def stopping() -> None:
    send("STOPPING=1")


def status(text: str) -> None:
    """A ``STATUS=`` line: what ``systemctl status`` shows."""
    send("STATUS=" + text.replace("\n", " "))


def watchdog_interval() -> float:
    """Half of ``WATCHDOG_USEC`` in seconds when systemd watches this process (and
    ``WATCHDOG_PID``, if set, is this one); 0 otherwise."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (pid and pid != str(os.getpid())):
        return 0.0
    return int(usec) / 2_000_000


def watchdog() -> None:
    send("WATCHDOG=1")


def reload_begins() -> None:
    """A reload started; the first of several in flight says RELOADING=1."""
    global _reloading
    with _lock:
        _reloading += 1
        first = _reloading == 1
    if first:
        send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")


def reload_ends(quiet: bool = False) -> None:
    """A reload finished (or was given up); the last one says READY=1 (not when
    ``quiet``: the server is stopping)."""
    global _reloading
    with _lock:
        if _reloading == 0:
            return
        _reloading -= 1
        last = _reloading == 0
    if last and not quiet:
        send("READY=1")


@contextlib.contextmanager
def reloading() -> Iterator[None]:
    """Around a reload request (SIGHUP, ``reload``): RELOADING=1 now; READY=1 when the
    restarts it begins are over -- at once if it began none (an embedded script is
    re-imported by its next request)."""
    reload_begins()
    try:
        yield
    finally:
        reload_ends()
