"""The group: keeps ``size`` processes READY, replaces them one at a time, replacement
first, and keeps the last good generation serving when a replacement cannot boot (see the
package docstring)."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

from asyncwsgi import notify
from asyncwsgi.config import ProcessSettings
from asyncwsgi.errors import ScriptLoadError
from asyncwsgi.processes.child import (
    EXIT_BOOT_FAILED,
    Child,
    ChildState,
    Launcher,
    describe_status,
)

logger = logging.getLogger("asyncwsgi.error")

# A process that lived longer than this before dying resets the respawn backoff.
_STABLE_AFTER = 10.0
_MAX_BACKOFF = 30.0
# Even the first replacement of a process that died waits this long: a SIGTERM sent to
# the whole process group (systemd's KillMode=control-group, ``kill -TERM -PGID``) reaches
# the processes and the server together, and the server's own shutdown must win the race.
_RESPAWN_PAUSE = 0.1


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
        on_files: Callable[[list[str], float], None] | None = None,
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
        # A process reported source files it imported (and when it was started).
        self.on_files = on_files
        self.generation = 1
        self.children: list[Child] = []
        self.failed = False
        self.closing = False
        # Processes replaced or respawned, by why: reload, crash, maximum_requests, ...
        self.replaced: collections.Counter[str] = collections.Counter()
        # A generation whose replacement did not boot: not tried again until restart()
        # starts the next one (0: none).
        self.given_up = 0
        # Set while a given-up generation's predecessors serve: what failed, and when.
        self.degraded: dict[str, Any] | None = None
        self._rolling = False  # a restart in progress (systemd is told RELOADING=1)
        self._crashes = 0
        self._hold_until = 0.0
        self._hold_timer: asyncio.TimerHandle | None = None
        self._started: asyncio.Future[None] | None = None
        self._all_exited: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public ------------------------------------------------------------------------

    @property
    def restarts(self) -> int:
        """Processes replaced so far (crash respawns are not restarts)."""
        return sum(n for reason, n in self.replaced.items() if reason != "crash")

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
        if child.state is not ChildState.STARTING or child.timed_out:
            return  # (a READY read after startup_timeout killed it counts for nothing)
        child.state = ChildState.READY
        if child.generation == self.given_up:
            # A generation given up boots after all (it was a slow start): not degraded.
            self.given_up = 0
            self.degraded = None
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
        if not self._rolling and self._started is None:
            self._rolling = True
            notify.reload_begins()
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
        self._settled(quiet=True)  # stopping: no READY=1 to systemd
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
        if len(live) < self.size and (self.given_up != self.generation or not live):
            # While degraded, a lost process is not replaced by one of the generation
            # that could not boot -- unless none is left to serve.
            for _ in range(self.size - len(live)):
                self._spawn()
                if self.failed or self.given_up == self.generation:
                    break  # no process could be started: not another try now
        elif (
            not starting
            and self.given_up != self.generation
            and any(w.stale for w in live)
            # One at a time, strictly: the next replacement waits until the process the
            # last one replaced has finished its requests and gone.
            and not any(w.state is ChildState.RETIRING and w.stale for w in self.children)
        ):
            self._spawn()
        if self._rolling and (
            self.given_up == self.generation
            or not any(w.stale or w.state is ChildState.STARTING for w in live)
        ):
            if self.degraded is not None and self.given_up != self.generation:
                logger.info(
                    "%s: generation %d serving; no longer degraded", self.label, self.generation
                )
                self.degraded = None
            self._settled()

    def _settled(self, quiet: bool = False) -> None:
        """A restart is over: done, or given up (systemd is told READY=1)."""
        if self._rolling:
            self._rolling = False
            notify.reload_ends(quiet=quiet)

    def _spawn(self) -> None:
        child = Child(self, self.generation)
        read_end = -1
        try:
            read_end, child.report_fd = os.pipe()
            os.set_blocking(read_end, False)
            process = self.launcher.spawn(child)
        except Exception as exc:  # out of descriptors or processes, most likely
            logger.exception("%s: could not start a process", self.label)
            if read_end >= 0:
                os.close(read_end)
            why = f"could not start a process: {exc}"
            if self._started is None and self.ready_children:
                self._give_up(why, why)
            else:
                self._fail(why)
            return
        finally:
            if child.report_fd >= 0:
                os.close(child.report_fd)
                child.report_fd = -1
        self.children.append(child)
        child.process = process
        child.pid = process.pid
        assert self._loop is not None
        child._report_read = read_end
        self._loop.add_reader(read_end, self._read_reports, child)
        self._watch(child)
        if self.startup_timeout and self._loop is not None:
            child._timers.append(
                self._loop.call_later(self.startup_timeout, self._boot_overdue, child)
            )

    def _read_reports(self, child: Child) -> None:
        fd = child._report_read
        if fd < 0:
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_reports(child)
            return
        lines = (child._reports + data).split(b"\n")
        child._reports = lines.pop()
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                logger.warning("%s: process %d: unreadable report", self.label, child.pid)
                continue
            if not isinstance(message, dict):
                continue
            if isinstance(message.get("error"), str):
                child.error = message["error"]
            files = message.get("files")
            if isinstance(files, list) and self.on_files is not None:
                started = time.time() - (time.monotonic() - child.started_at)
                self.on_files([f for f in files if isinstance(f, str)], started)
            if message.get("ready") is True:
                self.ready(child)

    def _close_reports(self, child: Child) -> None:
        fd, child._report_read = child._report_read, -1
        if fd >= 0 and self._loop is not None:
            self._loop.remove_reader(fd)
            os.close(fd)

    def _boot_overdue(self, child: Child) -> None:
        if child.state is not ChildState.STARTING or self.closing:
            return
        child.timed_out = True
        # Logged once, when it has gone (_reap): killed, and what that leaves serving.
        logger.debug("%s: killing process %d (startup_timeout)", self.label, child.pid)
        self._signal(child, signal.SIGKILL)

    def _retire(self, child: Child) -> None:
        if child.state in (ChildState.RETIRING, ChildState.EXITED):
            return
        child.state = ChildState.RETIRING
        if child.stale and not self.closing and not self.failed:
            # Replaced; not retired because the group failed (nothing replaces it then).
            self.replaced[reason_kind(child.doomed)] += 1
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

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every process of the group that has not exited."""
        for child in list(self.children):
            self._signal(child, signum)

    def _signal(self, child: Child, signum: int) -> None:
        process = child.process
        if process is not None and child.state is not ChildState.EXITED:
            try:
                process.send_signal(signum)
            except ProcessLookupError:
                pass

    def _fail(self, why: str) -> None:
        self.failed = True
        self.degraded = None
        self._settled()
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

    def _boot_failed(self, child: Child, why: str) -> bool:
        """``child`` could not boot: give its generation up if other processes serve,
        else fail the group (nothing to keep). False: handle it as a crash instead."""
        if child.generation != self.generation:
            logger.info("%s: %s (generation %d, superseded)", self.label, why, child.generation)
            return True
        serving = self.ready_children
        if self._started is not None or not serving:
            self._fail(why)  # nothing to keep: no respawn loop either
            return True
        if self.given_up == self.generation:
            return True  # a sibling, killed when its generation was given up
        if any(w.generation == self.generation for w in serving):
            # This generation has booted already: a one-off (a slow start under load).
            return False
        self._give_up(why, child.error or why)
        return True

    def _give_up(self, why: str, error: str) -> None:
        """Degraded: this generation is not tried again until restart(); the processes
        serving now go on."""
        serving = self.ready_children
        self.given_up = self.generation
        self.degraded = {
            "error": error,
            "failed_generation": self.generation,
            "serving_generation": max(w.generation for w in serving),
            "since": time.time(),
        }
        for other in self.children:  # its siblings, if several were starting
            if other.generation == self.generation and other.state is ChildState.STARTING:
                self._signal(other, signal.SIGKILL)
        logger.error(
            "%s: %s; keeping generation %d serving (degraded); the next change or reload "
            "tries again",
            self.label,
            why,
            self.degraded["serving_generation"],
        )
        self._settled()

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

    def _replacing(self, child: Child) -> bool:
        """``child`` was to replace processes of an older generation that still serve."""
        return self._started is None and any(
            w.generation < child.generation for w in self.ready_children
        )

    def _reap(self, child: Child) -> None:
        process = child.process
        assert process is not None
        self._read_reports(child)  # what it said before it went (why it could not boot)
        self._close_reports(child)
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
        elif previous is ChildState.STARTING and (status == EXIT_BOOT_FAILED or child.error):
            # (It may have said why and been killed by startup_timeout before it exited.)
            if not self._boot_failed(child, f"process {child.pid} could not load the application"):
                self._crashed(child, status, previous)
        elif previous is ChildState.STARTING and child.timed_out:
            if not self._boot_failed(
                child,
                f"process {child.pid} was not ready within {self.startup_timeout:g} s "
                "(startup_timeout: is its import stuck?) and was killed",
            ):
                self._crashed(child, status, previous)
        elif (
            previous is ChildState.STARTING
            and self._replacing(child)
            # Asked to stop (a SIGTERM to the whole process group is the server's
            # shutdown, seen first by its children): not the new code's fault.
            and status not in (-signal.SIGTERM, -signal.SIGINT)
        ):
            if not self._boot_failed(
                child, f"process {child.pid} died before it was ready ({describe_status(status)})"
            ):
                self._crashed(child, status, previous)
        elif self.given_up == self.generation and self.ready_children:
            logger.error(
                "%s: process %d died (%s); not replaced while generation %d cannot start "
                "(the next change or reload tries again)",
                self.label,
                child.pid,
                describe_status(status),
                self.generation,
            )
        else:
            self._crashed(child, status, previous)
        if self._all_exited is not None and not self.children:
            self._all_exited.set()
        self._reconcile()
        self._changed()

    def _crashed(self, child: Child, status: int | None, previous: ChildState) -> None:
        """A process died unasked: respawned, with a backoff if they keep dying young."""
        lived = time.monotonic() - child.started_at
        self.replaced["crash"] += 1
        self._crashes = 1 if lived > _STABLE_AFTER else self._crashes + 1
        delay = (
            _RESPAWN_PAUSE
            if self._crashes <= 1
            else min(_MAX_BACKOFF, 0.5 * 2 ** (self._crashes - 2))
        )
        self._hold_until = time.monotonic() + delay
        if self._started is not None and self._crashes >= 3:
            self._fail(f"process {child.pid} died while starting ({describe_status(status)})")
            return
        logger.error(
            "%s: process %d died (%s)%s; starting a replacement%s",
            self.label,
            child.pid,
            describe_status(status),
            " while starting" if previous is ChildState.STARTING else "",
            f" in {delay:g} s" if delay > _RESPAWN_PAUSE else "",
        )


_KINDS = (
    ("maximum requests", "maximum_requests"),
    ("restart interval", "restart_interval"),
    ("inactivity-timeout", "inactivity_timeout"),
    ("memory", "memory_limit"),
    ("timed out", "request_timeout"),
    ("does not answer", "unresponsive"),
)


def reason_kind(reason: str) -> str:
    """A replacement's reason as a metric label: ``reload`` for a new generation (a
    change, SIGHUP, ``reload``), else the limit that asked for it."""
    if not reason:
        return "reload"
    for words, kind in _KINDS:
        if words in reason:
            return kind
    return "other"
