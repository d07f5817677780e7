"""Validated, frozen server settings.

Rule: imports nothing of the package but ``errors``. Every value is checked when a
:class:`Config` is built; an unknown setting is an error, not a silent default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asyncwsgi.errors import ConfigError

LOOPS = ("auto", "uvloop", "asyncio")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True, slots=True)
class BindAddress:
    """Where to listen: a TCP host and port, a UNIX socket path, or an inherited fd."""

    kind: str  # "tcp", "unix" or "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_bind(text: str) -> BindAddress:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT``, ``unix:/path`` or ``fd://N``."""
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ConfigError(f"bind {text!r}: a UNIX socket needs a path")
        return BindAddress("unix", path=path)
    if text.startswith("fd://"):
        try:
            fd = int(text[5:])
        except ValueError:
            raise ConfigError(f"bind {text!r}: fd:// needs a number") from None
        return BindAddress("fd", fd=fd)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"bind {text!r}: expected [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ConfigError(f"bind {text!r}: expected HOST:PORT, unix:PATH or fd://N")
        if ":" in host:
            raise ConfigError(f"bind {text!r}: write IPv6 addresses as [ADDR]:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"bind {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"bind {text!r}: port {port} out of range")
    return BindAddress("tcp", host=host or "0.0.0.0", port=port)


def _default_threads() -> int:
    # Enough threads to overlap an application's I/O waits (database, upstream calls);
    # few enough that, under the GIL, CPU-bound requests are not spread so thin that
    # each one's latency grows. mod_wsgi defaults to 15 per daemon process, waitress 4.
    return 8


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """Every setting of one server. Build it with :meth:`Config.build` to get
    :class:`ConfigError` (naming the setting) instead of ``TypeError``."""

    app: str | Callable[..., Any]
    bind: tuple[BindAddress, ...] = (BindAddress("tcp", host="127.0.0.1", port=8000),)
    threads: int = field(default_factory=_default_threads)
    callable: str = "application"
    script_reloading: bool = True
    root_path: str = ""
    access_log: bool = True
    log_level: str = "info"
    graceful_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    header_timeout: float = 10.0
    limit_request_line: int = 8190
    limit_request_fields: int = 100
    limit_request_field_size: int = 8190
    limit_request_body: int = 1 << 30
    max_connections: int = 4096
    backlog: int = 2048
    loop: str = "auto"
    server_header: bool = True
    forwarded_allow_ips: str = "127.0.0.1,::1"
    certfile: str = ""
    keyfile: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.app, str):
            if not self.app:
                raise ConfigError("app: give a script path or package.module:attr")
        elif not callable(self.app):
            raise ConfigError("app: must be a path, 'module:attr' or a WSGI callable")
        binds: Any = self.bind
        if isinstance(binds, (str, BindAddress)):
            binds = (binds,)
        parsed = tuple(parse_bind(b) if isinstance(b, str) else b for b in binds)
        if not parsed:
            raise ConfigError("bind: at least one address is needed")
        object.__setattr__(self, "bind", parsed)
        _positive_int("threads", self.threads)
        _positive_int("limit_request_line", self.limit_request_line)
        _positive_int("limit_request_fields", self.limit_request_fields)
        _positive_int("limit_request_field_size", self.limit_request_field_size)
        _positive_int("limit_request_body", self.limit_request_body, allow_zero=True)
        _positive_int("max_connections", self.max_connections)
        _positive_int("backlog", self.backlog)
        for name in ("graceful_timeout", "keep_alive_timeout", "header_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{name}: must be a positive number of seconds, not {value!r}")
        if not isinstance(self.callable, str) or not self.callable.isidentifier():
            raise ConfigError(f"callable: {self.callable!r} is not a Python identifier")
        if self.loop not in LOOPS:
            raise ConfigError(f"loop: {self.loop!r} is not one of {', '.join(LOOPS)}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"log_level: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
            )
        if self.root_path and (not self.root_path.startswith("/") or self.root_path == "/"):
            raise ConfigError(f"root_path: {self.root_path!r} must start with '/' (or be empty)")
        if not isinstance(self.forwarded_allow_ips, str):
            raise ConfigError("forwarded_allow_ips: a comma-separated list of addresses")
        for item in self.forwarded_allow_ips.split(","):
            item = item.strip()
            if item and item != "*":
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ConfigError(
                        f"forwarded_allow_ips: {item!r} is not an IP address or network"
                    ) from None
        if self.keyfile and not self.certfile:
            raise ConfigError("keyfile: given without certfile")
        for name in ("certfile", "keyfile"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ConfigError(f"{name}: no such file {path!r}")
        for name in ("script_reloading", "access_log", "server_header"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: must be True or False")

    @classmethod
    def build(cls, **options: Any) -> Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r}")
        if "app" not in options:
            raise ConfigError("app: no application given")
        return cls(**options)

    def replace(self, **options: Any) -> Config:
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return Config.build(**{**current, **options})


def _positive_int(name: str, value: object, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ConfigError(
            f"{name}: must be a {'non-negative' if allow_zero else 'positive'} "
            f"whole number, not {value!r}"
        )
