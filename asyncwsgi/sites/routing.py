"""Which application of a site answers a request: the virtual host, then the mount.

Rule: imports nothing of the package but the site ``model``; no asyncio and no I/O -- values in,
a choice out.

The virtual host is chosen as Apache chooses it. Of the hosts whose address is the
connection's own IP and port, or failing those of the ``*`` hosts on that port, the first
whose ServerName or a ServerAlias (``*`` and ``?`` wildcards allowed) is the request's
Host is taken, else the first of them. When no virtual host listens on the address, the
main server's mounts answer. Within the host, the mount with the longest URL path that
is the request path or a leading part of it (whole segments only) wins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Generic, TypeVar

from asyncwsgi.sites.model import VirtualHost

T = TypeVar("T")

_CACHE_MAX = 4096


def host_name(value: bytes | None) -> str:
    """A Host header as a name to compare: lower case, without port or trailing dot."""
    if not value:
        return ""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text.partition("]")[0] + "]"
    return text.partition(":")[0].rstrip(".")


class Routes(Generic[T]):
    """The mounts of each virtual host, and of the main server, as ``(path, target)``."""

    def __init__(
        self,
        vhosts: Sequence[tuple[VirtualHost, Sequence[tuple[str, T]]]],
        main: Sequence[tuple[str, T]],
    ) -> None:
        # Longest path first, so the first match is the longest prefix.
        self._vhosts = [(v, _by_length(mounts)) for v, mounts in vhosts]
        self._main = _by_length(main)
        self._cache: dict[tuple[tuple[str, int] | None, bytes | None], list[tuple[str, T]]] = {}

    def mounts_for(self, local: tuple[str, int] | None, host: bytes | None) -> list[tuple[str, T]]:
        """The mounts that serve a connection to ``local`` (None: a UNIX socket, where
        every virtual host is a candidate) whose request has the Host header ``host``
        (as sent: the answer is cached by it)."""
        key = (local, host)
        found = self._cache.get(key)
        if found is None:
            found = self._choose(local, host_name(host))
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()  # a client making up Host names cannot grow it
            self._cache[key] = found
        return found

    def vhost_for(self, local: tuple[str, int] | None, host: str) -> VirtualHost | None:
        """The virtual host that answers (None: the main server), for ``host`` already
        normalised by :func:`host_name`."""
        entry = self._entry(local, host)
        return None if entry is None else entry[0]

    def _entry(
        self, local: tuple[str, int] | None, host: str
    ) -> tuple[VirtualHost, list[tuple[str, T]]] | None:
        candidates = self._candidates(local)
        return _by_name(candidates, host) if candidates else None

    def _candidates(
        self, local: tuple[str, int] | None
    ) -> list[tuple[VirtualHost, list[tuple[str, T]]]]:
        if local is None:
            return self._vhosts
        ip, port = local[0], str(local[1])
        if ip.startswith("::ffff:") and "." in ip:
            ip = ip[7:]
        exact = [
            entry
            for entry in self._vhosts
            if any(h == ip and p in (port, "*") for h, p in entry[0].addresses)
        ]
        if exact:
            return exact
        return [
            entry
            for entry in self._vhosts
            if any(h == "*" and p in (port, "*") for h, p in entry[0].addresses)
        ]

    def _choose(self, local: tuple[str, int] | None, host: str) -> list[tuple[str, T]]:
        entry = self._entry(local, host)
        return self._main if entry is None else entry[1]


def _by_name(
    candidates: list[tuple[VirtualHost, list[tuple[str, T]]]], host: str
) -> tuple[VirtualHost, list[tuple[str, T]]]:
    if host:
        # In order, as Apache: the first host whose name, or one of whose aliases
        # (wildcards included), is the Host.
        for entry in candidates:
            vhost = entry[0]
            if (
                host == vhost.server_name
                or host in vhost.aliases
                or any(_wildcard(alias, host) for alias in vhost.aliases)
            ):
                return entry
    return candidates[0]


def _wildcard(alias: str, host: str) -> bool:
    """Apache's name wildcards: ``*`` any run of characters, ``?`` one; nothing else (a
    ``[`` is a literal, as in ``[::1]``)."""
    if "*" not in alias and "?" not in alias:
        return False
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in alias)
    return re.fullmatch(pattern, host, re.DOTALL) is not None


def _by_length(mounts: Sequence[tuple[str, T]]) -> list[tuple[str, T]]:
    return sorted(mounts, key=lambda item: -len(item[0]))


def match(mounts: list[tuple[str, T]], path: str) -> tuple[str, T] | None:
    """The mount (longest first in ``mounts``) whose path is ``path`` or a leading run of
    its segments; ``""`` is the root and matches every path."""
    for mount_path, target in mounts:
        if (
            not mount_path
            or path == mount_path
            or (path.startswith(mount_path) and path[len(mount_path)] == "/")
        ):
            return mount_path, target
    return None
