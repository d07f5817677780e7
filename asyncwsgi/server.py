"""The composition root: sockets, the event loop, signals and shutdown.

This is where the HTTP layer, the WSGI bridge and the script loader meet; none of them
knows the others. Signal handlers only enqueue the signal; one task dispatches each to a
``handle_<name>`` method, as gunicorn's arbiter does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asyncwsgi.config import Config, ProcessSettings
from asyncwsgi.control import ControlError, ControlServer, resolve_control_path
from asyncwsgi.daemon.front import DaemonRunner
from asyncwsgi.errors import ConfigError
from asyncwsgi.http.protocol import HttpProtocol
from asyncwsgi.http.state import HttpLimits, ServerState
from asyncwsgi.processes import Child, ChildState, ProcessGroup
from asyncwsgi.scripts.loader import is_script_path, load_target
from asyncwsgi.scripts.reloader import ScriptSource, StaticSource
from asyncwsgi.settings import BindAddress
from asyncwsgi.sites.runner import SiteRunner
from asyncwsgi.wsgi.pool import ThreadPool
from asyncwsgi.wsgi.proxy import ProxyTrust
from asyncwsgi.wsgi.runner import WSGIRunner
from asyncwsgi.wsgi.types import WSGIApplication

logger = logging.getLogger("asyncwsgi.error")
access_logger = logging.getLogger("asyncwsgi.access")

_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


def make_source(config: Config) -> ScriptSource | StaticSource:
    """Load the application named by the config. Raises ``ScriptLoadError``."""
    app = config.app
    if not isinstance(app, str):
        return StaticSource(app)
    if is_script_path(app):
        return ScriptSource(app, callable_name=config.callable, reloading=config.script_reloading)
    return StaticSource(load_target(app, config.callable))


def open_socket(address: BindAddress, backlog: int, *, listen: bool = True) -> socket.socket:
    """A listening, non-blocking socket for ``address``. Raises ``ConfigError``.

    With ``listen`` False a TCP socket is only bound: it holds the port (for copies that
    listen on it with SO_REUSEPORT) and takes no connections itself.
    """
    try:
        if address.kind == "fd":
            sock = socket.socket(fileno=address.fd)
        elif address.kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(address.path).st_mode):
                    os.unlink(address.path)  # a stale socket left by an earlier run
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(address.path)
            sock.listen(backlog)
        else:
            infos = socket.getaddrinfo(
                address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, kind, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if address.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            if listen:
                sock.listen(backlog)
    except OSError as exc:
        raise ConfigError(f"bind {address}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def systemd_sockets() -> list[BindAddress]:
    """Sockets handed over by systemd socket activation (``LISTEN_FDS``)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    return [BindAddress("fd", fd=3 + i) for i in range(count)]


def make_ssl_context(config: Config) -> ssl.SSLContext | None:
    """The server's TLS context, or None to serve plain HTTP. Raises ``ConfigError``."""
    if not config.certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.certfile, config.keyfile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"certfile: cannot load {config.certfile!r}: {exc}") from exc
    return context


def describe(sock: socket.socket, address: BindAddress, *, tls: bool = False) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}"


class Listener:
    """Accepts connections on one listening socket: every waiting one, per wake-up.

    The loop's own server would do, but libuv (under uvloop) accepts a single connection
    per loop iteration; when a thousand clients connect at once to a busy server, the last
    of them then wait seconds before anything reads their request.
    """

    _BATCH = 512  # accepts per wake-up, so established connections still get their turn

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = factory
        self.ssl = ssl_context
        self._tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        self._pending: set[asyncio.Task[Any]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self.closed = False

    def start(self) -> None:
        self._retry = None
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(self._BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors or memory: stop accepting for a moment instead of
                    # spinning on a listening socket that stays readable.
                    logger.error("cannot accept connections (%s); retrying in 0.5 s", exc)
                    self.loop.remove_reader(self.sock.fileno())
                    self._retry = self.loop.call_later(0.5, self.start)
                    return
                raise
            conn.setblocking(False)
            if self._tcp:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self.loop.create_task(self._connect(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn, ssl=self.ssl)
        except Exception as exc:  # a failed TLS handshake, a client gone already
            logger.debug("connection setup failed: %s", exc)
            conn.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class Server:
    """One running server: what ``serve()`` builds and tears down."""

    def __init__(self, config: Config, source: ScriptSource | StaticSource | None) -> None:
        self.config = config
        self.source = source
        self.loop = asyncio.get_running_loop()
        self.pool: ThreadPool | None = None
        self.daemons: DaemonRunner | None = None
        self.site: SiteRunner | None = None
        self.runner: WSGIRunner | DaemonRunner | SiteRunner
        # Before any runner starts threads: a bad certificate leaves nothing behind.
        self.ssl = make_ssl_context(config)
        if config.site is not None:
            # Loads every embedded mount's script (ScriptLoadError) before anything listens.
            self.runner = self.site = SiteRunner(config, config.site)
            self.pool = self.site.pool
        elif source is None:
            assert isinstance(config.app, str)
            self.runner = self.daemons = DaemonRunner(
                app=config.app,
                group=config.group,
                settings=ProcessSettings.of(config),
                callable_name=config.callable,
                script_reloading=config.script_reloading,
                script_name=config.root_path,
                forwarded_allow_ips=config.forwarded_allow_ips,
                log_level=config.log_level,
            )
        else:
            self.pool = ThreadPool(config.threads)
            self.runner = WSGIRunner(
                source,
                self.pool,
                script_name=config.root_path,
                proxy_trust=ProxyTrust(config.forwarded_allow_ips)
                if config.forwarded_allow_ips
                else None,
            )
        limits = HttpLimits(
            limit_request_line=config.limit_request_line,
            limit_request_fields=config.limit_request_fields,
            limit_request_field_size=config.limit_request_field_size,
            limit_request_body=config.limit_request_body or sys.maxsize,
            keep_alive_timeout=config.keep_alive_timeout,
            header_timeout=config.header_timeout,
            send_timeout=config.send_timeout,
            body_timeout=config.body_timeout,
            max_connections=config.max_connections,
        )
        self.state = ServerState(
            self.loop,
            self.runner,
            limits,
            access_log=access_logger if config.access_log else None,
            server_header=config.server_header,
        )
        self.listeners: list[Listener] = []
        self.addresses: list[str] = []
        self.signals: asyncio.Queue[str] = asyncio.Queue()
        self.stop = asyncio.Event()
        self.control: ControlServer | None = None

    def reload(self, group: str | None) -> str:
        """The control command: restart the daemon group, or re-import the script."""
        if self.site is not None:
            return _reload_answer(
                self.site.restarts("reload requested on the control socket"), group
            )
        if self.daemons is not None:
            daemons = self.daemons
            name = daemons.group.name
            return _reload_answer(
                {name: lambda: daemons.restart("reload requested on the control socket")},
                group,
            )
        source = self.source
        assert source is not None

        def force() -> None:
            logger.info("reload requested on the control socket; the next request re-imports")
            source.force_reload()

        return _reload_answer({"embedded": force}, group)

    def status(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "pid": os.getpid(),
            "mode": self.config.mode,
            "app": str(self.config.app),
            "requests": self.state.requests,
            "connections": len(self.state.connections),
            "addresses": self.addresses,
        }
        runners = [self.daemons] if self.daemons is not None else []
        if self.site is not None:
            info["mode"] = "site"
            info["app"] = self.site.site.path
            info.update(self.site.status())
            runners = list(self.site.groups.values())
        if runners:
            info["groups"] = {runner.group.name: _group_status(runner) for runner in runners}
        return info

    async def start(self) -> None:
        if self.daemons is not None:
            # The group is READY (its application imported) before anything listens.
            await self.daemons.start()
        if self.site is not None:
            await self.site.start()
        binds = list(self.config.bind)
        inherited = systemd_sockets()
        if inherited:
            binds = inherited
        sockets = [open_socket(b, self.config.backlog) for b in binds]
        for sock, address in zip(sockets, binds, strict=True):
            listener = Listener(self.loop, sock, lambda: HttpProtocol(self.state), self.ssl)
            listener.start()
            self.listeners.append(listener)
            self.addresses.append(describe(sock, address, tls=self.ssl is not None))
        self.control = await open_control(self.config, self.reload, self.status)

    # -- signals -----------------------------------------------------------------------

    def install_signal_handlers(self) -> list[int]:
        installed = []
        for name in _SIGNALS:
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
        logger.info("received SIGTERM; shutting down gracefully")
        self.stop.set()

    def handle_int(self) -> None:
        logger.info("received SIGINT; shutting down gracefully")
        self.stop.set()

    def handle_hup(self) -> None:
        if self.site is not None:
            for restart in self.site.restarts("received SIGHUP").values():
                restart()
            return
        if self.daemons is not None:
            self.daemons.restart("received SIGHUP")
            return
        logger.info("received SIGHUP; the next request reloads the WSGI script")
        assert self.source is not None
        self.source.force_reload()

    # -- shutdown ----------------------------------------------------------------------

    async def abandon(self) -> None:
        """Undo a ``start()`` that failed: nothing was served, so nothing is logged."""
        if self.control is not None:
            await self.control.close()
        for listener in self.listeners:
            listener.close()
        if self.pool is not None:
            await asyncio.to_thread(self.pool.shutdown, 1.0)
        if self.daemons is not None:
            await self.daemons.close()
        if self.site is not None:
            await self.site.close()

    async def shutdown(self) -> None:
        if self.control is not None:
            await self.control.close()
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
        if self.pool is not None:
            stuck = await asyncio.to_thread(self.pool.shutdown, 1.0)
            if stuck:
                logger.warning("%d worker thread(s) still busy at exit", len(stuck))
        if self.daemons is not None:
            await self.daemons.close()
        if self.site is not None:
            await self.site.close()
        for address in self.config.bind:
            if address.kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(address.path)
        stats = self.source.stat_calls if self.source is not None else 0
        if self.daemons is not None:
            stats = self.daemons.stat_calls
        if self.site is not None:
            stats = self.site.stat_calls
        htaccess = ""
        if self.site is not None:
            htaccess = f"; {sum(w.stat_calls for w in self.site.watches.values())} of .htaccess"
        logger.info(
            "stopped after %d request(s); %d stat(s) of the WSGI script%s",
            state.requests,
            stats,
            htaccess,
        )


def _group_status(runner: DaemonRunner) -> dict[str, Any]:
    group = runner.group
    return {
        "generation": group.generation,
        "failed": group.failed,
        "restarts": group.restarts,
        "queued": len(runner.queue),
        "processes": [
            {
                "pid": w.pid,
                "generation": w.generation,
                "state": w.state.value,
                "requests": w.requests,
            }
            for w in group.children
        ],
    }


async def open_control(
    config: Config, reload: Callable[[str | None], str], status: Callable[[], dict[str, Any]]
) -> ControlServer | None:
    """The control socket ``python -m asyncwsgi reload`` talks to, if one is wanted.

    ``reload(group)`` restarts one group (every group for None) and returns the answer;
    an explicit path that cannot be used is a ``ConfigError``, the default place a warning.
    """
    try:
        path = resolve_control_path(config.control_socket)
    except ControlError as exc:
        logger.warning("no control socket: %s", exc)
        return None
    if path is None:
        return None

    async def handle(words: list[str]) -> str:
        command, args = words[0], words[1:]
        if command == "reload" and len(args) <= 1:
            return reload(args[0] if args else None)
        if command == "status" and not args:
            return "ok " + json.dumps(status(), sort_keys=True)
        return f"error unknown command {' '.join(words)!r} (commands: reload [GROUP], status)"

    server = ControlServer(path, handle)
    try:
        await server.start()
    except ControlError as exc:
        if config.control_socket:
            raise ConfigError(f"control_socket: {exc}") from exc
        logger.warning("no control socket: %s", exc)
        return None
    logger.info("control socket: %s (python -m asyncwsgi reload [GROUP])", path)
    return server


def _reload_answer(groups: dict[str, Callable[[], None]], group: str | None) -> str:
    if group is None:
        for restart in groups.values():
            restart()
        return "ok reloading " + " ".join(groups)
    if group not in groups:
        return f"error no process group named {group!r} (groups: {', '.join(groups)})"
    groups[group]()
    return f"ok reloading {group}"


# --------------------------------------------------------------------------------------
# Embedded mode with several processes: copies of the whole server
# --------------------------------------------------------------------------------------

# The environment variable a copy finds its settings in (JSON), and the code it runs.
COPY_ENV = "ASYNCWSGI_COPY"
_COPY_MAIN = "from asyncwsgi.cli import copy_main; copy_main()"


def copy_settings(config: Config, binds: list[BindAddress], ready_fd: int) -> str:
    """The JSON a copy is started with: the config, its sockets and its READY pipe."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields["bind"] = [dataclasses.asdict(b) for b in binds]
    fields["processes"] = 1
    fields["control_socket"] = "none"
    return json.dumps({"config": fields, "ready_fd": ready_fd})


def config_from_copy_settings(text: str) -> tuple[Config, int]:
    data = json.loads(text)
    fields = data["config"]
    fields["bind"] = tuple(BindAddress(**b) for b in fields["bind"])
    return Config.build(**fields), int(data["ready_fd"])


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


class Supervisor:
    """``processes`` copies of an embedded-mode server on shared addresses."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.sockets: list[socket.socket] = []
        self.addresses: list[str] = []
        self.signals: asyncio.Queue[str] = asyncio.Queue()
        self.stop = asyncio.Event()
        self.group: ProcessGroup | None = None
        self.control: ControlServer | None = None

    def reload(self, group: str | None) -> str:
        return _reload_answer({"embedded": lambda: self.send_all(signal.SIGHUP)}, group)

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
        self.control = await open_control(self.config, self.reload, self.status)

    async def dispatch_signals(self) -> None:
        while True:
            name = await self.signals.get()
            if name in ("SIGTERM", "SIGINT"):
                logger.info("received %s; stopping the server copies gracefully", name)
                self.stop.set()
            elif name == "SIGHUP":
                logger.info("received SIGHUP; passing it to every server copy")
                self.send_all(signal.SIGHUP)

    def send_all(self, signum: int) -> None:
        assert self.group is not None
        for child in self.group.children:
            if child.process is not None and child.state is not ChildState.EXITED:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signum)

    async def shutdown(self) -> None:
        if self.control is not None:
            await self.control.close()
        if self.group is not None:
            await self.group.close()
        for sock in self.sockets:
            sock.close()
        for address in self.config.bind:
            if address.kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(address.path)


async def _supervise(
    config: Config,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None,
    ready: Callable[[list[str]], Any] | None,
) -> None:
    supervisor = Supervisor(config)
    try:
        await supervisor.start()
    except BaseException:
        await supervisor.shutdown()
        raise
    installed = []
    for name in _SIGNALS:
        if shutdown_trigger is not None and name != "SIGHUP":
            continue
        signum = getattr(signal, name)
        try:
            supervisor.loop.add_signal_handler(signum, supervisor.signals.put_nowait, name)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(signum)
    dispatcher = asyncio.ensure_future(supervisor.dispatch_signals())
    waiters = {asyncio.ensure_future(supervisor.stop.wait())}
    if shutdown_trigger is not None:
        waiters.add(asyncio.ensure_future(shutdown_trigger()))
    try:
        if ready is not None:
            ready(supervisor.addresses)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for signum in installed:
            supervisor.loop.remove_signal_handler(signum)
        dispatcher.cancel()
        await supervisor.shutdown()


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
    if config is None:
        config = Config.build(app=app, **options)
    elif app is not None or options:
        config = config.replace(**({"app": app} if app is not None else {}), **options)
    if config.mode == "embedded" and config.processes > 1:
        await _supervise(config, shutdown_trigger, ready)
        return
    source = make_source(config) if config.mode == "embedded" and config.site is None else None
    server = Server(config, source)
    try:
        await server.start()
    except BaseException:
        # A daemon group that did not start, an address in use: stop what did start.
        await server.abandon()
        raise
    installed: list[int] = []
    dispatcher = asyncio.ensure_future(server.dispatch_signals())
    waiter: asyncio.Future[Any]
    if shutdown_trigger is None:
        installed = server.install_signal_handlers()
        waiter = asyncio.ensure_future(server.stop.wait())
    else:
        installed = [
            s for s in server.install_signal_handlers() if s == getattr(signal, "SIGHUP", None)
        ]
        waiter = asyncio.ensure_future(shutdown_trigger())
    try:
        if ready is not None:
            ready(server.addresses)
        stopper = asyncio.ensure_future(server.stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
    finally:
        for signum in installed:
            server.loop.remove_signal_handler(signum)
        dispatcher.cancel()
        await server.shutdown()


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
    config: Config | None = options.pop("config", None)
    ready = options.pop("ready", None)
    if config is None:
        config = Config.build(app=app, **options)
    elif app is not None or options:
        config = config.replace(**({"app": app} if app is not None else {}), **options)
    loop = new_event_loop(config.loop)
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve(config=config, ready=ready))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
