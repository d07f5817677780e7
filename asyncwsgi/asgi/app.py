"""``asyncwsgi.WSGIApp``: a WSGI application served as an ASGI 3 application.

The host glue is :mod:`asyncwsgi.asgi.links`, one request is an
:class:`~asyncwsgi.asgi.exchange.AsgiExchange` answered from a pool thread, and daemon
mode is :mod:`asyncwsgi.asgi.daemon`; this module is the application the host calls:
the scope types, the lifespan, the thread pool and the script source.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.lowlevel

from asyncwsgi.asgi.daemon import AsgiLoopExchange, daemon_settings
from asyncwsgi.asgi.exchange import AsgiExchange
from asyncwsgi.asgi.links import AnyioLink, AsyncioLink, asyncio_spawn
from asyncwsgi.asgi.scope import Receive, Scope, Send
from asyncwsgi.config import check_setting, default
from asyncwsgi.core.head import INTERNAL_ERROR
from asyncwsgi.daemon.runner import DaemonRunner
from asyncwsgi.errors import ClientDisconnected, ConfigError, ScriptLoadError
from asyncwsgi.scripts.loader import is_script_path, load_target
from asyncwsgi.scripts.reloader import ScriptSource, StaticSource
from asyncwsgi.wsgi.environ import base_environ, build_environ
from asyncwsgi.wsgi.pool import ThreadPool
from asyncwsgi.wsgi.response import FileWrapper, call_application
from asyncwsgi.wsgi.types import AppSource, Environ, WSGIApplication

logger = logging.getLogger("asyncwsgi.error")

# The server's own default (see the settings table in asyncwsgi.config).
DEFAULT_THREADS: int = default("threads")
DEFAULT_CALLABLE: str = default("callable")
DEFAULT_RELOAD_FAILURE: str = default("reload_failure")


class WSGIApp:
    """An ASGI 3 application that serves a WSGI application from a thread pool.

    ``app`` is a WSGI script file (reloaded when it changes, as docs/DESIGN.md
    says, unless ``script_reloading`` is False), ``package.module:attr``, or a WSGI
    callable. The pool of ``threads`` worker threads starts with the first request or
    the lifespan startup and stops at the lifespan shutdown or :meth:`close`.
    """

    def __init__(
        self,
        app: str | os.PathLike[str] | WSGIApplication,
        *,
        script_reloading: bool = True,
        threads: int = DEFAULT_THREADS,
        callable: str = DEFAULT_CALLABLE,
        daemon: object = None,
        reload_failure: str = DEFAULT_RELOAD_FAILURE,
    ) -> None:
        check_setting("script_reloading", script_reloading)
        check_setting("reload_failure", reload_failure)
        check_setting("threads", threads)
        check_setting("callable", callable)
        self.threads = threads
        # The host may run several worker processes that we cannot see: say so.
        self._base = base_environ(file_wrapper=FileWrapper, multiprocess=True)
        self._pool: ThreadPool | None = None
        self._busy: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._asyncio_link: AsyncioLink | None = None
        self._anyio_links: dict[int, tuple[object, AnyioLink]] = {}
        self.source: AppSource
        self._daemons: DaemonRunner | None = None
        self._daemons_started: asyncio.Future[None] | None = None
        if daemon is not None and daemon is not False:
            settings, group, log_level = daemon_settings(daemon, threads)
            if not isinstance(app, (str, os.PathLike)) or not os.fspath(app):
                raise ConfigError(
                    "app: a daemon group imports the application in other processes, so it "
                    "needs a script path or 'module:attr', not a callable"
                )
            target = os.fspath(app)
            if is_script_path(target) and not os.path.isfile(target):
                raise ConfigError(f"app: no such script file {target!r}")
            self._daemons = DaemonRunner(
                app=target,
                group=group,
                settings=settings,
                callable_name=callable,
                script_reloading=script_reloading,
                forwarded_allow_ips="",
                log_level=log_level,
            )
            self.source = StaticSource(_no_app)
            return
        source: AppSource
        if isinstance(app, (str, os.PathLike)):
            target = os.fspath(app)
            if not target:
                raise ConfigError("app: give a script path, package.module:attr or a callable")
            if is_script_path(target):
                source = ScriptSource(
                    target,
                    callable_name=callable,
                    reloading=script_reloading,
                    keep_last_good=reload_failure == "keep",
                )
            else:
                source = StaticSource(load_target(target, callable))
        elif builtins.callable(app):
            source = StaticSource(app)
        else:
            raise ConfigError("app: must be a path, 'module:attr' or a WSGI callable")
        self.source = source

    @property
    def busy_threads(self) -> int:
        """Worker threads running a request now (for monitoring, and leak tests)."""
        return len(self._busy)

    def close(self, timeout: float | None = 10.0) -> list[str]:
        """Stop the worker threads once the requests queued so far are done.

        Blocks up to ``timeout`` for each thread; returns the names of threads still
        running. The next request starts a new pool.
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return []
        stuck = pool.shutdown(timeout)
        if stuck:
            logger.warning("WSGIApp: %d worker thread(s) still busy at shutdown", len(stuck))
        return stuck

    # -- loop side ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and self._daemons is not None:
            await self._http_daemon(scope, receive, send)
        elif kind == "http":
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not asyncio: trio, through anyio
                await self._http_anyio(scope, receive, send)
                return
            # The asyncio hot path, inline: one exchange, one job for the pool, and the
            # pump that sends what the worker queues.
            link = self._asyncio_link
            if loop is not self._loop or link is None:
                link = self._asyncio_link = AsyncioLink(loop)
                self._loop = loop
            exchange = AsgiExchange(scope, link)
            self._submit(exchange)
            await exchange._loop_pump(send, receive, asyncio_spawn)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # WSGI has no websockets: refuse the handshake (the host answers 403).
            message = await receive()
            if message.get("type") == "websocket.connect":
                await send({"type": "websocket.close", "code": 1000})
        else:
            raise NotImplementedError(f"WSGIApp does not handle ASGI {kind!r} scopes")

    async def _http_anyio(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = anyio.lowlevel.current_token()
        native = token.native_token
        entry = self._anyio_links.get(id(native))
        if entry is None or entry[0] is not native:
            entry = (native, AnyioLink(token))
            self._anyio_links = {id(native): entry}  # one loop at a time; drop old ones
        exchange = AsgiExchange(scope, entry[1])
        self._submit(exchange)
        error: Exception | None = None
        async with anyio.create_task_group() as group:

            def spawn(fn: Callable[[Receive], Coroutine[Any, Any, None]], arg: Receive) -> Any:
                group.start_soon(fn, arg)
                return group.cancel_scope

            try:
                await exchange._loop_pump(send, receive, spawn)
            except Exception as exc:  # raised below, not wrapped in an ExceptionGroup
                error = exc
            group.cancel_scope.cancel()
        if error is not None:
            raise error

    async def _http_daemon(self, scope: Scope, receive: Receive, send: Send) -> None:
        runner = self._daemons
        assert runner is not None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "WSGIApp(daemon=...) runs its process group on an asyncio event loop; "
                "this host runs trio"
            ) from None
        await self._start_daemons()
        exchange = AsgiLoopExchange(scope, send)
        receiver = loop.create_task(exchange.receive_loop(receive))
        try:
            runner.submit(exchange)
            await exchange.pump()
        finally:
            receiver.cancel()
            if not exchange.finished:
                # Cancelled by the host, or send() failed: the daemon's thread must hear.
                exchange.lost()

    async def _start_daemons(self) -> None:
        started = self._daemons_started
        if started is None:
            started = self._daemons_started = asyncio.get_running_loop().create_future()
            runner = self._daemons
            assert runner is not None
            try:
                await runner.start()
            except BaseException as exc:
                self._daemons_started = None
                started.set_exception(exc)
                started.exception()  # retrieved: later requests try again
                raise
            started.set_result(None)
        await asyncio.shield(started)

    async def aclose(self) -> None:
        """Stop the daemon process group (daemon mode) gracefully."""
        runner, started = self._daemons, self._daemons_started
        if runner is not None and started is not None:
            self._daemons_started = None
            await runner.close()

    def _submit(self, exchange: AsgiExchange) -> None:
        pool = self._pool
        if pool is None:
            pool = self._start_pool()
        pool.submit(self._serve, exchange, self.source.ticket())

    def _start_pool(self) -> ThreadPool:
        pool = self._pool = ThreadPool(self.threads, name="asyncwsgi-asgi")
        return pool

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            kind = message.get("type")
            if kind == "lifespan.startup":
                try:
                    if self._daemons is not None:
                        await self._start_daemons()
                    elif self._pool is None:
                        self._start_pool()
                except Exception as exc:
                    logger.exception("WSGIApp could not start its worker threads")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                if self._daemons is not None:
                    await self.aclose()
                # Joining threads blocks: do it off the loop.
                await anyio.to_thread.run_sync(self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- worker side -------------------------------------------------------------------

    def _serve(self, exchange: AsgiExchange, ticket: object) -> None:
        if exchange.done or exchange.disconnected:
            return  # the client left while the request waited for a thread
        busy = self._busy
        ident = threading.get_ident()
        busy.add(ident)
        try:
            try:
                app = self.source.resolve(ticket)
            except ScriptLoadError:
                exchange.send_error("500 Internal Server Error", INTERNAL_ERROR)
                return
            environ = build_environ(exchange, self._base)
            # The ASGI scope, for applications that need what only it has (as a2wsgi).
            environ["asgi.scope"] = exchange.scope
            call_application(app, environ, exchange)
        except ClientDisconnected:
            pass
        except Exception:
            logger.exception("error serving %s %s", exchange.method, exchange.scope.get("path"))
        finally:
            if not exchange.finished and not exchange.disconnected:
                # Whatever happened, the loop side must not wait for this request forever.
                exchange.abort()
            busy.discard(ident)


def _no_app(environ: Environ, start_response: Any) -> list[bytes]:  # pragma: no cover
    raise RuntimeError("daemon mode: the application runs in the daemon processes")
