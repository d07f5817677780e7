"""A site from a config file, running: its mounts, their runners and their .htaccess.

Wiring, like ``asyncwsgi.server``. Routing runs on the event loop thread; the stat and read of a
.htaccess file run on a worker thread (embedded mounts) or a helper thread (daemon
mounts).

Each WSGIScriptAlias of each virtual host is a :class:`SiteMount`. Mounts of the same
script and callable share one application: in embedded mode one :class:`ScriptSource`
(one module, one re-import per change), in daemon mode their group's
:class:`DaemonRunner`. Whether a request checks the script is the mount's own setting
(``WSGIScriptReloading`` as its contexts give it), so a mount whose .htaccess turns
reloading off never stats its script even while another mount of it does.

A .htaccess is looked at as the script is: one stat per loop tick, when a request for
one of its mounts arrives. For an embedded mount the worker thread takes it, before the
script's, so the request that sees a change is already served under the new settings;
for a daemon mount a helper thread takes it, without holding the request back. A changed
file is read again; a .htaccess that no longer parses gets its mounts' requests a 500
(and one logged error) until it is fixed, as Apache does. Only WSGIScriptReloading
applies at once; a changed WSGICallableObject or WSGIProcessGroup is logged and applies
at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from asyncwsgi.config import Config, ProcessSettings
from asyncwsgi.core.exchange import ServerExchange
from asyncwsgi.core.head import INTERNAL_ERROR
from asyncwsgi.daemon.runner import DaemonRunner
from asyncwsgi.errors import ConfigError, ScriptLoadError
from asyncwsgi.scripts.reloader import ScriptSource
from asyncwsgi.scripts.watch import FileWatch, StatKey, TickStat
from asyncwsgi.sites.directives import read_htaccess
from asyncwsgi.sites.model import EMBEDDED, Layer, Mount, Site, StaticAlias, VirtualHost
from asyncwsgi.sites.report import unserved
from asyncwsgi.sites.routing import Routes, match
from asyncwsgi.static.mount import StaticMount, check_folder
from asyncwsgi.wsgi.environ import decode_path
from asyncwsgi.wsgi.pool import ThreadPool
from asyncwsgi.wsgi.proxy import ProxyTrust, trust_for
from asyncwsgi.wsgi.runner import WSGIRunner
from asyncwsgi.wsgi.running import RequestWatch
from asyncwsgi.wsgi.types import WSGIApplication

logger = logging.getLogger("asyncwsgi.error")

_NOT_FOUND = b"Not Found\n"
_BAD_PATH = b"Bad Request: '.' or '..' in the path\n"


class SiteMount:
    """One WSGIScriptAlias as one virtual host serves it."""

    def __init__(self, config: Mount, vhost: VirtualHost | None, settings: Layer) -> None:
        self.config = config
        self.vhost = vhost
        self.path = config.path
        self.settings = settings
        self.reloading: bool = settings["script_reloading"].value
        self.embedded: WSGIRunner | None = None
        self.daemons: DaemonRunner | None = None
        self.watch: HtaccessWatch | None = None
        self.broken: ConfigError | None = None  # its .htaccess does not parse
        self.restricted = ""  # WSGIRestrictEmbedded On, where: this embedded mount answers 500
        self.requests = 0

    # Event loop thread.
    def submit(self, exchange: ServerExchange) -> None:
        self.requests += 1
        exchange.script_name = self.path
        if self.restricted:
            exchange.loop_send_error("500 Internal Server Error", INTERNAL_ERROR)
            return
        embedded = self.embedded
        if embedded is not None:
            # The worker thread looks at the .htaccess and the script (MountSource).
            embedded.submit(exchange)
            return
        daemons = self.daemons
        assert daemons is not None
        watch = self.watch
        if watch is not None:
            watch.check()
        if self.broken is not None:
            exchange.loop_send_error("500 Internal Server Error", INTERNAL_ERROR)
            return
        if self.reloading:
            daemons.check_script()
        daemons.submit(exchange)

    # Whichever thread read the .htaccess.
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


class MountSource:
    """An embedded mount's application source (an ``AppSource``): the worker thread looks
    at the .htaccess first and then, if the mount reloads, at the script; each stat is
    shared by the requests of one loop tick."""

    def __init__(self, mount: SiteMount, script: ScriptSource) -> None:
        self.mount = mount
        self.script = script

    # Event loop thread: cheap, nothing is stat'ed here.
    def ticket(self) -> tuple[TickStat | None, TickStat | None]:
        watch = self.mount.watch
        return (watch.ticket() if watch is not None else None, self.script.ticket())

    # Worker thread.
    def resolve(self, ticket: object) -> WSGIApplication:
        htaccess, script = cast(tuple[TickStat | None, TickStat | None], ticket)
        mount = self.mount
        if htaccess is not None:
            assert mount.watch is not None
            mount.watch.refresh(htaccess)
        if mount.broken is not None:
            # Logged once by apply(); the runner answers 500.
            raise ScriptLoadError(mount.config.script, str(mount.broken))
        return self.script.resolve(script if mount.reloading else None)


class HtaccessWatch:
    """One .htaccess file and the mounts whose script is in its folder.

    Its stat is shared by the requests of one loop tick, as the script's is. Embedded
    mounts take it on the worker thread before their script's, so the request that sees
    a change is served under the new settings; for daemon mounts a helper thread takes
    it, and their requests do not wait for it.
    """

    def __init__(self, path: str, executor: ThreadPoolExecutor) -> None:
        self.path = path
        self.mounts: list[SiteMount] = []
        self.file = FileWatch(path)
        # No key yet: the first request's look reads the file again, so an edit made
        # since read_site read it is not missed.
        self._key: StatKey | None = None
        self._executor = executor
        self._lock = threading.Lock()  # one read at a time

    @property
    def stat_calls(self) -> int:
        return self.file.stat_calls

    # Event loop thread.
    def ticket(self) -> TickStat:
        return self.file.ticket()

    def check(self) -> None:
        """Refresh on the helper thread (daemon mounts), one refresh at a time."""
        self.file.in_background(self._executor, self.refresh)

    # Any thread.
    def refresh(self, tick: TickStat) -> None:
        key = tick.get()
        if key == self._key:
            return
        with self._lock:
            if key == self._key:
                return
            layer: Layer | None = None
            error: ConfigError | None = None
            try:
                layer = read_htaccess(self.path) or {}
            except ConfigError as exc:
                error = exc
            self._key = key
            for mount in self.mounts:
                mount.apply(layer, error)


_Target = SiteMount | StaticMount


def _embedded_paths(site: Site) -> None:
    """WSGIPythonPath, and WSGIPythonHome's packages, first on this process's sys.path
    (as mod_wsgi: they are embedded mode's; a daemon group has python-path= and
    python-home=)."""
    import site as site_module
    import sys

    folders: list[str] = []
    if site.python_path is not None:
        folders += site.python_path.value
    home = site.python_home
    if home is not None and os.path.realpath(home.value) != os.path.realpath(sys.prefix):
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        packages = os.path.join(home.value, "lib", version, "site-packages")
        if not os.path.isdir(packages):
            raise ConfigError(
                f"{home.origin}: WSGIPythonHome {home.value}: no lib/{version}/site-packages "
                f"(the server runs {version})"
            )
        folders.append(packages)
    if not folders:
        return
    before = list(sys.path)
    for folder in folders:
        site_module.addsitedir(folder)
    sys.path[:] = [p for p in sys.path if p not in before] + before


class SiteRunner:
    """The application runner of a site: picks the mount, and starts and stops the
    applications behind the mounts."""

    def __init__(self, config: Config, site: Site) -> None:
        self.config = config
        self.site = site
        self.keep_last_good = config.reload_failure == "keep"
        self.loop = asyncio.get_running_loop()
        self.pool = ThreadPool(config.threads, max_threads=config.max_threads)
        self.sources: dict[tuple[str, str], ScriptSource] = {}
        self.groups: dict[str, DaemonRunner] = {}
        self.mounts: list[SiteMount] = []
        self.watches: dict[str, HtaccessWatch] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="asyncwsgi-htaccess")
        self._initial_stats: dict[tuple[str, str], int] = {}
        _embedded_paths(site)  # before the embedded mounts' scripts load
        trust = trust_for(config.forwarded_allow_ips)
        self.statics: list[StaticMount] = []
        self.watch: RequestWatch | None = None
        try:
            main: list[tuple[str, _Target]] = [
                (m.path, self._mount(None, m, trust)) for m in site.mounts
            ]
            main += self._statics(site.statics)
            vhost_routes = [
                (
                    vhost,
                    [(m.path, self._mount(vhost, m, trust)) for m in vhost.mounts]
                    + self._statics(vhost.statics),
                )
                for vhost in site.vhosts
            ]
        except BaseException:
            # A script that does not load: nothing has started but these threads.
            self.pool.shutdown(0)
            self._executor.shutdown(wait=False)
            raise
        self.routes: Routes[SiteMount | StaticMount] = Routes(vhost_routes, main)

    def _statics(self, aliases: tuple[StaticAlias, ...]) -> list[tuple[str, _Target]]:
        found: list[tuple[str, _Target]] = []
        for alias in aliases:
            real, is_file = check_folder(alias.folder, f"{alias.origin}: Alias")
            mount = StaticMount(alias.path, real, self.pool, is_file=is_file)
            self.statics.append(mount)
            found.append((alias.path, mount))
        return found

    def _mount(
        self, vhost: VirtualHost | None, mount: Mount, trust: ProxyTrust | None
    ) -> SiteMount:
        settings = mount.settings(self.site.htaccess.get(mount.htaccess))
        site_mount = SiteMount(mount, vhost, settings)
        # With WSGIScriptReloading from the command line, a .htaccess can change nothing.
        if mount.htaccess and "script_reloading" not in mount.overrides:
            watch = self.watches.get(mount.htaccess)
            if watch is None:
                watch = HtaccessWatch(mount.htaccess, self._executor)
                self.watches[mount.htaccess] = watch
            watch.mounts.append(site_mount)
            site_mount.watch = watch
        group_name = settings["process_group"].value
        callable_name = settings["callable"].value
        restrict = self.site.restrict_embedded
        if group_name == EMBEDDED and restrict is not None and restrict.value:
            # As mod_wsgi: the application is not loaded, and its requests get 500.
            site_mount.restricted = restrict.origin
        elif group_name == EMBEDDED:
            key = (mount.script, callable_name)
            source = self.sources.get(key)
            if source is None:
                try:
                    source = ScriptSource(
                        mount.script,
                        callable_name=callable_name,
                        reloading=True,
                        keep_last_good=self.keep_last_good,
                    )
                except ScriptLoadError as exc:  # nothing listens yet
                    raise ScriptLoadError(
                        exc.target, f"{exc.message} (WSGIScriptAlias at {mount.origin})"
                    ) from exc.__cause__
                self.sources[key] = source
                self._initial_stats[key] = source.stat_calls
            site_mount.embedded = WSGIRunner(
                MountSource(site_mount, source),
                self.pool,
                script_name=mount.path,
                proxy_trust=trust,
            )
        else:
            daemons = self.groups.get(group_name)
            if daemons is None:
                group = self.site.group(group_name)
                assert group is not None  # read_site checked it
                config = self.config
                daemons = DaemonRunner(
                    app=mount.script,
                    group=group.name,
                    settings=ProcessSettings.of(group),
                    callable_name=callable_name,
                    script_reloading=False,  # each mount checks the script itself
                    script_name=mount.path,
                    forwarded_allow_ips=config.forwarded_allow_ips,
                    log_level=config.log_level,
                    title=group.title,
                    send_timeout=config.send_timeout,
                    cpu_affinity=config.cpu_affinity,
                    error_logfile=config.error_logfile,
                    log_config=config.log_config,
                    slow_request=config.slow_request,
                )
                self.groups[group_name] = daemons
            site_mount.daemons = daemons
        self.mounts.append(site_mount)
        return site_mount

    # -- the runner interface (asyncwsgi.server.runners.Runner) -------------------------

    def submit(self, exchange: ServerExchange) -> None:
        host: bytes | None = None
        for name, value in exchange.headers:
            if len(name) == 4 and name.lower() == b"host":
                host = value
                break
        mounts = self.routes.mounts_for(exchange.server, host)
        raw = exchange.path
        path = decode_path(raw)
        if b"%" in raw or "/." in path:
            # As Apache: an encoded slash is not a path separator (AllowEncodedSlashes
            # Off: 404), and a "." or ".." segment must not carry a request out of the
            # mount it is routed by (400).
            if b"%2f" in raw.lower():
                exchange.loop_send_error("404 Not Found", _NOT_FOUND)
                return
            if any(segment in (".", "..") for segment in path.split("/")):
                exchange.loop_send_error("400 Bad Request", _BAD_PATH)
                return
        found = match(mounts, path)
        if found is None:
            exchange.loop_send_error("404 Not Found", _NOT_FOUND)
            return
        found[1].submit(exchange)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start every daemon group and wait until all are READY; watch the embedded
        mounts' slow and overdue requests."""
        self.watch = RequestWatch(
            self.loop,
            lambda: [m.embedded.running for m in self.mounts if m.embedded is not None],
            slow=self.config.slow_request,
            timeout=self.config.request_timeout,
        )
        self.watch.start()
        try:
            for runner in self.groups.values():
                await runner.start()
        except BaseException:
            await self.close()
            raise
        for static in self.statics:
            logger.info("static %s -> %s", static.path or "/", static.folder)
        for level, message in self.site.notices:
            (logger.warning if level == "warning" else logger.info)("%s", message)
        for mount in self.mounts:
            host = mount.vhost.server_name or "*" if mount.vhost is not None else "(main server)"
            logger.info(
                "mount %s%s -> %s (%s, WSGIScriptReloading %s)",
                host,
                mount.path or "/",
                mount.config.script,
                "embedded" if mount.daemons is None else f"daemon group {mount.daemons.group.name}",
                "On" if mount.reloading else "Off",
            )
            if mount.restricted:
                logger.error(
                    "mount %s%s runs in embedded mode, which WSGIRestrictEmbedded On (%s) "
                    "disables: its requests get 500",
                    host,
                    mount.path or "/",
                    mount.restricted,
                )
        for address in unserved(self.site, self.config.bind):
            logger.warning(
                "requests to %s get 404: no <VirtualHost> answers there and the main server "
                "has no WSGIScriptAlias",
                address,
            )
        unused = [g.name for g in self.site.groups if g.name not in self.groups]
        for name in unused:
            logger.warning("daemon group %r: no application uses it; not started", name)

    async def close(self) -> None:
        """Stop the worker threads, the daemon groups and this site's helper thread (the
        server calls it once its connections are done)."""
        if self.watch is not None:
            self.watch.stop()
        await self.pool.stop()
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
        embedded = sum(self._script_stats(key) for key in self.sources)
        return embedded + sum(runner.stat_calls for runner in self.groups.values())

    def _script_degraded(self, mount: SiteMount) -> dict[str, object] | None:
        if mount.daemons is not None:
            return mount.daemons.group.degraded
        return self.sources[(mount.config.script, mount.settings["callable"].value)].degraded

    def _script_stats(self, key: tuple[str, str]) -> int:
        return self.sources[key].stat_calls - self._initial_stats[key]

    def status(self) -> dict[str, Any]:
        mounts = []
        for mount in self.mounts:
            if mount.daemons is not None:
                stats = mount.daemons.stat_calls
            else:
                stats = self._script_stats((mount.config.script, mount.settings["callable"].value))
            mounts.append(
                {
                    "vhost": mount.vhost.server_name if mount.vhost is not None else None,
                    "path": mount.path or "/",
                    "script": mount.config.script,
                    "group": mount.daemons.group.name if mount.daemons is not None else None,
                    "script_reloading": mount.reloading,
                    "callable": mount.settings["callable"].value,
                    "broken": str(mount.broken) if mount.broken is not None else None,
                    "requests": mount.requests,
                    "script_stats": stats,
                    "degraded": self._script_degraded(mount),
                    "htaccess_stats": mount.watch.stat_calls if mount.watch else 0,
                }
            )
        info: dict[str, Any] = {"mode": "site", "app": self.site.path, "mounts": mounts}
        if self.groups:
            info["groups"] = {name: r.group_status() for name, r in self.groups.items()}
        return info

    def reopen_logs(self) -> None:
        for runner in self.groups.values():
            runner.reopen_logs()

    def stop_note(self) -> str:
        htaccess = sum(w.stat_calls for w in self.watches.values())
        return f"{self.stat_calls} stat(s) of the WSGI script; {htaccess} of .htaccess"
