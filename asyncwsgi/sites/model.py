"""What a config file describes: listening addresses, virtual hosts, mounts, daemon groups.

Rule: plain values; imports nothing of the package but ``config`` and ``settings``, and no
asyncio. :mod:`asyncwsgi.sites.directives` builds a :class:`Site` from a file;
:mod:`asyncwsgi.sites.runner` serves one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asyncwsgi.config import Config, ProcessSettings
from asyncwsgi.settings import BindAddress, entry

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
    "script_reloading": Setting(entry(Config, "script_reloading").default, DEFAULT),
    "callable": Setting(entry(Config, "callable").default, DEFAULT),
    "process_group": Setting(EMBEDDED, DEFAULT),
}
Layer = dict[str, Setting]


@dataclass(frozen=True, kw_only=True, slots=True)
class DaemonGroup(ProcessSettings):
    """A WSGIDaemonProcess line: a named process group's settings. The reader gives every
    option the line leaves out mod_wsgi's default (``Option.modwsgi_default``)."""

    name: str
    origin: str
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
class StaticAlias:
    """An ``Alias URL-PATH DIR`` line: files the server serves itself."""

    path: str  # the URL path as PEP 3333 text, without a trailing slash ("" for "/")
    folder: str  # as written, made absolute (a folder, or one file)
    origin: str


@dataclass(frozen=True, kw_only=True, slots=True)
class VirtualHost:
    """A <VirtualHost> section: the addresses it answers on and the names it answers to."""

    addresses: tuple[tuple[str, str], ...]  # (IP or "*", port or "*")
    server_name: str
    aliases: tuple[str, ...]
    mounts: tuple[Mount, ...]
    origin: str
    statics: tuple[StaticAlias, ...] = ()

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
    statics: tuple[StaticAlias, ...] = ()  # the main server's Alias lines
    # What was read and not applied: ("notice" or "warning", text), logged at start.
    notices: tuple[tuple[str, str], ...] = ()
    restrict_embedded: Setting | None = None  # WSGIRestrictEmbedded On: embedded mounts 500
    python_home: Setting | None = None  # WSGIPythonHome: the embedded mounts' packages
    python_path: Setting | None = None  # WSGIPythonPath: first on the server's sys.path

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
