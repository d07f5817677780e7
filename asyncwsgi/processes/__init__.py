"""The process pool manager: keep a group of processes at strength, replace them one at a time.

Rule: asyncio, ``subprocess`` and signals, and nothing of the package but ``config``,
``errors`` and ``notify``; nothing here knows HTTP, WSGI or what the processes run. A
:class:`Launcher` says how to start a process and how to ask it to stop; the process
says READY in a report, or the launcher calls :meth:`ProcessGroup.ready`. The same
manager runs daemon process groups and the copies of an embedded-mode server.

Replacement is always *replacement first*: a fresh process is started and READY before
the process it replaces is asked to stop, one process at a time, so a group of one
process keeps answering through its own restart.

Keep the last good version: a replacement that fails to boot (exit status
``EXIT_BOOT_FAILED``), dies before READY or is not READY within ``startup_timeout`` is
killed and logged once; its generation is given up and the group is *degraded*: the
processes it was to replace keep serving, and no other replacement is tried until
:meth:`ProcessGroup.restart` (the script changed again, SIGHUP, the ``reload`` command).
With nothing to keep -- at start-up, or when the last serving process is gone -- a
process that cannot boot marks the group *failed* instead of being respawned in a loop.
A process that dies after READY is respawned, after a pause of 0.1 s the first time (so
that a SIGTERM to the whole process group is seen as the server's shutdown first) and
with a backoff that doubles when it keeps dying young.

Each process gets a *report pipe*: JSON lines saying READY (when the launcher has no
channel of its own), why it could not boot, and the source files it has imported (for
``--reload-on-changes``); see :func:`report`. Every process the manager starts calls
:func:`die_with_parent` first, so none outlives the server, however the server dies.
"""

from asyncwsgi.processes.child import (
    EXIT_BOOT_FAILED,
    REPORT_INTERVAL,
    Child,
    ChildState,
    Launcher,
    describe_status,
    die_with_parent,
    report,
)
from asyncwsgi.processes.group import ProcessGroup

__all__ = [
    "EXIT_BOOT_FAILED",
    "REPORT_INTERVAL",
    "Child",
    "ChildState",
    "Launcher",
    "ProcessGroup",
    "describe_status",
    "die_with_parent",
    "report",
]
