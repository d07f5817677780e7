"""``--cpu-affinity``: each process that runs the application kept on one core.

A Python process runs its application on one core's worth of CPU at most (the GIL), but
its event loop and worker threads hand each request across threads; when the scheduler
puts those threads on different cores, each hand-off wakes a thread on another core,
which costs more than the request itself on some machines. A process held to one core
makes those hand-offs cheap (benchmarks/README.md, "cpu-affinity").

The server picks the cores: a copy of the server or a daemon process is started on the
core the fewest current processes hold (among the cores this process may use), and a
single embedded server takes the first of them. A replacement is counted against the
cores of the processes of the current generation only, so it takes the core the process
it replaces leaves.
"""

from __future__ import annotations

import logging
import os

from asyncwsgi.processes.child import Child

logger = logging.getLogger("asyncwsgi.error")

CPU_ENV = "ASYNCWSGI_CPU"  # the core a started process holds itself to


def usable_cores() -> list[int]:
    """The cores this process may run on, lowest first."""
    return sorted(os.sched_getaffinity(0))


def hold_to(core: int) -> None:
    """Keep this process's threads, and every thread it starts from now on, on ``core``.

    Call it before the process starts threads: a thread started earlier keeps its cores.
    """
    try:
        os.sched_setaffinity(0, {core})
    except OSError as exc:
        logger.warning("--cpu-affinity: cannot hold the process to core %d: %s", core, exc)
        return
    logger.info("held to core %d (--cpu-affinity)", core)


def hold_self() -> None:
    """A process started with :data:`CPU_ENV` holds itself to that core; one started
    without it (a single server) to the first core it may use."""
    given = os.environ.pop(CPU_ENV, "")
    hold_to(int(given) if given.isdigit() else usable_cores()[0])


class CoreChooser:
    """Hands out cores to the processes a server starts, the least held first."""

    def __init__(self) -> None:
        self._held: dict[Child, int] = {}

    def take(self, child: Child) -> int:
        cores = usable_cores()
        count = dict.fromkeys(cores, 0)
        for other, core in self._held.items():
            if core in count and not other.stale:
                count[core] += 1
        core = min(cores, key=lambda c: (count[c], c))
        self._held[child] = core
        return core

    def release(self, child: Child) -> None:
        self._held.pop(child, None)


# One for the whole server: the processes of every group share the machine's cores.
CORES = CoreChooser()
