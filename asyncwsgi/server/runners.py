"""The application side of a server: one interface, a runner per mode.

Rule: :func:`make_runner` is the one place that asks where the application runs; the
server drives a :class:`Runner` and never asks which kind it is. Three kinds exist:

* :class:`EmbeddedRunner`: the application in this process's worker threads;
* :class:`~asyncwsgi.daemon.runner.DaemonRunner`: a daemon process group fed from the
  event loop;
* :class:`~asyncwsgi.sites.runner.SiteRunner`: the mounts of a config file, each run one
  of those two ways.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from asyncwsgi.config import Config, ProcessSettings
from asyncwsgi.core.exchange import ServerExchange
from asyncwsgi.daemon.runner import DaemonRunner
from asyncwsgi.http.state import ApplicationRunner
from asyncwsgi.scripts.loader import is_script_path, load_target
from asyncwsgi.scripts.reloader import ScriptSource, StaticSource
from asyncwsgi.sites.runner import SiteRunner
from asyncwsgi.static.mount import StaticFront, check_folder, mount_path
from asyncwsgi.wsgi.pool import ThreadPool
from asyncwsgi.wsgi.proxy import trust_for
from asyncwsgi.wsgi.runner import WSGIRunner
from asyncwsgi.wsgi.running import RequestWatch

logger = logging.getLogger("asyncwsgi.error")


class Runner(ApplicationRunner, Protocol):
    """What a server needs of the application side, whatever the mode: what the HTTP
    layer needs (``submit``), and a lifecycle."""

    def submit(self, exchange: ServerExchange) -> None: ...

    async def start(self) -> None:
        """Before anything listens: have the application ready (daemon groups READY).
        ``ScriptLoadError`` when it cannot be."""
        ...

    async def close(self) -> None:
        """Once the connections are done: stop threads and processes."""
        ...

    def restarts(self, reason: str) -> dict[str, Callable[[], None]]:
        """What ``reload [GROUP]`` and SIGHUP can restart, by name (a daemon group, or
        ``embedded`` for the scripts run in this process)."""
        ...

    def status(self) -> dict[str, Any]:
        """What ``status`` adds to the server's own fields."""
        ...

    def stop_note(self) -> str:
        """The end of the server's last log line: the stats taken on the request path."""
        ...

    def reopen_logs(self) -> None:
        """SIGUSR1: the processes this runner started open their log files again."""
        ...


def make_source(config: Config) -> ScriptSource | StaticSource:
    """Load the application named by the config. Raises ``ScriptLoadError``."""
    app = config.app
    if not isinstance(app, str):
        return StaticSource(app)
    if is_script_path(app):
        return ScriptSource(
            app,
            callable_name=config.callable,
            reloading=config.script_reloading,
            keep_last_good=config.reload_failure == "keep",
        )
    return StaticSource(load_target(app, config.callable))


class EmbeddedRunner(WSGIRunner):
    """Embedded mode: the application in this process's worker threads."""

    def __init__(self, config: Config) -> None:
        # The script first: if it does not load, no thread has been started.
        self.config = config
        self.source = make_source(config)
        self.watch: RequestWatch | None = None
        self.pool = ThreadPool(config.threads, max_threads=config.max_threads)
        super().__init__(
            self.source,
            self.pool,
            script_name=config.root_path,
            proxy_trust=trust_for(config.forwarded_allow_ips),
        )

    async def start(self) -> None:
        """Nothing to wait for: the script was loaded when the runner was made. The
        watch over slow and overdue requests starts."""
        self.watch = RequestWatch(
            asyncio.get_running_loop(),
            lambda: (self.running,),
            slow=self.config.slow_request,
            timeout=self.config.request_timeout,
        )
        self.watch.start()

    async def close(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        await self.pool.stop()

    def restarts(self, reason: str) -> dict[str, Callable[[], None]]:
        def force() -> None:
            logger.info("%s; the next request reloads the WSGI script", reason)
            self.source.force_reload()

        return {"embedded": force}

    def status(self) -> dict[str, Any]:
        # A script that failed to re-load, while the last good version serves (or 500s).
        return {"degraded": self.source.degraded, "stuck": self.running.stuck}

    def stop_note(self) -> str:
        return f"{self.source.stat_calls} stat(s) of the WSGI script"

    def reopen_logs(self) -> None:
        """No process of its own: the server's logs are reopened already."""


def make_runner(config: Config) -> Runner:
    """The runner the config asks for; a script that does not load raises
    ``ScriptLoadError`` here, before anything listens (and a ``--static`` folder that
    cannot be served ``ConfigError``)."""
    folders = [
        (mount_path(url), *check_folder(folder, f"--static {spec}"))
        for spec in config.static
        for url, _, folder in [spec.partition("=")]
    ]
    runner = _app_runner(config)
    return StaticFront(runner, folders) if folders else runner


def _app_runner(config: Config) -> Runner:
    if config.site is not None:
        return SiteRunner(config, config.site)
    if config.mode == "daemon":
        assert isinstance(config.app, str)  # Config's rules
        return DaemonRunner(
            app=config.app,
            group=config.group,
            settings=ProcessSettings.of(config),
            callable_name=config.callable,
            script_reloading=config.script_reloading,
            script_name=config.root_path,
            forwarded_allow_ips=config.forwarded_allow_ips,
            log_level=config.log_level,
            send_timeout=config.send_timeout,
            reload_on_changes=config.reload_on_changes,
            reload_extra=config.reload_extra,
            reload_site_packages=config.reload_site_packages,
            cpu_affinity=config.cpu_affinity,
            error_logfile=config.error_logfile,
            log_config=config.log_config,
            slow_request=config.slow_request,
        )
    return EmbeddedRunner(config)
