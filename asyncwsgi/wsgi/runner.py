"""Embedded mode: hand each request to the thread pool and run the application there."""

from __future__ import annotations

import threading
import time
from typing import Any

from asyncwsgi.core.exchange import Exchange
from asyncwsgi.core.head import INTERNAL_ERROR
from asyncwsgi.errors import ScriptLoadError
from asyncwsgi.wsgi.environ import base_environ, build_environ
from asyncwsgi.wsgi.pool import ThreadPool
from asyncwsgi.wsgi.proxy import ProxyTrust
from asyncwsgi.wsgi.response import FileWrapper, call_application
from asyncwsgi.wsgi.running import RunningRequests
from asyncwsgi.wsgi.types import AppSource

_ident = threading.get_ident
_clock = time.monotonic


class WSGIRunner:
    """The application runner of embedded mode."""

    def __init__(
        self,
        source: AppSource,
        pool: ThreadPool,
        *,
        script_name: str = "",
        multiprocess: bool = False,
        errors: Any = None,
        proxy_trust: ProxyTrust | None = None,
    ) -> None:
        self._source = source
        self._proxy_trust = proxy_trust
        self._pool = pool
        self.running = RunningRequests()
        self._base = base_environ(
            file_wrapper=FileWrapper,
            multiprocess=multiprocess,
            script_name=script_name.rstrip("/"),
            errors=errors,
        )

    # Event loop thread.
    def submit(self, exchange: Exchange) -> None:
        self._pool.submit(self._serve, exchange, self._source.ticket())

    # Worker thread.
    def _serve(self, exchange: Exchange, ticket: object) -> None:
        # What this thread runs, for --slow-request, --request-timeout and dump (inline:
        # two calls of RunningRequests' would cost more than the bookkeeping itself).
        running = self.running
        by_thread = running.by_thread
        thread = _ident()
        by_thread[thread] = (exchange, _clock())
        try:
            try:
                app = self._source.resolve(ticket)
            except ScriptLoadError:
                exchange.send_error("500 Internal Server Error", INTERNAL_ERROR)
                return
            environ = build_environ(exchange, self._base)
            if self._proxy_trust is not None:
                self._proxy_trust.apply(environ)
            call_application(app, environ, exchange)
        finally:
            del by_thread[thread]
            if running.reported or running.timed_out:
                running.forget(exchange)
