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
import time
from collections.abc import Callable
from typing import Any

from asyncwsgi.config import Config, ProcessSettings
from asyncwsgi.processes import REPORT_INTERVAL, Child, ProcessGroup, report
from asyncwsgi.processes.affinity import CORES, CPU_ENV
from asyncwsgi.processes.dumps import collect, make_dump_dir, remove_dump_dir
from asyncwsgi.scripts.changes import ChangeWatcher, changed_reason, script_folder
from asyncwsgi.scripts.loader import is_script_path
from asyncwsgi.scripts.sources import ImportedFiles
from asyncwsgi.scripts.watch import StatKey, stat_key
from asyncwsgi.server.host import DUMP_ENV, Host
from asyncwsgi.server.process import restrict_unix_socket
from asyncwsgi.server.sockets import describe, open_socket, systemd_sockets
from asyncwsgi.settings import BindAddress

logger = logging.getLogger("asyncwsgi.error")

# The environment variable a copy finds its settings in (JSON), and the code it runs.
COPY_ENV = "ASYNCWSGI_COPY"
_COPY_MAIN = "from asyncwsgi.cli import copy_main; copy_main()"


def copy_settings(config: Config, binds: list[BindAddress], report_fd: int) -> str:
    """The JSON a copy is started with: the config, its sockets and its report pipe."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields["bind"] = [dataclasses.asdict(b) for b in binds]
    fields["processes"] = 1
    fields["control_socket"] = "none"
    if config.reload_on_changes:
        # The supervisor watches every file, the script included, and replaces copies;
        # a copy only reports what it imported, and does not re-import the script itself.
        fields["script_reloading"] = False
        fields["reload_on_changes"] = False
        fields["reload_extra"] = ()
        fields["reload_site_packages"] = False
    return json.dumps(
        {
            "config": fields,
            "report_fd": report_fd,
            "parent": os.getpid(),
            "report_files": config.reload_on_changes,
            "site_packages": config.reload_site_packages,
        }
    )


@dataclasses.dataclass(frozen=True)
class CopySettings:
    """What a copy finds in its environment (see :func:`copy_settings`)."""

    config: Config
    report_fd: int
    parent: int  # the supervisor's pid
    report_files: bool  # report the source files it imports (--reload-on-changes)
    site_packages: bool  # from site-packages too


def config_from_copy_settings(text: str) -> CopySettings:
    data = json.loads(text)
    fields = data["config"]
    fields["bind"] = tuple(BindAddress(**b) for b in fields["bind"])
    return CopySettings(
        Config.build(**fields),
        int(data["report_fd"]),
        int(data["parent"]),
        bool(data["report_files"]),
        bool(data["site_packages"]),
    )


def report_files(fd: int, site_packages: bool) -> None:
    """Copy side (``--reload-on-changes``): report the source files imported, now and
    each second after (an application may import more as it serves)."""
    files = ImportedFiles(site_packages=site_packages)
    loop = asyncio.get_running_loop()

    def look() -> None:
        new = files.new()
        if new:
            report(fd, files=new)
        loop.call_later(REPORT_INTERVAL, look)

    look()


def _stat_and_resolve(path: str) -> tuple[StatKey | None, str]:
    return stat_key(path), os.path.realpath(path)


class CopyLauncher:
    """Starts copies of the server for the pool manager; a copy reports READY (and, with
    ``--reload-on-changes``, the files it imported) on its report pipe."""

    def __init__(
        self, config: Config, binds: list[BindAddress], pass_fds: list[int], dump_dir: str
    ) -> None:
        self.config = config
        self.binds = binds
        self.pass_fds = pass_fds
        self.dump_dir = dump_dir  # where a copy writes its threads on SIGURG (dump)

    def spawn(self, child: Child) -> subprocess.Popen[bytes]:
        # The supervisor alone speaks to systemd (sockets, READY=1).
        skip = ("LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        env = {k: v for k, v in os.environ.items() if k not in skip}
        env[COPY_ENV] = copy_settings(self.config, self.binds, child.report_fd)
        env[DUMP_ENV] = self.dump_dir
        if self.config.cpu_affinity:
            env[CPU_ENV] = str(CORES.take(child))
        return subprocess.Popen(
            [sys.executable, "-c", _COPY_MAIN],
            pass_fds=[*self.pass_fds, child.report_fd],
            env=env,
            stdin=subprocess.DEVNULL,
        )

    def retire(self, child: Child) -> None:
        # A copy shuts down gracefully on SIGTERM: stops accepting, finishes its requests.
        if child.process is not None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)

    def exited(self, child: Child) -> None:
        """Its core is free (the group closes the report pipe)."""
        CORES.release(child)


class Supervisor(Host):
    """``processes`` copies of an embedded-mode server on shared addresses."""

    stopping = "stopping the server copies gracefully"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.sockets: list[socket.socket] = []
        self.group: ProcessGroup | None = None
        self.dump_dir = ""  # made at start: where the copies write their dumps
        self.watcher: ChangeWatcher | None = None
        self._script_key: StatKey | None = None
        self._script_timer: asyncio.TimerHandle | None = None

    async def dump(self, group: str | None) -> str:
        if group is not None:
            raise ValueError("copies of an embedded server have no daemon groups; give no GROUP")
        parts = [self.own_dump()]
        if self.group is not None:
            parts += await collect(self.group.children, self.dump_dir)
        return "\n\n".join(parts)

    def reopen_children(self) -> None:
        """Each copy reopens its own log files (a copy is a whole server)."""
        if self.group is not None:
            self.group.signal_all(signal.SIGUSR1)

    def restarts(self, reason: str) -> dict[str, Callable[[], None]]:
        def every_copy() -> None:
            logger.info("%s; passing it to every server copy", reason)
            self.send_all(signal.SIGHUP)

        def replace_copies() -> None:
            assert self.group is not None
            self.group.restart(reason)

        return {"embedded": replace_copies if self.config.reload_on_changes else every_copy}

    def status(self) -> dict[str, Any]:
        group = self.group
        return {
            "pid": os.getpid(),
            "mode": "embedded",
            "app": str(self.config.app),
            "addresses": self.addresses,
            "generation": group.generation if group else 0,
            "degraded": group.degraded if group else None,
            "failed": group.failed if group else False,
            "copies": [
                {"pid": w.pid, "generation": w.generation, "state": w.state.value}
                for w in (group.children if group else [])
            ],
        }

    def _look_at_script(self) -> None:
        path = str(self.config.app)
        began = time.time()
        looking = self.loop.run_in_executor(None, _stat_and_resolve, path)

        def looked(done: asyncio.Future[tuple[StatKey | None, str]]) -> None:
            watcher = self.watcher
            if watcher is None or done.cancelled() or done.exception() is not None:
                return
            key, real = done.result()
            if key != self._script_key and key is not None:
                self._script_key = key
                # Unless it was an edit the watcher reports (give it time to): the swap.
                self.loop.call_later(0.2, self._swapped, path, real, began - 1.0)
            self._script_timer = self.loop.call_later(1.0, self._look_at_script)

        looking.add_done_callback(looked)

    def _swapped(self, path: str, real: str, since: float) -> None:
        if self.watcher is not None and not self.watcher.seen_since(real, since):
            self._files_changed([path])

    def _files_changed(self, paths: list[str]) -> None:
        assert self.group is not None
        self.group.restart(changed_reason(paths))

    async def start(self) -> None:
        binds = systemd_sockets() or list(self.config.bind)
        copy_binds: list[BindAddress] = []
        for address in binds:
            # Copies replaced one at a time share one socket: connections queued on it
            # are accepted by whichever copy is up (a SO_REUSEPORT socket closing with
            # its copy would reset the connections queued on it).
            if address.kind == "tcp" and not self.config.reload_on_changes:
                # Hold the port; each copy listens on its own SO_REUSEPORT socket.
                held = dataclasses.replace(address, reuse_port=True)
                sock = open_socket(held, self.config.backlog, listen=False)
                port = sock.getsockname()[1]
                copy_binds.append(dataclasses.replace(held, port=port))
            else:
                sock = open_socket(address, self.config.backlog)
                if address.kind == "unix":
                    restrict_unix_socket(address.path, self.config)
                sock.set_inheritable(True)
                copy_binds.append(BindAddress("fd", fd=sock.fileno()))
            self.sockets.append(sock)
            self.addresses.append(describe(sock, address, tls=bool(self.config.certfile)))
        self.dump_dir = make_dump_dir()
        launcher = CopyLauncher(
            self.config,
            copy_binds,
            [b.fd for b in copy_binds if b.kind == "fd"],
            self.dump_dir,
        )
        if self.config.reload_on_changes:
            self.watcher = ChangeWatcher(
                self._files_changed,
                globs=self.config.reload_extra,
                base=script_folder(str(self.config.app)),
            )
            self.watcher.start()
            if is_script_path(str(self.config.app)):
                # The watcher sees real files; a symlink swapped over the script's folder
                # (current -> releases/N) changes no file, so its path is stat'ed too.
                self._script_key = stat_key(str(self.config.app))
                self._script_timer = self.loop.call_later(1.0, self._look_at_script)
        self.group = ProcessGroup(
            "server",
            launcher,
            ProcessSettings.of(self.config),
            kind="embedded",
            target=str(self.config.app),
            on_files=self.watcher.add if self.watcher is not None else None,
        )
        await self.group.start()
        await self.open_control()

    def send_all(self, signum: int) -> None:
        assert self.group is not None
        self.group.signal_all(signum)

    async def abandon(self) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        if self._script_timer is not None:
            self._script_timer.cancel()
        await self.close_control()
        if self.group is not None:
            await self.group.close()
        if self.dump_dir:
            remove_dump_dir(self.dump_dir)
        for sock in self.sockets:
            sock.close()
        for address in self.config.bind:
            if address.kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(address.path)
