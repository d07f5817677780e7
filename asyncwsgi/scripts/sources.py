"""Which source files an application has imported: what ``--reload-on-changes`` watches.

Rule: standard library only; runs in the process that imported the application (a daemon
process, a server copy), which reports the files to the process that watches them.

A module's file is watched when it is a file on disk outside the standard library, the
asyncwsgi package itself and, unless asked, site-packages (an editable install of the
application lives outside, so it is watched). Built-in, frozen and namespace modules have
no file. Looking again is cheap when nothing was imported since: :class:`ImportedFiles`
compares ``len(sys.modules)`` first.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from collections.abc import Mapping
from types import ModuleType


def _library_roots(site_packages: bool) -> tuple[str, ...]:
    """The folders whose modules are never watched (with a trailing separator)."""
    # The standard library of the interpreter itself (a venv's "platstdlib" is the
    # venv's own lib folder, which holds its site-packages).
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    roots = {sysconfig.get_path(name, vars=base) for name in ("stdlib", "platstdlib")}
    if not site_packages:
        roots.update(sysconfig.get_path(name) for name in ("purelib", "platlib"))
    # The server's own code (also from a checkout or an editable install): replacing the
    # application's processes would not replace the process that watches.
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not site_packages:
        roots.update(getattr(site, "getsitepackages", list)())
        user = getattr(site, "getusersitepackages", lambda: "")()
        if isinstance(user, str) and user:
            roots.add(user)
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)


def _in_site_packages(path: str) -> bool:
    parts = path.split(os.sep)
    return "site-packages" in parts or "dist-packages" in parts


class ImportedFiles:
    """The watchable source files of ``sys.modules``, and those new since the last look."""

    def __init__(self, *, site_packages: bool = False) -> None:
        self.site_packages = site_packages
        self._roots = _library_roots(site_packages)
        self._seen_modules = 0
        self._names: set[str] = set()
        self._files: set[str] = set()

    def new(self, modules: Mapping[str, ModuleType | None] | None = None) -> list[str]:
        """Files imported since the last call (all of them the first time), sorted."""
        modules = sys.modules if modules is None else modules
        if len(modules) == self._seen_modules:
            return []
        self._seen_modules = len(modules)
        found = []
        for name, module in list(modules.items()):
            if name in self._names:
                continue
            self._names.add(name)
            path = self.watchable(module)
            if path is not None and path not in self._files:
                self._files.add(path)
                found.append(path)
        return sorted(found)

    def watchable(self, module: ModuleType | None) -> str | None:
        """The module's source file, if it is one to watch."""
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not path:
            return None
        if path.endswith((".pyc", ".pyo")):
            source = path[:-1]  # a legacy .pyc beside its source
            path = source if os.path.exists(source) else path
        real = os.path.realpath(path)
        in_site_packages = _in_site_packages(real)  # also the system one, inside stdlib
        if in_site_packages and not self.site_packages:
            return None
        if real.startswith(self._roots) and not in_site_packages:
            return None
        if not os.path.isfile(real):
            return None  # a zip import, or a file since removed
        return real


def watched_files(
    modules: Mapping[str, ModuleType | None] | None = None, *, site_packages: bool = False
) -> list[str]:
    """Every watchable source file of ``modules`` (default ``sys.modules``), sorted."""
    return ImportedFiles(site_packages=site_packages).new(modules)
