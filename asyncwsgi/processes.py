"""The process pool manager: keep a group of processes at strength, replace them one at a time.

Rule: asyncio, ``subprocess`` and signals, and nothing of the package but ``config`` and
``errors``; nothing here knows HTTP, WSGI or what the processes run. A :class:`Launcher`
says how to start a process and how to ask it to stop; the launcher calls
:meth:`ProcessGroup.ready` when the process has said READY. The same manager runs daemon
process groups and the copies of an embedded-mode server.

Replacement is always *replacement first*: a fresh process is started and READY before
the process it replaces is asked to stop, one process at a time, so a group of one
process keeps answering through its own restart. A process that fails to boot (exit
status ``EXIT_BOOT_FAILED`` before READY) marks the group failed instead of being
respawned in a loop; :meth:`ProcessGroup.restart` (the script changed again, SIGHUP, the
``reload`` command) tries anew.
A process that dies after READY is respawned, after a pause of 0.1 s the first time (so
that a SIGTERM to the whole process group is seen as the server's shutdown first) and
with a backoff that doubles when it keeps dying young.

A process not READY within ``startup_timeout`` (its import hangs) is killed and logged.
At start-up that fails the group; a replacement's generation is given up instead -- the
processes it was to replace keep serving, no other replacement is tried -- until the next
:meth:`ProcessGroup.restart`. Every process the manager starts calls
:func:`die_with_parent` first, so none outlives the server, however the server dies.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import enum
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from asyncwsgi.config import ProcessSettings
from asyncwsgi.errors import ScriptLoadError

logger = logging.getLogger("asyncwsgi.error")

# The exit status of a process whose application could not be imported.
EXIT_BOOT_FAILED = 3
# A process that lived longer than this before dying resets the respawn backoff.
_STABLE_AFTER = 10.0
_MAX_BACKOFF = 30.0
# Even the first replacement of a process that died waits this long: a SIGTERM sent to
# the whole process group (systemd's KillMode=control-group, ``kill -TERM -PGID``) reaches
# the processes and the server together, and the server's own shutdown must win the race.
_RESPAWN_PAUSE = 0.1


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


class ChildState(enum.Enum):
    STARTING = "starting"  # spawned, not READY yet
    READY = "ready"  # takes work
    RETIRING = "retiring"  # asked to finish what it has and exit; gets no new work
    EXITED = "exited"


class Child:
    """One process of a group, as the manager sees it: a daemon process, or a copy of an
    embedded server. (Threads that run requests are *workers*; these are processes.)"""

    __slots__ = (
        "_timers",
        "data",
        "doomed",
        "exit_status",
        "generation",
        "group",
        "max_requests",
        "pid",
        "process",
        "ready_at",
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
        """Start the process; call ``child.group.ready(child)`` once it is READY."""
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


class ProcessGroup:
    """``size`` processes kept READY; rolling replacement; crash respawn; boot failure."""

    def __init__(
        self,
        name: str,
        launcher: Launcher,
        settings: ProcessSettings,
        *,
        kind: str = "process",
        target: str = "",
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.size = settings.processes
        self.kind = kind
        self.target = target or name
        self.launcher = launcher
        self.graceful_timeout = settings.graceful_timeout
        self.shutdown_timeout = settings.shutdown_timeout
        self.restart_interval = settings.restart_interval
        self.maximum_requests = settings.maximum_requests
        self.jitter = settings.jitter
        self.startup_timeout = settings.startup_timeout
        self.on_change = on_change
        self.generation = 1
        self.children: list[Child] = []
        self.failed = False
        self.closing = False
        self.restarts = 0  # processes replaced so far (not counting crash respawns)
        # A generation whose replacement did not boot in time: not tried again until
        # restart() starts the next one (0: none).
        self.given_up = 0
        self._crashes = 0
        self._hold_until = 0.0
        self._hold_timer: asyncio.TimerHandle | None = None
        self._started: asyncio.Future[None] | None = None
        self._all_exited: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public ------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"{self.kind} group {self.name!r}"

    @property
    def ready_children(self) -> list[Child]:
        return [w for w in self.children if w.state is ChildState.READY]

    async def start(self) -> None:
        """Start the processes and wait until every one is READY.

        Raises ``ScriptLoadError`` if one fails to boot (its own log says why).
        """
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.create_future()
        self._reconcile()
        try:
            await self._started
        except BaseException:
            await self.close()
            raise
        finally:
            self._started = None

    def ready(self, child: Child) -> None:
        """Launcher: ``child`` said READY."""
        if child.state is not ChildState.STARTING:
            return
        child.state = ChildState.READY
        child.ready_at = time.monotonic()
        if self.maximum_requests:
            child.max_requests = self.maximum_requests + random.randint(0, self.jitter)
        if self.restart_interval and self._loop is not None:
            child._timers.append(
                self._loop.call_later(
                    self.restart_interval, self.replace, child, "restart interval"
                )
            )
        replacing = [w for w in self.children if w.state is ChildState.READY and w.stale]
        took = (child.ready_at - child.started_at) * 1000
        if self.closing:
            self._retire(child)
            return
        if replacing or child.generation > 1:
            logger.info(
                "%s: process %d (generation %d) ready in %.0f ms",
                self.label,
                child.pid,
                child.generation,
                took,
            )
        else:
            logger.debug("%s: process %d ready in %.0f ms", self.label, child.pid, took)
        self._reconcile()
        started = self._started
        if started is not None and not started.done() and len(self.ready_children) >= self.size:
            started.set_result(None)
        self._changed()

    def restart(self, reason: str) -> None:
        """Replace every process, one at a time, replacement first."""
        if self.closing:
            return
        self.generation += 1
        if self.failed:
            self.failed = False
            self._crashes = 0
            self._hold_until = 0.0
            logger.info("%s: %s; trying to start it again", self.label, reason)
        else:
            logger.info(
                "%s: %s; replacing %d process(es) one at a time (generation %d)",
                self.label,
                reason,
                len([w for w in self.children if w.state is not ChildState.EXITED]),
                self.generation,
            )
        self._reconcile()

    def replace(self, child: Child, reason: str) -> None:
        """Replace one process gracefully (a replacement is READY before it stops)."""
        if self.closing or child.state not in (ChildState.STARTING, ChildState.READY):
            return
        if child.doomed:
            return
        child.doomed = reason
        logger.info("%s: replacing process %d (%s)", self.label, child.pid, reason)
        self._reconcile()

    def kill(self, child: Child) -> None:
        """Stop a process now (SIGKILL); its replacement is started as after a crash."""
        self._signal(child, signal.SIGKILL)

    async def close(self, timeout: float | None = None) -> None:
        """Retire every process and wait for them to exit; kill what outlives the grace."""
        self.closing = True
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        for child in list(self.children):
            if child.state is ChildState.STARTING:
                self._signal(child, signal.SIGTERM)
                self._arm_kill(child, self.shutdown_timeout)
            elif child.state is ChildState.READY:
                self._retire(child)
        if not self.children:
            return
        if self._all_exited is None:  # a second close() waits on the same event
            self._all_exited = asyncio.Event()
        limit = self.graceful_timeout + self.shutdown_timeout + 1.0
        try:
            await asyncio.wait_for(
                self._all_exited.wait(), timeout if timeout is not None else limit
            )
        except asyncio.TimeoutError:
            for child in self.children:
                self._signal(child, signal.SIGKILL)
            try:
                await asyncio.wait_for(self._all_exited.wait(), 2.0)
            except asyncio.TimeoutError:
                logger.error("%s: processes still running at exit: %s", self.label, self.children)

    # -- the decisions -----------------------------------------------------------------

    def _reconcile(self) -> None:
        """Bring the group towards ``size`` READY processes of the current generation."""
        if self.closing or self.failed:
            return
        live = [w for w in self.children if w.state in (ChildState.STARTING, ChildState.READY)]
        ready = [w for w in live if w.state is ChildState.READY]
        # A fresh process is READY beyond strength: the stale one it replaces stops now.
        while len(ready) > self.size:
            stale = [w for w in ready if w.stale]
            victim = min(stale or ready, key=lambda w: (w.generation, w.ready_at))
            ready.remove(victim)
            live.remove(victim)
            self._retire(victim)
        starting = any(w.state is ChildState.STARTING for w in live)
        now = time.monotonic()
        if now < self._hold_until:
            self._hold(self._hold_until - now)
            return
        if len(live) < self.size:
            for _ in range(self.size - len(live)):
                self._spawn()
        elif (
            not starting
            and self.given_up != self.generation
            and any(w.stale for w in live)
            # One at a time, strictly: the next replacement waits until the process the
            # last one replaced has finished its requests and gone.
            and not any(w.state is ChildState.RETIRING and w.stale for w in self.children)
        ):
            self._spawn()

    def _spawn(self) -> None:
        child = Child(self, self.generation)
        self.children.append(child)
        try:
            process = self.launcher.spawn(child)
        except Exception as exc:
            logger.exception("%s: could not start a process", self.label)
            self.children.remove(child)
            self._fail(f"could not start a process: {exc}")
            return
        child.process = process
        child.pid = process.pid
        self._watch(child)
        if self.startup_timeout and self._loop is not None:
            child._timers.append(
                self._loop.call_later(self.startup_timeout, self._boot_overdue, child)
            )

    def _boot_overdue(self, child: Child) -> None:
        if child.state is not ChildState.STARTING or self.closing:
            return
        child.timed_out = True
        logger.error(
            "%s: process %d was not ready within %g s (startup_timeout: is its import "
            "stuck?); killing it",
            self.label,
            child.pid,
            self.startup_timeout,
        )
        self._signal(child, signal.SIGKILL)

    def _retire(self, child: Child) -> None:
        if child.state in (ChildState.RETIRING, ChildState.EXITED):
            return
        child.state = ChildState.RETIRING
        if child.stale and not self.closing and not self.failed:
            # Replaced; not retired because the group failed (nothing replaces it then).
            self.restarts += 1
        for timer in child._timers:
            timer.cancel()
        child._timers.clear()
        try:
            self.launcher.retire(child)
        except Exception:
            logger.exception("%s: could not ask process %d to stop", self.label, child.pid)
            self._signal(child, signal.SIGTERM)
        loop = self._loop
        if loop is not None:
            child._timers.append(loop.call_later(self.graceful_timeout, self._overdue, child))
        self._changed()

    def _overdue(self, child: Child) -> None:
        if child.state is ChildState.EXITED:
            return
        logger.warning(
            "%s: process %d did not finish within %g s; stopping it",
            self.label,
            child.pid,
            self.graceful_timeout,
        )
        self._signal(child, signal.SIGTERM)
        self._arm_kill(child, self.shutdown_timeout)

    def _arm_kill(self, child: Child, delay: float) -> None:
        if self._loop is not None:
            child._timers.append(self._loop.call_later(delay, self._kill_now, child))

    def _kill_now(self, child: Child) -> None:
        if child.state is not ChildState.EXITED:
            logger.warning("%s: killing process %d", self.label, child.pid)
            self._signal(child, signal.SIGKILL)

    def _signal(self, child: Child, signum: int) -> None:
        process = child.process
        if process is not None and child.state is not ChildState.EXITED:
            try:
                process.send_signal(signum)
            except ProcessLookupError:
                pass

    def _fail(self, why: str) -> None:
        self.failed = True
        logger.error(
            "%s failed: %s; requests get 503 until the script changes again", self.label, why
        )
        for child in list(self.children):
            if child.state in (ChildState.STARTING, ChildState.READY):
                self._retire(child)
        started = self._started
        if started is not None and not started.done():
            started.set_exception(ScriptLoadError(self.target, f"{self.label}: {why}"))
        self._changed()

    def _boot_timed_out(self, child: Child) -> None:
        why = f"process {child.pid} was not ready within {self.startup_timeout:g} s"
        if child.generation != self.generation:
            return  # a generation already left behind
        if self._started is not None or not self.ready_children:
            self._fail(why)  # nothing serves: as if it could not load
            return
        self.given_up = self.generation
        logger.error(
            "%s: %s; the processes it was to replace keep serving; the next change or "
            "reload tries again",
            self.label,
            why,
        )

    def _hold(self, delay: float) -> None:
        if self._hold_timer is None and self._loop is not None:
            self._hold_timer = self._loop.call_later(delay, self._release_hold)

    def _release_hold(self) -> None:
        self._hold_timer = None
        self._reconcile()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- process exits -----------------------------------------------------------------

    def _watch(self, child: Child) -> None:
        loop = self._loop
        assert loop is not None
        try:
            pidfd = os.pidfd_open(child.pid)
        except (AttributeError, OSError):
            self._poll_exit(child)
            return

        def exited() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._reap(child)

        loop.add_reader(pidfd, exited)

    def _poll_exit(self, child: Child) -> None:
        process = child.process
        assert process is not None and self._loop is not None
        if process.poll() is None:
            self._loop.call_later(0.05, self._poll_exit, child)
        else:
            self._reap(child)

    def _reap(self, child: Child) -> None:
        process = child.process
        assert process is not None
        try:
            status: int | None = process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - the pidfd said it exited
            status = None
        previous = child.state
        child.state = ChildState.EXITED
        child.exit_status = status
        for timer in child._timers:
            timer.cancel()
        child._timers.clear()
        try:
            self.launcher.exited(child)
        except Exception:
            logger.exception("%s: cleaning up after process %d", self.label, child.pid)
        self.children.remove(child)
        if previous is ChildState.RETIRING or self.closing:
            logger.info(
                "%s: process %d (generation %d) stopped (%s)",
                self.label,
                child.pid,
                child.generation,
                describe_status(status),
            )
        elif previous is ChildState.STARTING and status == EXIT_BOOT_FAILED:
            if child.generation == self.generation:
                self._fail(f"process {child.pid} could not load the application")
        elif previous is ChildState.STARTING and child.timed_out:
            self._boot_timed_out(child)
        else:
            lived = time.monotonic() - child.started_at
            self._crashes = 1 if lived > _STABLE_AFTER else self._crashes + 1
            delay = (
                _RESPAWN_PAUSE
                if self._crashes <= 1
                else min(_MAX_BACKOFF, 0.5 * 2 ** (self._crashes - 2))
            )
            self._hold_until = time.monotonic() + delay
            if self._started is not None and self._crashes >= 3:
                self._fail(f"process {child.pid} died while starting ({describe_status(status)})")
            else:
                logger.error(
                    "%s: process %d died (%s)%s; starting a replacement%s",
                    self.label,
                    child.pid,
                    describe_status(status),
                    " while starting" if previous is ChildState.STARTING else "",
                    f" in {delay:g} s" if delay > _RESPAWN_PAUSE else "",
                )
        if self._all_exited is not None and not self.children:
            self._all_exited.set()
        self._reconcile()
        self._changed()
