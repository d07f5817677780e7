"""The shapes the WSGI bridge works with, as typing protocols (nothing here runs)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Protocol, TypeAlias

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse: TypeAlias = Callable[..., Callable[[bytes], None]]
Environ: TypeAlias = dict[str, Any]
WSGIApplication: TypeAlias = Callable[[Environ, StartResponse], Iterable[bytes]]


class RequestHead(Protocol):
    """What was asked: the request line, headers and the two ends of the connection."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> bytes: ...
    @property
    def query(self) -> bytes: ...
    @property
    def http_version(self) -> str: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def client(self) -> tuple[str, int] | None: ...
    @property
    def server(self) -> tuple[str, int] | None: ...
    @property
    def scheme(self) -> str: ...


class Exchange(RequestHead, Protocol):
    """One request as the bridge sees it, and the calls that answer it.

    The request attributes are read-only; the methods are called from one worker thread.
    """

    @property
    def head_sent(self) -> bool: ...
    @property
    def body_allowed(self) -> bool:
        """False once a head was sent for a response that carries no body (HEAD, 204,
        304): body chunks would be dropped, so the bridge stops asking for them."""
        ...

    def read_body(self, size: int) -> bytes: ...
    def respond(
        self,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        final: bool,
        body_length: int = -1,
    ) -> None: ...
    def write(self, data: bytes, *, final: bool = False) -> None: ...
    def sendfile(self, file: Any, offset: int, count: int) -> None: ...
    def send_error(self, status: str, message: bytes) -> None: ...
    def abort(self) -> None: ...


class AppSource(Protocol):
    """Where the runner gets the application for each request.

    ``ticket`` runs on the event loop when a request arrives and must not block;
    ``resolve`` runs on the worker thread with that ticket and returns the application to
    call (loading or reloading it first if needed). It raises ``ScriptLoadError`` when the
    application cannot be had; the error has already been logged.
    """

    def ticket(self) -> object: ...
    def resolve(self, ticket: object) -> WSGIApplication: ...
