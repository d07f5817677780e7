"""Daemon mode's runner: the process group, and which daemon gets each request.

Everything here runs on the event loop thread. The HTTP layer (or ``WSGIApp`` in daemon
mode) hands over an exchange through its loop side; :class:`DaemonRunner` picks a READY
daemon process with a free thread -- a fresh one first -- and gives the request to that
process's :class:`~asyncwsgi.daemon.link.DaemonLink`. Requests wait in the front, not in
a daemon, when every thread is busy, so a request is never stuck behind a daemon that is
about to be replaced or that died.

Liveness: every READY (or retiring) daemon is sent a PING each second. One that has not
answered for :data:`UNRESPONSIVE_AFTER` seconds (SIGSTOPped, or a C call holding the
GIL) gets no new request and is replaced, replacement first; once its replacement is
READY, or after :data:`KILL_AFTER` seconds of silence, it is killed, and what it was
running gets 502.

The script is checked here, as in embedded mode, once per event-loop tick, but on a
helper thread and without holding the request back: a change starts a rolling restart
of the group, and requests keep going to the old processes until the fresh ones are
READY (docs/DESIGN.md, "Script reloading").
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from asyncwsgi import config
from asyncwsgi.config import ProcessSettings
from asyncwsgi.core.exchange import LoopExchange
from asyncwsgi.daemon import launch, wire
from asyncwsgi.daemon.link import DaemonLink, answer
from asyncwsgi.processes import Child, ChildState, ProcessGroup
from asyncwsgi.processes.affinity import CORES
from asyncwsgi.processes.dumps import collect, make_dump_dir, remove_dump_dir
from asyncwsgi.scripts.changes import ChangeWatcher, changed_reason, script_folder
from asyncwsgi.scripts.loader import is_script_path
from asyncwsgi.scripts.watch import FileWatch, StatKey, TickStat, stat_key

logger = logging.getLogger("asyncwsgi.error")

# Liveness (docs/DESIGN.md, "Limits and timeouts"): seconds.
PING_INTERVAL: Final = 1.0
UNRESPONSIVE_AFTER: Final = 3.0  # no PONG for this long: no new requests, replaced
KILL_AFTER: Final = 30.0  # no PONG for this long: killed (gunicorn's worker timeout)


class DaemonRunner:
    """The application runner of daemon mode, and the launcher of its process group."""

    def __init__(
        self,
        *,
        app: str,
        group: str,
        settings: ProcessSettings,
        callable_name: str,
        script_reloading: bool,
        forwarded_allow_ips: str,
        log_level: str,
        script_name: str = "",
        title: str = "",
        send_timeout: float = config.default("send_timeout"),
        reload_on_changes: bool = False,
        reload_extra: tuple[str, ...] = (),
        reload_site_packages: bool = False,
        cpu_affinity: bool = False,
        error_logfile: str = "",
        log_config: str = "",
        slow_request: float = 0.0,
    ) -> None:
        self.app = os.path.abspath(app) if is_script_path(app) else app
        self.title = title
        self.script = self.app if is_script_path(app) else ""
        self.threads = settings.threads
        self.settings = settings
        self.callable_name = callable_name
        self.script_reloading = script_reloading and bool(self.script)
        self.script_name = script_name.rstrip("/")
        self.forwarded_allow_ips = forwarded_allow_ips
        self.log_level = log_level
        self.request_timeout = settings.request_timeout
        self.send_timeout = send_timeout
        self.reload_site_packages = reload_site_packages
        self.cpu_affinity = cpu_affinity
        self.error_logfile = "" if error_logfile == "-" else error_logfile
        self.log_config = log_config
        self.slow_request = slow_request
        self.dump_dir = ""  # made at start: where the processes write their dumps
        self.watcher: ChangeWatcher | None = None
        if reload_on_changes:
            self.watcher = ChangeWatcher(
                self._files_changed, globs=reload_extra, base=script_folder(self.app)
            )
            if self.script_reloading:
                # The per-request check owns the script: one restart per change.
                self.watcher.exclude([self.script])
        self.group = ProcessGroup(
            group,
            self,
            settings,
            kind="daemon",
            target=app,
            on_change=self.slot_freed,
            on_files=self.watcher.add if self.watcher is not None else None,
        )
        self.multiprocess = settings.processes > 1
        # Requests waiting for a free daemon thread, with when they began to wait.
        self.queue: deque[tuple[LoopExchange, float]] = deque()
        self.queue_timeout = settings.queue_timeout
        self.queued_seconds = 0.0  # time requests spent in the queue (metrics)
        self.inactivity_timeout = settings.inactivity_timeout
        self.memory_limit = settings.memory_limit
        self.virtual_memory_limit = settings.virtual_memory_limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch = FileWatch(self.script)
        self._script_key: StatKey | None = None  # as the last look saw it
        self._stat_thread: ThreadPoolExecutor | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._liveness: asyncio.TimerHandle | None = None
        self._queue_timer: asyncio.TimerHandle | None = None
        self._last_look = 0.0  # when liveness was last looked at
        self._failure_logged = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the group and wait until every process is READY (``ScriptLoadError`` if
        the application does not load)."""
        self._loop = asyncio.get_running_loop()
        launch.check(self.settings, self.group.label)
        uid, gid = launch.owner(self.settings)
        self.dump_dir = make_dump_dir(uid, gid)
        if self.script:
            self._script_key = stat_key(self.script)
        self._last_look = time.monotonic()
        self._liveness = self._loop.call_later(PING_INTERVAL, self._check_liveness)
        if self.watcher is not None:
            self.watcher.start()
        await self.group.start()
        if self.request_timeout:
            self._timer = self._loop.call_later(self._timeout_interval, self._check_timeouts)
        if self.queue_timeout:
            self._queue_timer = self._loop.call_later(self._queue_interval, self._sweep_queue)

    async def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        for timer in (self._timer, self._liveness, self._queue_timer):
            if timer is not None:
                timer.cancel()
        for exchange, _ in self.queue:
            answer(exchange, "503 Service Unavailable")
        self.queue.clear()
        await self.group.close()
        if self.dump_dir:
            remove_dump_dir(self.dump_dir)
        if self._stat_thread is not None:
            self._stat_thread.shutdown(wait=False)

    def restart(self, reason: str) -> None:
        self.group.restart(reason)

    async def dump(self) -> list[str]:
        """``dump``: the threads of each process of the group."""
        return await collect(self.group.children, self.dump_dir)

    def reopen_logs(self) -> None:
        """SIGUSR1 reached the front: each daemon process opens its log files again."""
        self.group.signal_all(signal.SIGUSR2)

    # -- Launcher (called by the pool manager) -----------------------------------------

    def spawn(self, child: Child) -> subprocess.Popen[bytes]:
        from asyncwsgi.daemon.process import DaemonSpec, command

        settings = self.settings

        front, back = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            argv = command(
                DaemonSpec(
                    fd=back.fileno(),
                    group=self.group.name,
                    generation=child.generation,
                    threads=self.threads,
                    app=self.app,
                    callable=self.callable_name,
                    forwarded_allow_ips=self.forwarded_allow_ips,
                    log_level=self.log_level,
                    multiprocess=self.multiprocess,
                    title=self.title,
                    send_timeout=self.send_timeout,
                    parent=os.getpid(),
                    report_fd=child.report_fd,
                    report_files=self.watcher is not None,
                    site_packages=self.reload_site_packages,
                    cpu=CORES.take(child) if self.cpu_affinity else -1,
                    python_path=settings.python_path,
                    error_logfile=self.error_logfile,
                    log_config=self.log_config,
                    slow_request=self.slow_request,
                    request_timeout=self.request_timeout,
                    dump_dir=self.dump_dir,
                ),
                launch.interpreter(settings),
                launch.server_paths(),
            )
            process = subprocess.Popen(
                argv,
                pass_fds=[back.fileno(), child.report_fd],
                stdin=subprocess.DEVNULL,
                **launch.popen_options(settings),
            )
        except BaseException:
            front.close()
            raise
        finally:
            back.close()
        link = DaemonLink(self, child)
        child.data = link
        loop = self._loop
        assert loop is not None
        front.setblocking(False)
        task = loop.create_task(loop.connect_accepted_socket(lambda: link, front))
        task.add_done_callback(_report_connect_failure)
        return process

    def retire(self, child: Child) -> None:
        link: DaemonLink | None = child.data
        if link is not None:
            link.drain()

    def exited(self, child: Child) -> None:
        CORES.release(child)
        link: DaemonLink | None = child.data
        if link is not None:
            link.fail_all()
            link.close()

    # -- the runner interface (asyncwsgi.server.runners.Runner) -------------------------

    def submit(self, exchange: LoopExchange) -> None:
        if self.script_reloading:
            self.check_script()
        if self.group.failed:
            self._refuse(exchange)
            return
        link = self._pick()
        if link is None:
            self.queue.append((exchange, time.monotonic()))
        else:
            link.open_stream(exchange)

    def retry(self, exchange: LoopExchange) -> None:
        """A daemon refused a request it never started: give it to another."""
        self.queue.appendleft((exchange, time.monotonic()))
        self.slot_freed()

    def slot_freed(self) -> None:
        queue = self.queue
        if self.group.failed:
            while queue:
                self._refuse(queue.popleft()[0])
            return
        while queue:
            exchange, since = queue[0]
            if exchange.disconnected:
                queue.popleft()
                continue
            if self.queue_timeout and time.monotonic() - since > self.queue_timeout:
                queue.popleft()
                self._queue_timed_out(exchange)
                continue
            link = self._pick()
            if link is None:
                return
            queue.popleft()
            self.queued_seconds += time.monotonic() - since
            link.open_stream(exchange)

    def _queue_timed_out(self, exchange: LoopExchange) -> None:
        logger.warning(
            "daemon group %r: %s %s waited more than %g s for a free thread "
            "(queue-timeout); answering 503",
            self.group.name,
            exchange.method,
            exchange.path.decode("latin-1"),
            self.queue_timeout,
        )
        answer(exchange, "503 Service Unavailable")

    def _expire_queue(self) -> None:
        """queue-timeout: requests that waited too long get 503. The whole queue is
        looked at: a retried request goes back to the front with a new time."""
        limit = time.monotonic() - self.queue_timeout
        queue = self.queue
        if not any(since < limit for _, since in queue):
            return
        self.queue = deque()
        for exchange, since in queue:
            if since >= limit:
                self.queue.append((exchange, since))
            elif not exchange.disconnected:
                self._queue_timed_out(exchange)

    def _pick(self) -> DaemonLink | None:
        best: DaemonLink | None = None
        best_key = (True, 0)
        for child in self.group.children:
            if child.state is not ChildState.READY:
                continue
            link: DaemonLink | None = child.data
            if link is None or not link.ready or link.draining or link.unresponsive:
                continue
            load = len(link.streams)
            if load >= link.threads:
                continue
            # Fresh processes first; among them the least busy.
            key = (child.stale, load)
            if best is None or key < best_key:
                best, best_key = link, key
        return best

    def _refuse(self, exchange: LoopExchange) -> None:
        if not self._failure_logged:
            self._failure_logged = True
            logger.error(
                "daemon group %r has no application to run (see the error above); "
                "answering 503 until the script changes",
                self.group.name,
            )
        answer(exchange, "503 Service Unavailable")

    # -- script changes ----------------------------------------------------------------

    def check_script(self) -> None:
        """Restart the group if the script changed: one stat per loop tick, on a helper
        thread; requests do not wait for it. (``submit`` calls it when
        ``script_reloading`` is on; a site's mounts decide for themselves.)"""
        if not self.script or self._loop is None:
            return
        if self._stat_thread is None:
            self._stat_thread = ThreadPoolExecutor(1, thread_name_prefix="asyncwsgi-stat")
        self._watch.in_background(self._stat_thread, self._look)

    @property
    def stat_calls(self) -> int:
        return self._watch.stat_calls

    def _look(self, tick: TickStat) -> None:
        # Helper thread; one look at a time, so _script_key has one writer.
        key = tick.get()
        if key == self._script_key:
            return
        self._script_key = key
        loop = self._loop
        assert loop is not None
        loop.call_soon_threadsafe(self._script_changed, key)

    def _script_changed(self, key: StatKey | None) -> None:
        if key is None:
            logger.error("WSGI script %r is gone; the daemon group keeps running", self.script)
            return
        self._failure_logged = False
        self.group.restart(f"WSGI script {self.script!r} changed")
        self.slot_freed()

    def _files_changed(self, paths: list[str]) -> None:
        self._failure_logged = False
        self.group.restart(changed_reason(paths))
        self.slot_freed()

    # -- what the server drives ----------------------------------------------------------

    def restarts(self, reason: str) -> dict[str, Callable[[], None]]:
        """What ``reload [GROUP]`` and SIGHUP restart: this group, by name."""
        return {self.group.name: lambda: self.restart(reason)}

    def status(self) -> dict[str, Any]:
        return {"groups": {self.group.name: self.group_status()}}

    def group_status(self) -> dict[str, Any]:
        group = self.group
        return {
            "generation": group.generation,
            "failed": group.failed,
            # A generation whose replacement did not boot in time (0: none).
            "given_up": group.given_up,
            # The replacement that could not boot, while older processes serve.
            "degraded": group.degraded,
            "restarts": group.restarts,
            "queued": len(self.queue),
            "processes": [
                {
                    "pid": c.pid,
                    "generation": c.generation,
                    "state": c.state.value,
                    "requests": c.requests,
                    "answering": not (c.data is not None and c.data.unresponsive),
                }
                for c in group.children
            ],
        }

    def stop_note(self) -> str:
        return f"{self.stat_calls} stat(s) of the WSGI script"

    # -- request timeouts --------------------------------------------------------------

    @property
    def _timeout_interval(self) -> float:
        return max(0.05, min(1.0, self.request_timeout / 4))

    def _check_timeouts(self) -> None:
        loop = self._loop
        assert loop is not None
        self._timer = loop.call_later(self._timeout_interval, self._check_timeouts)
        limit = time.monotonic() - self.request_timeout
        for child in list(self.group.children):
            link: DaemonLink | None = child.data
            if link is None:
                continue
            late = [s for s in link.streams.values() if s.started <= limit and not s.answered]
            for stream in late:
                stream.answered = True
                exchange = stream.exchange
                logger.error(
                    "request %s %s ran longer than %g s in daemon process %d; answering 504",
                    exchange.method,
                    exchange.path.decode("latin-1"),
                    self.request_timeout,
                    child.pid,
                )
                if exchange.head_sent:
                    exchange.loop_abort()
                else:
                    answer(exchange, "504 Gateway Timeout")
                if not stream.cancelled:
                    stream.cancelled = True
                    stream.body_open = False
                    link.send(wire.encode_cancel(stream.id))
            if late:
                child.group.replace(child, "a request timed out")

    @property
    def _queue_interval(self) -> float:
        return max(0.05, min(1.0, self.queue_timeout / 4))

    def _sweep_queue(self) -> None:
        loop = self._loop
        assert loop is not None
        self._queue_timer = loop.call_later(self._queue_interval, self._sweep_queue)
        self._expire_queue()

    # -- liveness ------------------------------------------------------------------------

    def _check_limits(self, child: Child, link: DaemonLink, now: float) -> None:
        """inactivity-timeout, memory-limit and virtual-memory-limit: replace the
        process (replacement first; it finishes what it runs)."""
        if (
            self.inactivity_timeout
            and child.requests
            and not link.streams
            and now - link.idle_since >= self.inactivity_timeout
        ):
            self.group.replace(
                child, f"no request for {self.inactivity_timeout:g} s (inactivity-timeout)"
            )
            return
        # A process is judged once it served a request: a limit below what a fresh
        # process needs would otherwise replace one every second, forever.
        if not (self.memory_limit or self.virtual_memory_limit) or not child.requests:
            return
        resident, virtual = _memory(child.pid)
        if self.memory_limit and resident > self.memory_limit:
            self.group.replace(
                child, f"resident memory {resident} bytes over memory-limit={self.memory_limit}"
            )
        elif self.virtual_memory_limit and virtual > self.virtual_memory_limit:
            self.group.replace(
                child,
                f"virtual memory {virtual} bytes over "
                f"virtual-memory-limit={self.virtual_memory_limit}",
            )

    def _check_liveness(self) -> None:
        loop = self._loop
        assert loop is not None
        self._liveness = loop.call_later(PING_INTERVAL, self._check_liveness)
        now = time.monotonic()
        # A loop that was itself held up has not read the PONGs waiting for it: judge
        # nobody this round.
        judge = now - self._last_look < 2 * PING_INTERVAL
        self._last_look = now
        for child in list(self.group.children):
            link: DaemonLink | None = child.data
            if link is None or not link.ready or child.state not in _LIVE:
                continue
            silent = link.ping(now)
            if child.state is ChildState.READY and not child.stale:
                self._check_limits(child, link, now)
            if not judge:
                continue
            if silent >= KILL_AFTER or (link.unresponsive and child.state is ChildState.RETIRING):
                # Its replacement is READY (or it was silent for too long): what it runs
                # gets 502 now rather than wait out graceful_timeout and shutdown_timeout,
                # which a stopped process cannot use.
                logger.error(
                    "daemon process %d has not answered for %.1f s; killing it",
                    child.pid,
                    silent,
                )
                link.ready = False
                self.group.kill(child)
            elif silent >= UNRESPONSIVE_AFTER and not link.unresponsive:
                link.unresponsive = True
                logger.warning(
                    "daemon process %d has not answered for %.1f s (stopped, or stuck "
                    "holding the GIL?); it gets no new request and is replaced",
                    child.pid,
                    silent,
                )
                self.group.replace(child, "it does not answer")


_LIVE: Final = (ChildState.READY, ChildState.RETIRING)
_PAGE: Final = os.sysconf("SC_PAGE_SIZE")


def _memory(pid: int) -> tuple[int, int]:
    """(resident, virtual) bytes of a process, from /proc (0, 0 when unknown)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            size, resident = f.read().split()[:2]
    except (OSError, ValueError):
        return 0, 0
    return int(resident) * _PAGE, int(size) * _PAGE


def _report_connect_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("could not attach a daemon connection: %s", task.exception())
