"""Serving, from start to stop: :func:`serve` in a running loop, :func:`run` with its own.

``serve`` builds the host the settings ask for -- one :class:`~asyncwsgi.server.server.Server`,
or a :class:`~asyncwsgi.server.supervisor.Supervisor` of several copies of one -- starts
it, says where it listens, waits for the stop (SIGTERM/SIGINT, or the caller's trigger)
and shuts it down gracefully.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asyncwsgi import notify
from asyncwsgi.config import Config
from asyncwsgi.errors import ConfigError
from asyncwsgi.processes.affinity import hold_self
from asyncwsgi.server.host import SIGNALS, Host
from asyncwsgi.server.server import Server
from asyncwsgi.server.supervisor import Supervisor
from asyncwsgi.wsgi.types import WSGIApplication

logger = logging.getLogger("asyncwsgi.error")


def _config(app: str | WSGIApplication | None, config: Config | None, **options: Any) -> Config:
    if config is None:
        return Config.build(app=app, **options)
    if app is not None or options:
        return config.replace(**({"app": app} if app is not None else {}), **options)
    return config


async def serve(
    app: str | WSGIApplication | None = None,
    *,
    config: Config | None = None,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    ready: Callable[[list[str]], Any] | None = None,
    **options: Any,
) -> None:
    """Serve until ``shutdown_trigger`` returns (or SIGTERM/SIGINT when it is None).

    ``ready`` is called with the listening addresses once the sockets accept connections.
    Raises ``ConfigError`` for a bad setting and ``ScriptLoadError`` for an application
    that cannot be loaded, before anything listens.
    """
    config = _config(app, config, **options)
    host: Host
    if config.mode == "embedded" and (config.processes > 1 or config.reload_on_changes):
        # --reload-on-changes replaces copies of the server, even a single one.
        host = Supervisor(config)
    else:
        if config.cpu_affinity and config.mode == "embedded":
            hold_self()  # before the worker threads start: they inherit it
        host = Server(config)
    await run_host(host, shutdown_trigger, ready)


async def run_host(
    host: Host,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None,
    ready: Callable[[list[str]], Any] | None,
) -> None:
    # Signals are handled from the first moment: a SIGTERM while daemon processes boot
    # stops them too, rather than killing this process and leaving them behind.
    # With the caller's own trigger, SIGTERM and SIGINT are the caller's business.
    installed = host.install_signal_handlers(SIGNALS if shutdown_trigger is None else ("SIGHUP",))
    dispatcher = asyncio.ensure_future(host.dispatch_signals())
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(host.stop.wait())}
    if shutdown_trigger is not None:
        waiters.add(asyncio.ensure_future(shutdown_trigger()))
    started = False
    try:
        started = await _start(host, waiters)
        if started:
            if ready is not None:
                ready(host.addresses)
            notify.ready()
            notify.status(f"serving on {', '.join(host.addresses)}")
            watchdog = _keep_watchdog(host.loop)
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if watchdog is not None:
                watchdog.cancel()
            notify.stopping()
            notify.status("stopping")
    finally:
        for waiter in waiters:
            waiter.cancel()
        for signum in installed:
            host.loop.remove_signal_handler(signum)
        dispatcher.cancel()
        if started:
            await host.shutdown()


class _Watchdog:
    """``WATCHDOG=1`` at half of systemd's ``WATCHDOG_USEC``, from the event loop: a loop
    that stops turning stops the pings, and systemd restarts the unit."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.timer: asyncio.TimerHandle | None = None
        self.ping()

    def ping(self) -> None:
        notify.watchdog()
        self.timer = self.loop.call_later(self.interval, self.ping)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


def _keep_watchdog(loop: asyncio.AbstractEventLoop) -> _Watchdog | None:
    interval = notify.watchdog_interval()
    return _Watchdog(loop, interval) if interval else None


async def _start(host: Host, waiters: set[asyncio.Future[Any]]) -> bool:
    """Start ``host``; False if told to stop first (then nothing was served)."""
    starting = asyncio.ensure_future(host.start())
    try:
        await asyncio.wait({starting, *waiters}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        starting.cancel()
        await asyncio.wait({starting})
        await host.abandon()
        raise
    if not starting.done():
        logger.info("stopped while starting; stopping what had started")
        starting.cancel()
        await asyncio.wait({starting})
    if starting.cancelled() or starting.exception() is not None:
        # A daemon group that did not start, an address in use: stop what did start.
        await host.abandon()
        if not starting.cancelled():
            starting.result()  # raises
        return False
    host.started = True
    return True


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise ConfigError("loop: uvloop is not installed") from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def run(app: str | WSGIApplication | None = None, **options: Any) -> None:
    """Run a server in this thread until SIGTERM/SIGINT; see :func:`serve`."""
    given: Config | None = options.pop("config", None)
    ready = options.pop("ready", None)
    config = _config(app, given, **options)
    loop = new_event_loop(config.loop)
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve(config=config, ready=ready))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
