"""Embedded mode with several processes: a supervisor and copies of the whole server.

The supervisor binds the addresses, starts ``processes`` copies of the server through the
process pool manager (each loads the application and says READY on a pipe) and keeps
them at strength; SIGHUP and ``reload`` reach every copy as a SIGHUP, and SIGTERM stops
them gracefully. A copy is an ordinary one-process server (``cli.copy_main``) whose
settings, sockets and READY pipe come from its environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from asyncwsgi.config import Config, ProcessSettings
from asyncwsgi.processes import Child, ChildState, ProcessGroup
from asyncwsgi.server.host import Host
from asyncwsgi.server.sockets import describe, open_socket, systemd_sockets
from asyncwsgi.settings import BindAddress

logger = logging.getLogger("asyncwsgi.error")

# The environment variable a copy finds its settings in (JSON), and the code it runs.
COPY_ENV = "ASYNCWSGI_COPY"
_COPY_MAIN = "from asyncwsgi.cli import copy_main; copy_main()"


def copy_settings(config: Config, binds: list[BindAddress], ready_fd: int) -> str:
    """The JSON a copy is started with: the config, its sockets and its READY pipe."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields["bind"] = [dataclasses.asdict(b) for b in binds]
    fields["processes"] = 1
    fields["control_socket"] = "none"
    return json.dumps({"config": fields, "ready_fd": ready_fd, "parent": os.getpid()})


def config_from_copy_settings(text: str) -> tuple[Config, int, int]:
    """The config, READY pipe and parent (the supervisor's pid) of :func:`copy_settings`."""
    data = json.loads(text)
    fields = data["config"]
    fields["bind"] = tuple(BindAddress(**b) for b in fields["bind"])
    return Config.build(**fields), int(data["ready_fd"]), int(data["parent"])


class CopyLauncher:
    """Starts copies of the server for the pool manager; a copy says READY on a pipe."""

    def __init__(self, config: Config, binds: list[BindAddress], pass_fds: list[int]) -> None:
        self.config = config
        self.binds = binds
        self.pass_fds = pass_fds
        self.loop = asyncio.get_running_loop()

    def spawn(self, child: Child) -> subprocess.Popen[bytes]:
        read_end, write_end = os.pipe()
        env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_FDS", "LISTEN_PID")}
        env[COPY_ENV] = copy_settings(self.config, self.binds, write_end)
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _COPY_MAIN],
                pass_fds=[*self.pass_fds, write_end],
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        child.data = read_end
        self.loop.add_reader(read_end, self._readable, child)
        return process

    def _readable(self, child: Child) -> None:
        fd: int = child.data
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if data.startswith(b"R"):
            child.group.ready(child)
        if not data or data.startswith(b"R"):
            self._close_pipe(child)

    def _close_pipe(self, child: Child) -> None:
        fd = child.data
        if isinstance(fd, int) and fd >= 0:
            self.loop.remove_reader(fd)
            os.close(fd)
            child.data = -1

    def retire(self, child: Child) -> None:
        # A copy shuts down gracefully on SIGTERM: stops accepting, finishes its requests.
        if child.process is not None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)

    def exited(self, child: Child) -> None:
        self._close_pipe(child)


class Supervisor(Host):
    """``processes`` copies of an embedded-mode server on shared addresses."""

    stopping = "stopping the server copies gracefully"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.sockets: list[socket.socket] = []
        self.group: ProcessGroup | None = None

    def restarts(self, reason: str) -> dict[str, Callable[[], None]]:
        def every_copy() -> None:
            logger.info("%s; passing it to every server copy", reason)
            self.send_all(signal.SIGHUP)

        return {"embedded": every_copy}

    def status(self) -> dict[str, Any]:
        group = self.group
        return {
            "pid": os.getpid(),
            "mode": "embedded",
            "app": str(self.config.app),
            "addresses": self.addresses,
            "copies": [
                {"pid": w.pid, "state": w.state.value} for w in (group.children if group else [])
            ],
        }

    async def start(self) -> None:
        binds = systemd_sockets() or list(self.config.bind)
        copy_binds: list[BindAddress] = []
        for address in binds:
            if address.kind == "tcp":
                # Hold the port; each copy listens on its own SO_REUSEPORT socket.
                held = dataclasses.replace(address, reuse_port=True)
                sock = open_socket(held, self.config.backlog, listen=False)
                port = sock.getsockname()[1]
                copy_binds.append(dataclasses.replace(held, port=port))
            else:
                sock = open_socket(address, self.config.backlog)
                sock.set_inheritable(True)
                copy_binds.append(BindAddress("fd", fd=sock.fileno()))
            self.sockets.append(sock)
            self.addresses.append(describe(sock, address, tls=bool(self.config.certfile)))
        launcher = CopyLauncher(
            self.config,
            copy_binds,
            [b.fd for b in copy_binds if b.kind == "fd"],
        )
        self.group = ProcessGroup(
            "server",
            launcher,
            ProcessSettings.of(self.config),
            kind="embedded",
            target=str(self.config.app),
        )
        await self.group.start()
        await self.open_control()

    def send_all(self, signum: int) -> None:
        assert self.group is not None
        for child in self.group.children:
            if child.process is not None and child.state is not ChildState.EXITED:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signum)

    async def abandon(self) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        await self.close_control()
        if self.group is not None:
            await self.group.close()
        for sock in self.sockets:
            sock.close()
        for address in self.config.bind:
            if address.kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(address.path)
