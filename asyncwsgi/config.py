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
MODES = ("embedded", "daemon")


@dataclass(frozen=True, slots=True)
class BindAddress:
    """Where to listen: a TCP host and port, a UNIX socket path, or an inherited fd."""

    kind: str  # "tcp", "unix" or "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1
    # Copies of an embedded server each listen on their own socket of this TCP address
    # (SO_REUSEPORT), so the kernel spreads connections evenly between them.
    reuse_port: bool = False

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
    send_timeout: float = 60.0
    body_timeout: float = 20.0
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
    # Where the application runs: in this process's threads ("embedded"), or in a process
    # group of ``processes`` daemon processes x ``threads`` threads ("daemon"). In embedded
    # mode ``processes`` > 1 runs that many copies of the whole server on shared sockets.
    mode: str = "embedded"
    processes: int = 1
    group: str = "default"
    # Daemon processes: a replaced process has ``graceful_timeout`` to finish its requests
    # and is killed ``shutdown_timeout`` after that.
    shutdown_timeout: float = 5.0
    maximum_requests: int = 0  # replace a daemon process after this many requests; 0: never
    maximum_requests_jitter: int = -1  # up to this many more per process; -1: a tenth
    restart_interval: float = 0.0  # replace daemon processes this often (seconds); 0: never
    request_timeout: float = 0.0  # 504 and replace the process after this long; 0: never
    # The control socket ``python -m asyncwsgi reload`` talks to; "" for the default place,
    # "none" for no control socket.
    control_socket: str = ""
    # A site read from an Apache-style config file (``--config``): virtual hosts, mounts and
    # daemon groups. ``app`` is then empty; the mounts name the scripts.
    site: Site | None = None

    def __post_init__(self) -> None:
        if self.site is not None:
            self._check_site()
        elif isinstance(self.app, str):
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
        for name in (
            "graceful_timeout",
            "keep_alive_timeout",
            "header_timeout",
            "send_timeout",
            "body_timeout",
        ):
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
        if self.mode not in MODES:
            raise ConfigError(f"mode: {self.mode!r} is not one of {', '.join(MODES)}")
        _positive_int("processes", self.processes)
        if not isinstance(self.group, str) or not self.group or not self.group.isprintable():
            raise ConfigError(f"group: {self.group!r} is not a usable process group name")
        if any(c.isspace() or c == "/" for c in self.group):
            raise ConfigError(f"group: {self.group!r} may not contain spaces or '/'")
        if (
            isinstance(self.shutdown_timeout, bool)
            or not isinstance(self.shutdown_timeout, (int, float))
            or self.shutdown_timeout <= 0
        ):
            raise ConfigError(
                f"shutdown_timeout: must be a positive number of seconds, not "
                f"{self.shutdown_timeout!r}"
            )
        _positive_int("maximum_requests", self.maximum_requests, allow_zero=True)
        if (
            isinstance(self.maximum_requests_jitter, bool)
            or not isinstance(self.maximum_requests_jitter, int)
            or self.maximum_requests_jitter < -1
        ):
            raise ConfigError(
                "maximum_requests_jitter: must be a non-negative whole number (or -1 for a "
                f"tenth of maximum_requests), not {self.maximum_requests_jitter!r}"
            )
        for name in ("restart_interval", "request_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{name}: must be a number of seconds (0: off), not {value!r}")
        if self.mode != "daemon":
            for name in (
                "maximum_requests",
                "restart_interval",
                "request_timeout",
            ):
                if getattr(self, name):
                    raise ConfigError(f"{name}: applies to daemon mode only (mode='daemon')")
        if self.processes > 1 and not isinstance(self.app, str):
            raise ConfigError(
                "app: several processes import the application themselves, so it needs a "
                "script path or 'module:attr', not a callable"
            )
        if self.mode == "daemon" and not isinstance(self.app, str):
            raise ConfigError(
                "app: daemon mode imports the application in other processes, so it needs a "
                "script path or 'module:attr', not a callable"
            )
        if not isinstance(self.control_socket, str):
            raise ConfigError("control_socket: a path, '' for the default, or 'none'")
        for name in ("script_reloading", "access_log", "server_header"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: must be True or False")

    def _check_site(self) -> None:
        if not isinstance(self.site, Site):
            raise ConfigError("site: must be a Site (read one with asyncwsgi.apache.read_site)")
        if self.app:
            raise ConfigError(
                "app: give either a script or a config file; the config file's "
                "WSGIScriptAlias lines name the scripts"
            )
        # Where the application runs comes from the file's WSGIDaemonProcess and
        # WSGIProcessGroup lines; a mount point from WSGIScriptAlias.
        for name, default in (("mode", "embedded"), ("processes", 1), ("group", "default")):
            if getattr(self, name) != default:
                raise ConfigError(
                    f"{name}: not with a config file; use WSGIDaemonProcess and "
                    "WSGIProcessGroup (or process-group= on WSGIScriptAlias) there"
                )
        if self.root_path:
            raise ConfigError("root_path: not with a config file; WSGIScriptAlias gives mounts")

    @classmethod
    def build(cls, **options: Any) -> Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r}")
        if "app" not in options:
            if options.get("site") is None:
                raise ConfigError("app: no application given")
            options["app"] = ""
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


# --------------------------------------------------------------------------------------
# A site: what an Apache-style config file describes (asyncwsgi.apache reads one)
# --------------------------------------------------------------------------------------

DEFAULT = "default"  # the origin of a setting nobody gave
COMMAND_LINE = "command line"
EMBEDDED = ""  # the process group of an application run in the server's own threads


@dataclass(frozen=True, slots=True)
class Setting:
    """A value and where it was given (``site.conf:12``, ``command line``, ``default``)."""

    value: Any
    origin: str


# The settings of one application, as the contexts give them; a layer holds those one
# context (server, virtual host, <Directory>, .htaccess, command line) sets.
MOUNT_DEFAULTS: dict[str, Setting] = {
    "script_reloading": Setting(True, DEFAULT),
    "callable": Setting("application", DEFAULT),
    "process_group": Setting(EMBEDDED, DEFAULT),
}
Layer = dict[str, Setting]


@dataclass(frozen=True, kw_only=True, slots=True)
class DaemonGroup:
    """A WSGIDaemonProcess line. Options left out take mod_wsgi's defaults."""

    name: str
    origin: str
    processes: int = 1
    threads: int = 15
    graceful_timeout: float = 15.0
    shutdown_timeout: float = 5.0
    maximum_requests: int = 0
    restart_interval: float = 0.0
    request_timeout: float = 0.0
    maximum_requests_jitter: int = -1  # not an option of the line: --maximum-requests-jitter
    display_name: str = ""
    given: tuple[str, ...] = ()  # the options the line gave
    overridden: tuple[str, ...] = ()  # the options the command line gave
    vhost: int = -1  # the <VirtualHost> it was defined in (only that one may use it); -1: any

    @property
    def title(self) -> str:
        """The daemon processes' title: display-name= as mod_wsgi reads it."""
        if not self.display_name:
            return f"asyncwsgi: daemon {self.name}"
        if self.display_name == "%{GROUP}":
            return f"(wsgi:{self.name})"
        return self.display_name


@dataclass(frozen=True, kw_only=True, slots=True)
class Mount:
    """A WSGIScriptAlias line as one virtual host serves it."""

    path: str  # the URL path, without a trailing slash ("" for "/")
    script: str  # absolute
    origin: str
    # Increasing precedence: server config, <VirtualHost>, each <Directory> that holds the
    # script (shallowest first); then .htaccess, process-group= and the command line.
    layers: tuple[Layer, ...] = ()
    htaccess: str = ""  # the .htaccess read for the script's folder; "" where not allowed
    group_option: Setting | None = None  # process-group= on the WSGIScriptAlias line
    overrides: Layer = field(default_factory=dict)  # the command line

    def settings(self, htaccess: Layer | None = None) -> Layer:
        """The effective settings, given what the script folder's .htaccess sets."""
        result = dict(MOUNT_DEFAULTS)
        for layer in self.layers:
            result.update(layer)
        if htaccess:
            result.update(htaccess)
        if self.group_option is not None:
            result["process_group"] = self.group_option
        result.update(self.overrides)
        return result


@dataclass(frozen=True, kw_only=True, slots=True)
class VirtualHost:
    """A <VirtualHost> section: the addresses it answers on and the names it answers to."""

    addresses: tuple[tuple[str, str], ...]  # (IP or "*", port or "*")
    server_name: str
    aliases: tuple[str, ...]
    mounts: tuple[Mount, ...]
    origin: str

    @property
    def label(self) -> str:
        where = " ".join(f"{h}:{p}" for h, p in self.addresses)
        return f"{self.server_name or '(no ServerName)'} on {where}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Site:
    """A whole config file: listening addresses, the main server's mounts, the virtual
    hosts and the daemon groups; ``htaccess`` holds each .htaccess as read at start."""

    path: str
    listen: tuple[tuple[BindAddress, str], ...]
    mounts: tuple[Mount, ...]
    vhosts: tuple[VirtualHost, ...]
    groups: tuple[DaemonGroup, ...]
    htaccess: dict[str, Layer] = field(default_factory=dict)

    def all_mounts(self) -> list[tuple[VirtualHost | None, Mount]]:
        found: list[tuple[VirtualHost | None, Mount]] = [(None, m) for m in self.mounts]
        for vhost in self.vhosts:
            found += [(vhost, m) for m in vhost.mounts]
        return found

    def group(self, name: str) -> DaemonGroup | None:
        for group in self.groups:
            if group.name == name:
                return group
        return None
