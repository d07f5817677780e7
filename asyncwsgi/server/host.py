"""What every kind of serving process shares: signals, the control socket, the stop.

Rule: signal handlers only enqueue the signal; one task dispatches each to a
``handle_<name>`` method, as gunicorn's arbiter does. A :class:`Host` is either a
:class:`~asyncwsgi.server.server.Server` (sockets, HTTP and a runner) or a
:class:`~asyncwsgi.server.supervisor.Supervisor` (copies of a server on shared sockets);
:func:`~asyncwsgi.server.lifecycle.serve` runs one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from asyncwsgi import logs, notify
from asyncwsgi.config import Config
from asyncwsgi.control import ControlError, ControlServer, resolve_control_path
from asyncwsgi.errors import ConfigError
from asyncwsgi.processes.dumps import write_dump
from asyncwsgi.wsgi.running import dump as dump_threads

logger = logging.getLogger("asyncwsgi.error")

SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGURG")
DUMP_ENV = "ASYNCWSGI_DUMP_DIR"  # where a copy writes its dump (set by its supervisor)


class Host:
    """A serving process, as :func:`~asyncwsgi.server.lifecycle.serve` drives it."""

    # What SIGTERM and SIGINT are said to do, in the log.
    stopping = "shutting down gracefully"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.addresses: list[str] = []
        self.signals: asyncio.Queue[str] = asyncio.Queue()
        self.stop = asyncio.Event()
        self.started = False  # start() is done: the sockets accept connections
        self.draining = False  # SIGTERM with --shutdown-delay: not ready, still serving
        self.control: ControlServer | None = None

    # -- what each kind of host says ---------------------------------------------------

    async def start(self) -> None:
        """Listen and be ready; ``ScriptLoadError`` or ``ConfigError`` if it cannot."""
        raise NotImplementedError

    async def abandon(self) -> None:
        """Undo a ``start()`` that failed: nothing was served, so no stop line is logged
        (only threads or processes that will not stop, if any)."""
        raise NotImplementedError

    async def shutdown(self) -> None:
        """Stop gracefully: finish what is in flight, then release everything."""
        raise NotImplementedError

    def restarts(self, reason: str) -> dict[str, Callable[[], None]]:
        """What ``reload [GROUP]`` and SIGHUP restart, by name."""
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        """The answer to ``status``."""
        raise NotImplementedError

    def reopen_children(self) -> None:
        """SIGUSR1: have the processes this host started open their log files again."""
        raise NotImplementedError

    # -- signals -----------------------------------------------------------------------

    def install_signal_handlers(self, names: tuple[str, ...] = SIGNALS) -> list[int]:
        installed = []
        for name in names:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                self.loop.add_signal_handler(signum, self.signals.put_nowait, name)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or a platform without them
            installed.append(signum)
        return installed

    async def dispatch_signals(self) -> None:
        while True:
            name = await self.signals.get()
            handler: Callable[[], None] = getattr(self, "handle_" + name[3:].lower())
            handler()

    def handle_term(self) -> None:
        delay = self.config.shutdown_delay
        if delay and self.started and not self.draining:
            # Kubernetes and load balancers take a while to stop sending: say "not ready"
            # (/readyz, sd_notify) and go on serving, then stop as usual.
            self.draining = True
            notify.stopping()
            notify.status(f"draining: stopping in {delay:g} s")
            logger.info(
                "received SIGTERM; not ready, still serving for %g s (--shutdown-delay), "
                "then %s (SIGTERM again: at once)",
                delay,
                self.stopping,
            )
            self.loop.call_later(delay, self.stop.set)
            return
        logger.info("received SIGTERM; %s", self.stopping)
        self.stop.set()

    def handle_int(self) -> None:
        logger.info("received SIGINT; %s", self.stopping)
        self.stop.set()

    def handle_usr1(self) -> None:
        # As gunicorn's: what a logrotate postrotate script sends.
        count = logs.reopen()
        logger.info("received SIGUSR1; reopened %d log file(s)", count)
        self.reopen_children()

    def handle_hup(self) -> None:
        if not self.started:
            logger.info("received SIGHUP while starting; nothing to restart yet")
            return
        with notify.reloading():
            for restart in self.restarts("received SIGHUP").values():
                restart()

    # -- the control socket ------------------------------------------------------------

    async def open_control(self) -> None:
        """The control socket ``python -m asyncwsgi reload`` talks to, if one is wanted.

        An explicit path that cannot be used is a ``ConfigError``; trouble with the
        default place is a warning.
        """
        setting = self.config.control_socket
        try:
            path = resolve_control_path(setting)
        except ControlError as exc:
            logger.warning("no control socket: %s", exc)
            return
        if path is None:
            return
        server = ControlServer(path, self._command)
        try:
            await server.start()
        except ControlError as exc:
            if setting:
                raise ConfigError(f"control_socket: {exc}") from exc
            logger.warning("no control socket: %s", exc)
            return
        self.control = server
        logger.info("control socket: %s (python -m asyncwsgi reload [GROUP])", path)

    async def close_control(self) -> None:
        if self.control is not None:
            await self.control.close()

    async def _command(self, words: list[str]) -> str:
        command, args = words[0], words[1:]
        if command == "reload" and len(args) <= 1:
            return self.reload(args[0] if args else None)
        if command == "status" and not args:
            return "ok " + json.dumps(self.status(), sort_keys=True)
        if command == "dump" and len(args) <= 1:
            try:
                return "ok " + json.dumps(await self.dump(args[0] if args else None))
            except ValueError as exc:
                return f"error {exc}"
        return (
            f"error unknown command {' '.join(words)!r} (commands: reload [GROUP], status, "
            "dump [GROUP])"
        )

    async def dump(self, group: str | None) -> str:
        """``dump [GROUP]``: every thread of every process, with the request it serves."""
        raise NotImplementedError

    def handle_urg(self) -> None:
        """SIGURG from a supervisor (``dump``): this copy writes its threads to the file
        the supervisor reads."""
        folder = os.environ.get(DUMP_ENV, "")
        if folder:
            write_dump(folder, self.own_dump())

    def own_dump(self) -> str:
        """This process's threads (the requests of its embedded mounts)."""
        return dump_threads((), header=f"== process {os.getpid()}")

    def reload(self, group: str | None) -> str:
        """``reload [GROUP]``: restart one group, or every one."""
        groups = self.restarts("reload requested on the control socket")
        if group is not None and group not in groups:
            return f"error no process group named {group!r} (groups: {', '.join(groups)})"
        with notify.reloading():
            for name, restart in groups.items():
                if group is None or name == group:
                    restart()
        return "ok reloading " + (group or " ".join(groups))
