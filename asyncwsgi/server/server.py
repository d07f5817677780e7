"""One serving process: listening sockets, the HTTP layer and a runner.

This is where the HTTP layer and the application side meet; neither knows the other.
The server drives its :class:`~asyncwsgi.server.runners.Runner` through one interface,
whatever the mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from asyncwsgi.config import Config
from asyncwsgi.http.protocol import HttpProtocol
from asyncwsgi.http.state import HttpLimits, ServerState
from asyncwsgi.logs import AccessLog
from asyncwsgi.server.host import Host
from asyncwsgi.server.metrics import (
    MetricsServer,
    RequestMetrics,
    daemon_runners,
    embedded_running,
    finished_hook,
)
from asyncwsgi.server.process import restrict_unix_socket
from asyncwsgi.server.runners import make_runner
from asyncwsgi.server.sockets import (
    Listener,
    describe,
    make_ssl_context,
    open_socket,
    systemd_sockets,
)
from asyncwsgi.settings import parse_bind
from asyncwsgi.wsgi.running import dump as dump_threads

logger = logging.getLogger("asyncwsgi.error")
access_logger = logging.getLogger("asyncwsgi.access")


def http_limits(config: Config) -> HttpLimits:
    """The HTTP layer's limits: the settings of the same names."""
    names = {f.name for f in dataclasses.fields(HttpLimits)} & {
        f.name for f in dataclasses.fields(Config)
    }
    limits = HttpLimits(**{name: getattr(config, name) for name in names})
    if not config.limit_request_body:  # 0: no limit
        limits = dataclasses.replace(limits, limit_request_body=sys.maxsize)
    return limits


class Server(Host):
    """One running server: what ``serve()`` builds and tears down."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        # Before any runner starts threads: a bad certificate leaves nothing behind.
        self.ssl = make_ssl_context(config.certfile, config.keyfile)
        # Loads the application (ScriptLoadError) before anything listens.
        self.runner = make_runner(config)
        access = (
            AccessLog(access_logger, config.access_log_format, config.access_log_exclude).write
            if config.access_log
            else None
        )
        self.metrics = RequestMetrics(config.root_path) if config.metrics_bind else None
        self.state = ServerState(
            self.loop,
            self.runner,
            http_limits(config),
            on_finish=finished_hook(access, self.metrics),
            server_header=config.server_header,
        )
        self.listeners: list[Listener] = []
        self.metrics_server: MetricsServer | None = None

    def restarts(self, reason: str) -> dict[str, Callable[[], None]]:
        return self.runner.restarts(reason)

    def reopen_children(self) -> None:
        self.runner.reopen_logs()

    def own_dump(self) -> str:
        header = f"== process {os.getpid()}: server ({self.config.mode} mode)"
        return dump_threads(embedded_running(self.runner), header)

    async def dump(self, group: str | None) -> str:
        groups = daemon_runners(self.runner)
        if group is not None and group not in (d.group.name for d in groups):
            names = ", ".join(d.group.name for d in groups) or "none"
            raise ValueError(f"no daemon group named {group!r} (groups: {names})")
        parts = [self.own_dump()]
        for daemons in groups:
            if group is None or daemons.group.name == group:
                parts += await daemons.dump()
        return "\n\n".join(parts)

    def status(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "pid": os.getpid(),
            "mode": self.config.mode,
            "app": str(self.config.app),
            "requests": self.state.requests,
            "connections": len(self.state.connections),
            "addresses": self.addresses,
        }
        info.update(self.runner.status())
        return info

    async def start(self) -> None:
        # Daemon groups are READY (their application imported) before anything listens.
        await self.runner.start()
        binds = systemd_sockets() or list(self.config.bind)
        for address in binds:
            sock = open_socket(address, self.config.backlog)
            if address.kind == "unix":
                restrict_unix_socket(address.path, self.config)
            listener = Listener(self.loop, sock, self._protocol, self.ssl)
            self.listeners.append(listener)
            self.addresses.append(describe(sock, address, tls=self.ssl is not None))
        if self.metrics is not None:
            # Before the application's sockets: an address in use stops the start.
            self.metrics_server = MetricsServer(
                self, self.metrics, parse_bind(self.config.metrics_bind)
            )
            await self.metrics_server.start()
        for listener in self.listeners:
            listener.start()
        await self.open_control()

    def _protocol(self) -> HttpProtocol:
        return HttpProtocol(self.state)

    # -- shutdown ----------------------------------------------------------------------

    async def _close_metrics(self) -> None:
        if self.metrics_server is not None:
            await self.metrics_server.close()

    async def abandon(self) -> None:
        await self._close_metrics()
        await self.close_control()
        for listener in self.listeners:
            listener.close()
        await self.runner.close()

    async def shutdown(self) -> None:
        await self.close_control()
        for listener in self.listeners:
            listener.close()
        state = self.state
        state.shutting_down = True
        for connection in list(state.connections):
            connection.shutdown()
        deadline = time.monotonic() + self.config.graceful_timeout
        while state.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if state.connections:
            logger.warning(
                "graceful timeout (%.1f s) expired; closing %d connection(s) with requests "
                "still running",
                self.config.graceful_timeout,
                len(state.connections),
            )
            for connection in list(state.connections):
                connection.transport.abort()
        state.close()
        await self._close_metrics()
        await self.runner.close()
        for address in self.config.bind:
            if address.kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(address.path)
        logger.info("stopped after %d request(s); %s", state.requests, self.runner.stop_note())
