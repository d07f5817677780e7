"""The server process itself, as an operator sets it up: settings from the environment
(``ASYNCWSGI_<OPTION>``, ``--env-file``), the working folder and module path, the pid
file, the owner and mode of UNIX sockets, and the user it runs as.

Rule: imports nothing of the package but ``config``, ``settings``, ``errors``,
``server.sockets`` and ``daemon.launch`` (who a user is); no asyncio. The command line
calls these in order: the env file, the settings from the environment, ``--chdir``,
``--pythonpath``; then, once the logs are open, :func:`drop_privileges` (which binds
the sockets first, as root, and hands them on as ``fd://`` addresses), and the pid file
once the server listens (before the drop, with ``--user``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from asyncwsgi.config import Config
from asyncwsgi.daemon.launch import user_ids
from asyncwsgi.errors import ConfigError
from asyncwsgi.server.sockets import open_socket
from asyncwsgi.settings import BindAddress, Entry, Flag, table

ENV_PREFIX = "ASYNCWSGI_"
# Environment variables of that prefix that are not settings (they are internal).
_NOT_SETTINGS = frozenset({"ASYNCWSGI_COPY", "ASYNCWSGI_CPU", "ASYNCWSGI_DUMP_DIR"})


def read_env_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, ``export`` and quotes allowed), as dotenv
    files have them; ``ConfigError`` naming the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"--env-file {path}: {exc.strerror or exc}") from None
    found: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        text = text.removeprefix("export ").strip()
        key, sep, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise ConfigError(f"{path}:{number}: not a KEY=VALUE line: {line!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[key] = value
    return found


def env_name(item: Entry) -> str:
    """``ASYNCWSGI_`` and the option's name: ``--max-threads`` is ASYNCWSGI_MAX_THREADS."""
    flag = item.flag or ("--" + item.name)
    return ENV_PREFIX + flag[2:].upper().replace("-", "_")


def settings_from_env(env: Mapping[str, str], given: Iterable[str]) -> dict[str, Any]:
    """The settings ``ASYNCWSGI_<NAME>`` variables give (names not ``given`` on the
    command line, which wins); a value that does not parse is a ``ConfigError`` naming
    the variable. Repeatable settings take several values separated by spaces; on/off
    settings take 1/0, true/false, yes/no or on/off."""
    taken = set(given)
    known = {env_name(item): item for item in table(Config) if item.flag is not None}
    found: dict[str, Any] = {}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name in _NOT_SETTINGS:
            continue
        item = known.get(name)
        if item is None:
            if name != ENV_PREFIX + "ENV_FILE":  # the command line reads that one first
                # Not an error: other tools may use the prefix. Said, for the typo's sake.
                print(
                    f"asyncwsgi: warning: {name} is no setting; ignored (the settings are "
                    f"{ENV_PREFIX}<OPTION>, e.g. {ENV_PREFIX}THREADS)",
                    file=sys.stderr,
                )
            continue
        if item.name in taken:
            continue
        kind = item.option.kind
        try:
            if isinstance(kind, Flag):
                word = text.strip().lower()
                if word not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(f"expected on or off, not {text!r}")
                value: Any = word in ("1", "true", "yes", "on")
            elif item.option.repeatable:
                value = tuple(text.split())
            else:
                value = kind.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        found[item.name] = value
    return found


def origin_of(item: Entry, command_line: Iterable[str], environment: Iterable[str]) -> str:
    if item.name in command_line:
        return "command line"
    if item.name in environment:
        return f"environment ({env_name(item)})"
    return "default"


def describe_settings(
    config: Config, command_line: Iterable[str], environment: Iterable[str]
) -> str:
    """``--print-config``: every setting, its value and where the value came from."""
    given, from_env = set(command_line), set(environment)
    lines = []
    for item in table(Config):
        if item.flag is None:
            continue
        value = getattr(config, item.name)
        shown = item.option.kind.show(value) if value != "" else ""
        if item.name == "bind":
            shown = " ".join(str(b) for b in value)
        origin = origin_of(item, given, from_env)
        lines.append(f"{item.flag:<28} {shown or '(none)':<32} {origin}")
    return "\n".join(lines) + "\n"


def add_python_path(folders: Iterable[str]) -> None:
    """``--pythonpath``: first on this process's ``sys.path`` and, through
    ``PYTHONPATH``, on that of every process it starts."""
    absolute = [os.path.abspath(f) for f in folders]
    if not absolute:
        return
    sys.path[0:0] = absolute
    inherited = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([*absolute, *([inherited] if inherited else [])])


def _ids(option: str, user: str, group: str) -> tuple[int, int]:
    try:
        return user_ids(user, group)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def drop_privileges(config: Config) -> Config:
    """``--user USER[:GROUP]`` on a server started as root: bind the sockets now, as root
    (ports below 1024, sockets in root's folders), give the log files to that user, then
    become it with its groups (and its HOME). The rest of the server gets the sockets as
    ``fd://`` addresses. Without root, an error (unless the user is already this one)."""
    user, _, group = config.server_user.partition(":")
    if not user:
        return config
    uid, gid = _ids("--user", user, group)
    if gid < 0:
        gid = os.getgid()  # a bare uid with no group given
    if os.geteuid() != 0:
        if uid == os.geteuid() and gid == os.getegid():
            return config
        raise ConfigError(
            f"--user {config.server_user}: the server must start as root to change user"
        )
    binds = tuple(_bound(address, config) for address in config.bind)
    # The log files root opened: the user's, so that its copies and daemons can open
    # them too, and a reopen after rotation can write.
    for path in (config.access_logfile, config.error_logfile):
        if path not in ("", "-"):
            os.chown(path, uid, gid)
    import pwd

    try:
        entry: pwd.struct_passwd | None = pwd.getpwuid(uid)
    except KeyError:  # a bare uid: no supplementary groups, no home
        entry = None
    os.setgroups(os.getgrouplist(entry.pw_name, gid) if entry is not None else [gid])
    os.setgid(gid)
    os.setuid(uid)
    if entry is not None:
        os.environ.update(USER=entry.pw_name, LOGNAME=entry.pw_name, HOME=entry.pw_dir)
    os.environ.pop("XDG_RUNTIME_DIR", None)  # root's: the control socket goes elsewhere
    return config.replace(bind=binds)


def _bound(address: BindAddress, config: Config) -> BindAddress:
    if address.kind == "fd":
        return address
    sock = open_socket(address, config.backlog)
    if address.kind == "unix":
        restrict_unix_socket(address.path, config)
    sock.set_inheritable(True)
    return BindAddress("fd", fd=sock.detach())


def restrict_unix_socket(path: str, config: Config) -> None:
    """``--socket-mode`` and ``--socket-owner`` on a UNIX socket just bound (nginx, as
    www-data, must be able to connect)."""
    if config.socket_mode:
        os.chmod(path, int(config.socket_mode, 8))
    if config.socket_owner:
        user, _, group = config.socket_owner.partition(":")
        uid, gid = _ids("--socket-owner", user, group)
        try:
            os.chown(path, uid, gid)
        except PermissionError:
            raise ConfigError(
                f"--socket-owner {config.socket_owner}: only root can give {path} away"
            ) from None


class PidFile:
    """``--pid-file``: written once the server listens, removed when it stops (if it
    still holds this process's pid). A file naming a live process is an error."""

    def __init__(self, path: str) -> None:
        self.path = path
        other = 0
        with contextlib.suppress(FileNotFoundError, ValueError), open(path, encoding="ascii") as f:
            other = int(f.read().strip() or "0")
        if other and other != os.getpid() and _alive(other):
            raise ConfigError(f"--pid-file {path}: process {other} is running")

    def write(self) -> None:
        temporary = f"{self.path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(temporary, self.path)

    def remove(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            with open(self.path, encoding="ascii") as f:
                if int(f.read().strip()) != os.getpid():
                    return
            os.unlink(self.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
