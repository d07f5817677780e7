"""The shapes the WSGI bridge works with, as types (nothing here runs).

The request it serves is a ``asyncwsgi.core.exchange.Exchange``, whatever the transport.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Protocol, TypeAlias

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse: TypeAlias = Callable[..., Callable[[bytes], None]]
Environ: TypeAlias = dict[str, Any]
WSGIApplication: TypeAlias = Callable[[Environ, StartResponse], Iterable[bytes]]


class AppSource(Protocol):
    """Where the runner gets the application for each request.

    ``ticket`` runs on the event loop when a request arrives and must not block;
    ``resolve`` runs on the worker thread with that ticket and returns the application to
    call (loading or reloading it first if needed). It raises ``ScriptLoadError`` when the
    application cannot be had; the error has already been logged.
    """

    def ticket(self) -> object: ...
    def resolve(self, ticket: object) -> WSGIApplication: ...
