"""How a daemon process is started: which interpreter, as whom, where, with what locale.

Rule: imports nothing of the package but ``config`` and ``errors``; no asyncio.

These are mod_wsgi's ``WSGIDaemonProcess`` options ``python-home=`` (the group runs that
virtual environment's interpreter), ``home=`` (working folder), ``user=``/``group=``
(only a server started as root can give them), ``umask=``, ``lang=`` and ``locale=``.
``python-path=`` is the daemon's own business (``process``: it goes first on
``sys.path``).

A virtual environment's interpreter does not have asyncwsgi: the folders that hold
asyncwsgi and the packages a daemon process imports are put *after* the environment's
own on its ``sys.path``, so the environment's packages win. (A package the application
imports and the environment lacks may then come from the server's environment; install
the application's packages in its environment, as with mod_wsgi.)
"""

from __future__ import annotations

import os
import sys
from typing import Any

from asyncwsgi.config import ProcessSettings
from asyncwsgi.errors import ConfigError

# Packages of the server's environment a daemon process imports (with asyncwsgi itself).
_DAEMON_PACKAGES = ("asyncwsgi", "setproctitle", "httptools", "anyio", "sniffio")


def interpreter(settings: ProcessSettings) -> str:
    """The Python a daemon process runs: the server's own, or ``python-home``'s."""
    home = settings.python_home
    if not home:
        return sys.executable
    for name in ("python3", "python"):
        path = os.path.join(home, "bin", name)
        if os.access(path, os.X_OK):
            return path
    raise ConfigError(f"python-home={home}: no bin/python3")


def server_paths() -> list[str]:
    """The folders the server imports asyncwsgi and a daemon's packages from."""
    found: list[str] = []
    for name in _DAEMON_PACKAGES:
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        file = getattr(module, "__file__", None)
        if not file:
            continue
        folder = os.path.dirname(os.path.dirname(os.path.abspath(file)))
        if folder not in found:
            found.append(folder)
    return found


def check(settings: ProcessSettings, label: str) -> None:
    """Before the first process starts: ``ConfigError`` for options this server cannot
    honour (``user=`` without root, a ``python-home`` of another Python version)."""
    uid, gid = _ids(settings)
    if os.geteuid() != 0 and (
        (uid >= 0 and uid != os.geteuid()) or (gid >= 0 and gid != os.getegid())
    ):
        given = " ".join(
            f"{key}={value}"
            for key, value in (("user", settings.run_user), ("group", settings.run_group))
            if value
        )
        raise ConfigError(f"{label}: {given} needs the server started as root")
    if settings.python_home:
        theirs = home_version(settings.python_home)
        ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
        if theirs != ours:
            raise ConfigError(
                f"{label}: python-home={settings.python_home} is Python {theirs or '(unknown)'}"
                f"; the server runs Python {ours}, and a daemon process runs the server's code"
            )


def home_version(home: str) -> str:
    """The Python version ("3.11") of a virtual environment or installation, read from
    its files: ``pyvenv.cfg``'s ``version``, else its ``lib/pythonX.Y`` folder. The
    interpreter is not run: as root, that would run its start-up code (``.pth`` files)
    as root, and whoever owns the environment could put anything there."""
    try:
        with open(os.path.join(home, "pyvenv.cfg"), encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip().lower() in ("version", "version_info"):
                    return ".".join(value.strip().split(".")[:2])
    except OSError:
        pass
    try:
        names = os.listdir(os.path.join(home, "lib"))
    except OSError:
        return ""
    found = sorted(n[6:] for n in names if n.startswith("python") and n[6:7].isdigit())
    return found[-1] if len(found) == 1 else ""


def user_ids(user: str, group: str = "") -> tuple[int, int]:
    """(uid, gid) of a user (a name, or a bare uid) and group; -1 where not given. The
    group defaults to the user's own. ``ValueError`` for a name this machine lacks.
    (``user=``/``group=`` of a daemon group, and the server's ``--user``.)"""
    import grp
    import pwd

    uid = gid = -1
    if user:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
            uid, gid = entry.pw_uid, entry.pw_gid
        except KeyError:
            if not user.isdigit():
                raise ValueError(f"no user {user!r} on this machine") from None
            uid = int(user)  # a uid with no passwd entry: no group of its own
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"no group {group!r} on this machine") from None
    return uid, gid


def _ids(settings: ProcessSettings) -> tuple[int, int]:
    try:
        return user_ids(settings.run_user, settings.run_group)
    except ValueError as exc:
        raise ConfigError(f"user=/group=: {exc}") from None


def owner(settings: ProcessSettings) -> tuple[int, int]:
    """(uid, gid) the processes run as when that is another user's; (-1, -1) otherwise."""
    uid, gid = _ids(settings)
    if uid >= 0 and uid != os.geteuid():
        return uid, gid
    return -1, -1


def popen_options(settings: ProcessSettings) -> dict[str, Any]:
    """``subprocess.Popen`` keywords for the options: cwd, env, user, group, umask."""
    options: dict[str, Any] = {}
    if settings.home:
        options["cwd"] = settings.home
    env = dict(os.environ)
    if settings.lang:
        env["LANG"] = settings.lang
    if settings.locale:
        env["LC_ALL"] = settings.locale
    uid, gid = _ids(settings)
    if uid >= 0 and uid != os.geteuid():
        import pwd

        options["user"] = uid
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:  # a bare uid: no supplementary groups, no home
            options["extra_groups"] = [gid] if gid >= 0 else []
            if not settings.home:
                options["cwd"] = "/"
        else:
            groups = os.getgrouplist(entry.pw_name, gid if gid >= 0 else entry.pw_gid)
            options["extra_groups"] = groups
            env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
            if not settings.home:
                options["cwd"] = entry.pw_dir if os.path.isdir(entry.pw_dir) else "/"
    if gid >= 0 and gid != os.getegid():
        options["group"] = gid
    if settings.umask:
        options["umask"] = int(settings.umask, 8)
    options["env"] = env
    return options
