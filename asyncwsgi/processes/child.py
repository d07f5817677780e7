"""One process of a group as the manager sees it, and what the process itself calls:
:func:`die_with_parent` first, :func:`report` to tell the group things (see the package
docstring)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import enum
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from asyncwsgi.processes.group import ProcessGroup

logger = logging.getLogger("asyncwsgi.error")

# The exit status of a process whose application could not be imported.
EXIT_BOOT_FAILED = 3


# How often a process looks for newly imported source files to report (seconds).
REPORT_INTERVAL = 1.0

# prctl(2): the signal a process gets when the thread that started it exits.
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Make this process exit when ``parent`` (the process that started it) dies, however
    it dies -- SIGKILL included: the kernel's parent-death signal on Linux, else a thread
    that watches ``getppid()``. Called first thing in every process a group starts."""
    if not parent:
        return
    armed = False
    if sys.platform == "linux":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    # The parent may have died before the signal was armed: then it never comes.
    if os.getppid() != parent:
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def report(fd: int, **message: Any) -> None:
    """Child side: one report on the pipe the group gave (``{"ready": true}``,
    ``{"error": text}``, ``{"files": [...]}``). A group that is gone is no error."""
    if fd < 0:
        return
    data = json.dumps(message).encode() + b"\n"
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass


class ChildState(enum.Enum):
    STARTING = "starting"  # spawned, not READY yet
    READY = "ready"  # takes work
    RETIRING = "retiring"  # asked to finish what it has and exit; gets no new work
    EXITED = "exited"


class Child:
    """One process of a group, as the manager sees it: a daemon process, or a copy of an
    embedded server. (Threads that run requests are *workers*; these are processes.)"""

    __slots__ = (
        "_report_read",
        "_reports",
        "_timers",
        "data",
        "doomed",
        "error",
        "exit_status",
        "generation",
        "group",
        "max_requests",
        "pid",
        "process",
        "ready_at",
        "report_fd",
        "requests",
        "started_at",
        "state",
        "timed_out",
    )

    def __init__(self, group: ProcessGroup, generation: int) -> None:
        self.group = group
        self.generation = generation
        self.state = ChildState.STARTING
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.started_at = time.monotonic()
        self.ready_at = 0.0
        self.doomed = ""  # why it is to be replaced though of the current generation
        self.requests = 0  # counted by whoever hands it work
        self.max_requests = 0  # 0: no limit
        self.exit_status: int | None = None
        self.timed_out = False  # killed for not being READY within startup_timeout
        self.error = ""  # why it could not boot, as it reported
        self.report_fd = -1  # the write end of its report pipe, for the launcher to pass
        self._report_read = -1  # the group's end of it
        self._reports = b""  # a report line not complete yet
        self.data: Any = None  # the launcher's (e.g. the daemon connection)
        self._timers: list[asyncio.TimerHandle] = []

    @property
    def stale(self) -> bool:
        """To be replaced: an older generation than the group's, or doomed."""
        return bool(self.doomed) or self.generation < self.group.generation

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} gen={self.generation} {self.state.value}>"


class Launcher(Protocol):
    """How a group's processes are started and stopped."""

    def spawn(self, child: Child) -> subprocess.Popen[bytes]:
        """Start the process, passing it ``child.report_fd``; READY comes from the
        process's report or from ``child.group.ready(child)``."""
        ...

    def retire(self, child: Child) -> None:
        """Ask the process to finish the work it has and exit (it gets no more)."""
        ...

    def exited(self, child: Child) -> None:
        """The process is gone: release what the launcher holds for it."""
        ...


def describe_status(status: int | None) -> str:
    if status is None:
        return "unknown status"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"
