"""How a setting is declared: its kind (type, check, parsing from text) and where it appears.

Rule: imports nothing of the package but ``errors``; no asyncio, no I/O beyond what a
check needs (``certfile`` must name a file). The settings themselves are declared in
:mod:`asyncwsgi.config`, once each, as dataclass fields made by :func:`option`; the
command line, the config-file reader, ``WSGIApp(...)`` and ``--check-config`` are built
from those fields (docs/DESIGN.md, "Settings").

A :class:`Kind` knows one type of value: it checks a Python value (``Config(threads=8)``)
and parses text (``--threads 8``, ``threads=8`` in ``WSGIDaemonProcess``), raising
``ValueError`` with a reason that reads after the setting's name ("must be a positive
whole number, not 0") or after the text ("expected a positive whole number").
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from asyncwsgi.errors import ConfigError

T = TypeVar("T")

# Where a setting applies when the server serves a config file (``--config``).
EVERY_MOUNT = "mount"  # wins over every context of the file, .htaccess included
EVERY_GROUP = "group"  # goes to every WSGIDaemonProcess
NOT_WITH_SITE = "refused"  # the file says it (``site_hint`` says how)


class Kind(Generic[T]):
    """A type of setting value: how it is checked, parsed and shown."""

    describe = "a value"  # completes "expected ..." and "must be ..."
    metavar = "VALUE"

    def check(self, value: object) -> T:
        """The value as the setting holds it; ``ValueError`` with a "must be" reason."""
        raise NotImplementedError

    def parse(self, text: str) -> T:
        """The value a text gives; ``ValueError`` with an "expected" reason."""
        raise NotImplementedError

    def show(self, value: T) -> str:
        return str(value)

    def _wrong(self, value: object) -> ValueError:
        return ValueError(f"must be {self.describe}, not {value!r}")


class Count(Kind[int]):
    """A whole number of at least ``minimum``."""

    metavar = "N"

    def __init__(self, minimum: int = 0, *, describe: str = "") -> None:
        self.minimum = minimum
        low = {0: "non-negative ", 1: "positive "}.get(minimum, "")
        self.describe = describe or f"a {low}whole number"

    def check(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
            raise self._wrong(value)
        return value

    def parse(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected {self.describe}") from None
        if value < self.minimum:
            raise ValueError(f"expected {self.describe}")
        return value


class Bytes(Count):
    """A size in bytes; 0 means no limit."""

    metavar = "BYTES"

    def show(self, value: int) -> str:
        if value and value % (1 << 30) == 0:
            return f"{value >> 30} GiB"
        return str(value)


class Seconds(Kind[float]):
    """A number of seconds: positive, or (``off_at_zero``) 0 for off."""

    metavar = "S"

    def __init__(self, *, off_at_zero: bool = False) -> None:
        self.off_at_zero = off_at_zero
        self.describe = (
            "a number of seconds (0: off)" if off_at_zero else "a positive number of seconds"
        )

    def check(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._wrong(value)
        if value != value or value < 0 or (value == 0 and not self.off_at_zero):
            raise self._wrong(value)
        return value

    def parse(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected {self.describe}") from None
        try:
            return self.check(value)
        except ValueError:
            raise ValueError(f"expected {self.describe}") from None

    def show(self, value: float) -> str:
        return f"{value:g}"


class Flag(Kind[bool]):
    """True or False; ``on``/``off`` (and yes/no, true/false, 1/0) as text."""

    describe = "True or False"
    metavar = "on|off"

    def check(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise self._wrong(value)
        return value

    def parse(self, text: str) -> bool:
        lowered = text.lower()
        if lowered in ("on", "true", "yes", "1"):
            return True
        if lowered in ("off", "false", "no", "0"):
            return False
        raise ValueError("expected on or off")

    def show(self, value: bool) -> str:
        return "on" if value else "off"


class Choice(Kind[str]):
    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.describe = "one of " + ", ".join(choices)

    def check(self, value: object) -> str:
        if value not in self.choices:
            raise ValueError(f"{value!r} is not {self.describe}")
        assert isinstance(value, str)
        return value

    def parse(self, text: str) -> str:
        if text not in self.choices:
            raise ValueError(f"expected {self.describe}")
        return text


class Text(Kind[str]):
    """A string, with an optional extra check that raises ``ValueError(reason)``."""

    def __init__(
        self,
        describe: str = "a string",
        *,
        metavar: str = "TEXT",
        rule: Callable[[str], None] | None = None,
    ) -> None:
        self.describe = describe
        self.metavar = metavar
        self.rule = rule

    def check(self, value: object) -> str:
        if not isinstance(value, str):
            raise self._wrong(value)
        if self.rule is not None:
            self.rule(value)
        return value

    def parse(self, text: str) -> str:
        return self.check(text)


def identifier(value: str) -> None:
    if not value.isidentifier():
        raise ValueError(f"{value!r} is not a Python identifier")


def existing_file(value: str) -> None:
    if value and not os.path.isfile(value):
        raise ValueError(f"no such file {value!r}")


def bind_address(value: str) -> None:
    """An address :func:`parse_bind` reads ("": none)."""
    if value:
        try:
            parse_bind(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


def existing_folder(value: str) -> None:
    if value and not os.path.isdir(value):
        raise ValueError(f"no such folder {value!r}")


def absolute_folder(value: str) -> None:
    """An absolute path of a folder that exists ("": none)."""
    if value and not os.path.isabs(value):
        raise ValueError(f"{value!r} is not an absolute path")
    if value and not os.path.isdir(value):
        raise ValueError(f"no such folder {value!r}")


def python_home(value: str) -> None:
    """A virtual environment (or a Python installation): a folder with bin/python3."""
    absolute_folder(value)
    if value and not any(
        os.access(os.path.join(value, "bin", name), os.X_OK) for name in ("python3", "python")
    ):
        raise ValueError(f"{value!r} has no bin/python3: not a virtual environment")


def system_user(value: str) -> None:
    import pwd

    if value:
        try:
            pwd.getpwnam(value)
        except KeyError:
            if not value.isdigit():
                raise ValueError(f"no user {value!r} on this machine") from None


def system_group(value: str) -> None:
    import grp

    if value:
        try:
            grp.getgrnam(value)
        except KeyError:
            if not value.isdigit():
                raise ValueError(f"no group {value!r} on this machine") from None


def user_and_group(value: str) -> None:
    """``USER[:GROUP]`` naming a user (and group) of this machine ("": none)."""
    user, _, group = value.partition(":")
    system_user(user)
    system_group(group)


def octal_mask(value: str) -> None:
    if value and not (value.isascii() and all(c in "01234567" for c in value) and len(value) <= 4):
        raise ValueError(f"{value!r} is not an octal file mode mask such as 0007")


class Folders(Kind[tuple[str, ...]]):
    """Folder paths separated by ``:`` (as ``PYTHONPATH`` and mod_wsgi's
    ``python-path=``); absolute ones only unless ``absolute`` is False."""

    metavar = "DIR:DIR"

    def __init__(self, *, absolute: bool = True) -> None:
        self.absolute = absolute
        self.describe = (
            "absolute folder paths separated by ':'" if absolute else "folders separated by ':'"
        )

    def check(self, value: object) -> tuple[str, ...]:
        items: Any = value.split(os.pathsep) if isinstance(value, str) else value
        try:
            folders = tuple(f for f in items if f)
        except TypeError:
            raise self._wrong(value) from None
        for folder in folders:
            if not isinstance(folder, str):
                raise self._wrong(folder)
            if self.absolute and not os.path.isabs(folder):
                raise ValueError(f"{folder!r} is not an absolute path")
        return folders

    def parse(self, text: str) -> tuple[str, ...]:
        return self.check(text)

    def show(self, value: tuple[str, ...]) -> str:
        return os.pathsep.join(value)


def group_name(value: str) -> None:
    if not value or not value.isprintable():
        raise ValueError(f"{value!r} is not a usable process group name")
    if any(c.isspace() or c == "/" for c in value):
        raise ValueError(f"{value!r} may not contain spaces or '/'")


def network_list(value: str) -> None:
    """``--forwarded-allow-ips``: comma-separated addresses or networks, or ``*``."""
    for item in value.split(","):
        item = item.strip()
        if item and item != "*":
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None


def mount_point(value: str) -> None:
    if value == "/":
        raise ValueError("'/' is the root: leave it empty")
    if value and not value.startswith("/"):
        raise ValueError(f"{value!r} must start with '/' (or be empty)")


# --------------------------------------------------------------------------------------
# Addresses to listen on
# --------------------------------------------------------------------------------------


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


class Binds(Kind[tuple[BindAddress, ...]]):
    """One address or several (``--bind`` is repeatable); text as :func:`parse_bind`."""

    describe = "HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N"
    metavar = "ADDR"

    def check(self, value: object) -> tuple[BindAddress, ...]:
        items: Any = value
        if isinstance(items, (str, BindAddress)):
            items = (items,)
        try:
            parsed = tuple(parse_bind(b) if isinstance(b, str) else b for b in items)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        except TypeError:
            raise self._wrong(value) from None
        if not parsed:
            raise ValueError("at least one address is needed")
        if not all(isinstance(b, BindAddress) for b in parsed):
            raise self._wrong(value)
        return parsed

    def parse(self, text: str) -> tuple[BindAddress, ...]:
        return self.check(text)

    def show(self, value: tuple[BindAddress, ...]) -> str:
        return " ".join(str(b) for b in value)


class Globs(Kind[tuple[str, ...]]):
    """File name patterns (``--reload-extra`` is repeatable)."""

    describe = "a glob pattern, or several"
    metavar = "GLOB"

    def check(self, value: object) -> tuple[str, ...]:
        items: Any = (value,) if isinstance(value, str) else value
        try:
            patterns = tuple(items)
        except TypeError:
            raise self._wrong(value) from None
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern.strip():
                raise ValueError(f"{pattern!r} is not a glob pattern")
        return patterns

    def parse(self, text: str) -> tuple[str, ...]:
        return self.check(text)

    def show(self, value: tuple[str, ...]) -> str:
        return " ".join(value)


class UrlFolders(Kind[tuple[str, ...]]):
    """``URL-PATH=DIR`` pairs (``--static`` is repeatable)."""

    describe = "URL-PATH=DIR, the URL path starting with '/'"
    metavar = "URL-PATH=DIR"

    def check(self, value: object) -> tuple[str, ...]:
        items: Any = (value,) if isinstance(value, str) else value
        try:
            pairs = tuple(items)
        except TypeError:
            raise self._wrong(value) from None
        for pair in pairs:
            if not isinstance(pair, str):
                raise self._wrong(pair)
            url, sep, folder = pair.partition("=")
            if not sep or not url.startswith("/") or not folder:
                raise ValueError(f"{pair!r} is not {self.describe}")
        return pairs

    def parse(self, text: str) -> tuple[str, ...]:
        return self.check(text)

    def show(self, value: tuple[str, ...]) -> str:
        return " ".join(value)


# --------------------------------------------------------------------------------------
# Declaring settings
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """Everything about a setting but its name and default (the dataclass field's)."""

    kind: Kind[Any]
    help: str
    # The command line: the flag (None: not an option there), its short alias, and
    # whether ``--no-FLAG`` exists (otherwise a flag kind takes on|off).
    flag: str | None
    short: str | None = None
    negatable: bool = False
    repeatable: bool = False
    # How ``--help`` shows the default when the value itself would not say it.
    shown_default: str | None = None
    # The WSGIDaemonProcess option of a process-group setting, and mod_wsgi's default
    # for it where that is not ours.
    directive: str | None = None
    modwsgi_default: Any = None
    # With ``--config``: EVERY_MOUNT, EVERY_GROUP, NOT_WITH_SITE or "" (server-wide).
    site: str = ""
    site_hint: str = ""  # NOT_WITH_SITE: what to write in the file instead


def option(
    default: T,
    kind: Kind[T],
    help: str,
    *,
    flag: str | None = "",
    short: str | None = None,
    negatable: bool = False,
    repeatable: bool = False,
    shown_default: str | None = None,
    directive: str | None = None,
    modwsgi_default: T | None = None,
    site: str = "",
    site_hint: str = "",
) -> T:
    """A dataclass field that is a setting (the table's one entry for it).

    ``flag=""`` derives ``--name-with-dashes`` from the field name; ``None`` keeps the
    setting off the command line.
    """
    meta = Option(
        kind,
        help,
        flag,
        short,
        negatable,
        repeatable,
        shown_default,
        directive,
        modwsgi_default,
        site,
        site_hint,
    )
    # Typed as the value, as dataclasses.field() is to mypy.
    return field(default=default, metadata={"option": meta})


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of the settings table: a field's name, default and :class:`Option`."""

    name: str
    default: Any
    option: Option

    @property
    def flag(self) -> str | None:
        flag = self.option.flag
        if flag == "":
            return "--" + self.name.replace("_", "-")
        return flag


def table(cls: type[Any]) -> Iterator[Entry]:
    """The settings a dataclass declares with :func:`option`, in declaration order."""
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("option")
        if isinstance(meta, Option):
            yield Entry(f.name, f.default, meta)


def entry(cls: type[Any], name: str) -> Entry:
    for found in table(cls):
        if found.name == name:
            return found
    raise KeyError(name)


def check_values(obj: Any) -> None:
    """Check every setting of a frozen dataclass instance; store what the kind made of it
    (a str ``bind`` becomes a tuple of addresses). Raises ``ConfigError`` naming it."""
    for item in table(type(obj)):
        value = getattr(obj, item.name)
        try:
            checked = item.option.kind.check(value)
        except ValueError as exc:
            raise ConfigError(f"{item.name}: {exc}") from None
        if checked is not value:
            object.__setattr__(obj, item.name, checked)


def check_names(cls: type[Any], options: dict[str, Any]) -> None:
    """An unknown name is a ``ConfigError`` (not a ``TypeError``)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}")
