"""A site from a config file, running: its mounts, their runners and their .htaccess.

Wiring, like ``server.py``: everything here runs on the event loop thread except the
stat and read of a .htaccess file, which a helper thread does.

Each WSGIScriptAlias of each virtual host is a :class:`SiteMount`. Mounts of the same
script and callable share one application: in embedded mode one :class:`ScriptSource`
(one module, one re-import per change), in daemon mode their group's
:class:`DaemonRunner`. Whether a request checks the script is the mount's own setting
(``WSGIScriptReloading`` as its contexts give it), so a mount whose .htaccess turns
reloading off never stats its script even while another mount of it does.

A .htaccess is looked at as the script is: at most once per loop tick, when a request
for one of its mounts arrives, by a stat on a helper thread that requests do not wait
for. When it changed it is read again there, and its settings apply to the requests
that arrive after that. A .htaccess that no longer parses gets its mounts' requests a
500 (and one logged error) until it is fixed, as Apache does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, cast

from asyncwsgi.apache import read_htaccess
from asyncwsgi.config import EMBEDDED, Config, Layer, Mount, Site, VirtualHost
from asyncwsgi.daemon.front import DaemonRunner, FrontExchange
from asyncwsgi.errors import ConfigError
from asyncwsgi.routing import Routes, host_name, match
from asyncwsgi.scripts.reloader import ScriptSource, StatKey, stat_key
from asyncwsgi.wsgi.environ import decode_path
from asyncwsgi.wsgi.pool import ThreadPool
from asyncwsgi.wsgi.proxy import ProxyTrust
from asyncwsgi.wsgi.runner import WSGIRunner
from asyncwsgi.wsgi.types import Exchange

logger = logging.getLogger("asyncwsgi.error")

_NOT_FOUND = b"Not Found\n"
_BROKEN = b"Internal Server Error\n"


class RoutedExchange(FrontExchange, Protocol):
    """The HTTP layer's exchange: the front's view of it, and where it was mounted."""

    script_name: str | None


class SiteMount:
    """One WSGIScriptAlias as one virtual host serves it."""

    def __init__(
        self,
        config: Mount,
        vhost: VirtualHost | None,
        settings: Layer,
        *,
        embedded: WSGIRunner | None,
        daemons: DaemonRunner | None,
    ) -> None:
        self.config = config
        self.vhost = vhost
        self.path = config.path
        self.settings = settings
        self.reloading: bool = settings["script_reloading"].value
        self.embedded = embedded
        self.daemons = daemons
        self.watch: HtaccessWatch | None = None
        self.broken: ConfigError | None = None  # its .htaccess does not parse
        self.requests = 0

    def submit(self, exchange: RoutedExchange) -> None:
        self.requests += 1
        exchange.script_name = self.path
        watch = self.watch
        if watch is not None:
            watch.check()
        if self.broken is not None:
            exchange.loop_send_error("500 Internal Server Error", _BROKEN)
            return
        daemons = self.daemons
        if daemons is not None:
            if self.reloading:
                daemons.check_script()
            daemons.submit(exchange)
            return
        embedded = self.embedded
        assert embedded is not None
        if self.reloading:
            embedded.submit(cast(Exchange, exchange))
        else:
            embedded.submit_unchecked(cast(Exchange, exchange))

    def apply(self, layer: Layer | None, error: ConfigError | None) -> None:
        """The folder's .htaccess changed (``layer``), or no longer parses (``error``)."""
        label = f"{self.path or '/'} ({self.config.script})"
        if error is not None:
            if self.broken is None or str(self.broken) != str(error):
                logger.error("%s; answering 500 for %s until it is fixed", error, label)
            self.broken = error
            return
        if self.broken is not None:
            logger.info("%s parses again; serving %s", self.config.htaccess, label)
            self.broken = None
        settings = self.config.settings(layer)
        reloading = settings["script_reloading"]
        if reloading.value != self.reloading:
            logger.info(
                "WSGIScriptReloading %s for %s (%s)",
                "On" if reloading.value else "Off",
                label,
                reloading.origin,
            )
            self.reloading = reloading.value
        for name in ("callable", "process_group"):
            if settings[name].value != self.settings[name].value:
                logger.warning(
                    "%s changes %s of %s to %r; that takes effect when the server restarts",
                    settings[name].origin,
                    "WSGICallableObject" if name == "callable" else "WSGIProcessGroup",
                    label,
                    settings[name].value,
                )
        self.settings = {**self.settings, "script_reloading": reloading}


class HtaccessWatch:
    """One .htaccess file and the mounts whose script is in its folder."""

    def __init__(
        self,
        path: str,
        key: StatKey | None,
        loop: asyncio.AbstractEventLoop,
        executor: ThreadPoolExecutor,
    ) -> None:
        self.path = path
        self.mounts: list[SiteMount] = []
        self.stat_calls = 0
        self._key = key
        self._loop = loop
        self._executor = executor
        self._tick_checked = False
        self._busy = False

    def check(self) -> None:
        if self._tick_checked or self._busy:
            return
        self._tick_checked = self._busy = True
        self._loop.call_soon(self._end_tick)
        self.stat_calls += 1
        future = self._loop.run_in_executor(self._executor, self._probe, self._key)
        future.add_done_callback(self._probed)

    def _end_tick(self) -> None:
        self._tick_checked = False

    # Helper thread.
    def _probe(
        self, known: StatKey | None
    ) -> tuple[StatKey | None, Layer | None, ConfigError | None, bool]:
        key = stat_key(self.path)
        if key == known:
            return key, None, None, False
        try:
            return key, read_htaccess(self.path) or {}, None, True
        except ConfigError as exc:
            return key, None, exc, True

    def _probed(self, future: asyncio.Future[Any]) -> None:
        self._busy = False
        try:
            key, layer, error, changed = future.result()
        except Exception:
            logger.exception("could not read %s", self.path)
            return
        self._key = key
        if changed:
            for mount in self.mounts:
                mount.apply(layer, error)


class SiteRunner:
    """The application runner of a site: picks the mount, and starts and stops the
    applications behind the mounts."""

    def __init__(self, config: Config, site: Site) -> None:
        self.config = config
        self.site = site
        self.loop = asyncio.get_running_loop()
        self.pool = ThreadPool(config.threads)
        self.sources: dict[tuple[str, str], ScriptSource] = {}
        self.groups: dict[str, DaemonRunner] = {}
        self.mounts: list[SiteMount] = []
        self.watches: dict[str, HtaccessWatch] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="asyncwsgi-htaccess")
        self._initial_stats: dict[tuple[str, str], int] = {}
        trust = ProxyTrust(config.forwarded_allow_ips) if config.forwarded_allow_ips else None
        vhost_routes: list[tuple[VirtualHost, list[tuple[str, SiteMount]]]] = []
        main: list[tuple[str, SiteMount]] = []
        for vhost, mount in site.all_mounts():
            site_mount = self._mount(vhost, mount, trust)
            if vhost is None:
                main.append((mount.path, site_mount))
            elif vhost_routes and vhost_routes[-1][0] is vhost:
                vhost_routes[-1][1].append((mount.path, site_mount))
            else:
                vhost_routes.append((vhost, [(mount.path, site_mount)]))
        for vhost in site.vhosts:
            if not any(v is vhost for v, _ in vhost_routes):
                vhost_routes.append((vhost, []))
        self.routes: Routes[SiteMount] = Routes(vhost_routes, main)

    def _mount(
        self, vhost: VirtualHost | None, mount: Mount, trust: ProxyTrust | None
    ) -> SiteMount:
        settings = mount.settings(self.site.htaccess.get(mount.htaccess))
        group_name = settings["process_group"].value
        callable_name = settings["callable"].value
        embedded: WSGIRunner | None = None
        daemons: DaemonRunner | None = None
        if group_name == EMBEDDED:
            key = (mount.script, callable_name)
            source = self.sources.get(key)
            if source is None:
                # Raises ScriptLoadError: nothing listens yet.
                source = ScriptSource(mount.script, callable_name=callable_name, reloading=True)
                self.sources[key] = source
                self._initial_stats[key] = source.stat_calls
            embedded = WSGIRunner(source, self.pool, script_name=mount.path, proxy_trust=trust)
        else:
            daemons = self.groups.get(group_name)
            if daemons is None:
                group = self.site.group(group_name)
                assert group is not None  # read_site checked it
                config = self.config
                daemons = DaemonRunner(
                    app=mount.script,
                    group=group.name,
                    processes=group.processes,
                    threads=group.threads,
                    callable_name=callable_name,
                    script_reloading=False,  # each mount checks the script itself
                    script_name=mount.path,
                    forwarded_allow_ips=config.forwarded_allow_ips,
                    log_level=config.log_level,
                    graceful_timeout=group.graceful_timeout,
                    shutdown_timeout=group.shutdown_timeout,
                    maximum_requests=group.maximum_requests,
                    restart_interval=group.restart_interval,
                    request_timeout=group.request_timeout,
                    title=group.title,
                )
                self.groups[group_name] = daemons
        site_mount = SiteMount(mount, vhost, settings, embedded=embedded, daemons=daemons)
        if mount.htaccess:
            watch = self.watches.get(mount.htaccess)
            if watch is None:
                watch = HtaccessWatch(
                    mount.htaccess, stat_key(mount.htaccess), self.loop, self._executor
                )
                self.watches[mount.htaccess] = watch
            watch.mounts.append(site_mount)
            site_mount.watch = watch
        self.mounts.append(site_mount)
        return site_mount

    # -- ApplicationRunner -------------------------------------------------------------

    def submit(self, exchange: RoutedExchange) -> None:
        host: bytes | None = None
        for name, value in exchange.headers:
            if len(name) == 4 and name.lower() == b"host":
                host = value
                break
        mounts = self.routes.mounts_for(exchange.server, host_name(host))
        found = match(mounts, decode_path(exchange.path))
        if found is None:
            exchange.loop_send_error("404 Not Found", _NOT_FOUND)
            return
        found[1].submit(exchange)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start every daemon group and wait until all are READY."""
        started: list[DaemonRunner] = []
        try:
            for runner in self.groups.values():
                await runner.start()
                started.append(runner)
        except BaseException:
            for runner in started:
                await runner.close()
            raise
        unused = [g.name for g in self.site.groups if g.name not in self.groups]
        for name in unused:
            logger.warning("daemon group %r: no application uses it; not started", name)

    async def close(self) -> None:
        for runner in self.groups.values():
            await runner.close()
        self._executor.shutdown(wait=False)

    def restarts(self, reason: str) -> dict[str, Callable[[], None]]:
        """What ``reload [GROUP]`` and SIGHUP can restart: each daemon group by name, and
        ``embedded`` (the next request to each embedded mount re-imports its script)."""
        actions: dict[str, Callable[[], None]] = {}
        for name, runner in self.groups.items():
            actions[name] = lambda runner=runner: runner.restart(reason)  # type: ignore[misc]
        if self.sources:

            def embedded() -> None:
                logger.info("%s; the next request to each embedded mount re-imports", reason)
                for source in self.sources.values():
                    source.force_reload()

            actions["embedded"] = embedded
        return actions

    @property
    def stat_calls(self) -> int:
        """Stats of the scripts on the request path (not the one at start-up)."""
        embedded = sum(
            source.stat_calls - self._initial_stats[key] for key, source in self.sources.items()
        )
        return embedded + sum(runner.stat_calls for runner in self.groups.values())

    def status(self) -> dict[str, Any]:
        mounts = []
        for mount in self.mounts:
            key = (mount.config.script, mount.settings["callable"].value)
            source = self.sources.get(key)
            if mount.daemons is not None:
                stats = mount.daemons.stat_calls
            elif source is not None:
                stats = source.stat_calls - self._initial_stats[key]
            else:
                stats = 0
            mounts.append(
                {
                    "vhost": mount.vhost.server_name if mount.vhost is not None else None,
                    "path": mount.path or "/",
                    "script": mount.config.script,
                    "group": mount.daemons.group.name if mount.daemons is not None else None,
                    "script_reloading": mount.reloading,
                    "broken": str(mount.broken) if mount.broken is not None else None,
                    "requests": mount.requests,
                    "script_stats": stats,
                    "htaccess_stats": mount.watch.stat_calls if mount.watch else 0,
                }
            )
        return {"mounts": mounts}
