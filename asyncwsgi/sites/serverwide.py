"""The server-wide directives that shape how Python runs: ``WSGIPythonHome``,
``WSGIPythonPath``, ``WSGIImportScript``, and Apache's own ``User``/``Group``.

Rule: imports nothing of the package but ``settings`` and this package's ``model``,
``syntax``, ``values`` and ``apache``; no asyncio.

- ``WSGIPythonHome`` is the ``python-home=`` of every daemon group without one, and its
  packages go first on the server's ``sys.path`` for the embedded mounts
  (``sites.runner``); ``WSGIPythonPath`` is embedded mode's path.
- ``WSGIImportScript`` is accepted for a mounted script of its group: every mounted
  script is loaded at start anyway. Another file is an error.
- ``User``/``Group`` are what Apache's children run as: the default ``user=``/``group=``
  of the daemon groups, applied when the server starts as root (as Apache switches only
  then). ``${VAR}`` is read from the environment, as Apache's envvars give it.
"""

from __future__ import annotations

import dataclasses
import os

from asyncwsgi.settings import Folders, python_home, system_group, system_user
from asyncwsgi.sites.apache import Notices
from asyncwsgi.sites.model import DaemonGroup, Layer, Setting
from asyncwsgi.sites.syntax import Directive
from asyncwsgi.sites.values import SERVER, VHOST, group_name, one, options, path

# Directive (lower case) -> the contexts it is allowed in.
SERVER_WIDE: dict[str, tuple[str, ...]] = {
    "user": (SERVER,),
    "group": (SERVER,),
    "wsgipythonhome": (SERVER,),
    "wsgipythonpath": (SERVER,),
    "wsgiimportscript": (SERVER, VHOST),
}


class ServerWide:
    """What the server-wide directives of one file gave."""

    def __init__(self, root: str, notices: Notices) -> None:
        self.root = root
        self.notices = notices
        self.python_home: Setting | None = None
        self.python_path: Setting | None = None
        self.identity: dict[str, Setting] = {}  # "run_user"/"run_group" -> User/Group
        self.imports: list[tuple[str, str, Directive]] = []  # script, group, where

    def read(self, d: Directive) -> None:
        key = d.key
        if key in ("user", "group"):
            self._identity(d)
        elif key == "wsgipythonhome":
            folder = one(d)
            try:
                python_home(folder)
            except ValueError as exc:
                raise d.error(f"WSGIPythonHome: {exc}") from None
            self.python_home = Setting(folder, d.origin)
        elif key == "wsgipythonpath":
            try:
                folders = Folders().parse(one(d))
            except ValueError as exc:
                raise d.error(f"WSGIPythonPath: {exc}") from None
            self.python_path = Setting(folders, d.origin)
        else:
            self._import_script(d)

    def _identity(self, d: Directive) -> None:
        value = one(d)
        if value.startswith("${") and value.endswith("}"):
            value = os.environ.get(value[2:-1], "")
            if not value:
                self.notices.accepted(d, f"{d.args[0]} is not set here; not applied")
                return
        value = value.removeprefix("#")  # Apache's "#1000" for a bare id
        try:
            (system_user if d.key == "user" else system_group)(value)
        except ValueError as exc:
            raise d.error(f"{d.name}: {exc}") from None
        self.identity["run_user" if d.key == "user" else "run_group"] = Setting(value, d.origin)

    def _import_script(self, d: Directive) -> None:
        if not d.args:
            raise d.error("WSGIImportScript takes a script and process-group=/application-group=")
        group = ""
        for key, value in options(d, d.args[1:]).items():
            if key == "process-group":
                group = group_name(d, value)
            elif key != "application-group":
                raise d.error(f"WSGIImportScript: option {key!r} is not supported")
        self.imports.append((path(self.root, d.args[0]), group, d))

    def apply(self, groups: dict[str, DaemonGroup]) -> None:
        """Give every daemon group the defaults it takes from here."""
        defaults: dict[str, object] = {}
        if self.python_home is not None:
            defaults["python_home"] = self.python_home.value
        if os.geteuid() == 0:
            defaults.update({k: v.value for k, v in self.identity.items()})
        for name, group in groups.items():
            given = {k: v for k, v in defaults.items() if k not in group.given}
            if given:
                groups[name] = dataclasses.replace(group, **given)  # type: ignore[arg-type]

    def check_imports(self, mounts: list[tuple[str, Layer]]) -> None:
        """``mounts``: every mount's script and effective settings."""
        for script, group, d in self.imports:
            if not any(
                s == script and settings["process_group"].value == group for s, settings in mounts
            ):
                where = f"daemon group {group!r}" if group else "embedded mode"
                raise d.error(
                    f"WSGIImportScript: {script!r} is not the script of a WSGIScriptAlias "
                    f"run in {where}; asyncwsgi preloads mounted scripts only (it loads "
                    "each at start)"
                )
            self.notices.accepted(d, "every mounted script is loaded when the server starts")
