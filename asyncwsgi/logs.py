"""The two logs every process of a server writes: errors (``asyncwsgi.error``, stderr or
``--error-logfile``) and the access log (``asyncwsgi.access``, stdout or
``--access-logfile``); the access line's formats; reopening the files (SIGUSR1).

Rule: the standard library only; nothing of the package. The command line and a daemon
process set them up the same way through :func:`setup_logging`.

The error log file takes the place of the process's stderr (file descriptor 2), so
tracebacks written there directly, and the daemon processes, which inherit it, land in
it too; :func:`reopen` opens it again after a rotation. The access log file is a
handler of its own. ``--log-config`` applies a ``logging.config.dictConfig`` file (JSON,
or TOML on Python 3.11 and later) over these defaults; its file handlers are reopened
too.

An access line is built from gunicorn's atoms (``%(h)s``, ``%(r)s``, ``%({header}i)s``,
...; see :data:`ATOMS`), or is one of the presets ``combined`` (the default: Apache's
combined format and the request's duration in seconds), ``common`` and ``json`` (one
object per line). Everything the client sent is escaped as Apache escapes it, so no
request can forge a line.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import logging.config
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"

# gunicorn's atoms (and its meaning for each).
ATOMS: dict[str, str] = {
    "h": "remote address",
    "l": "'-'",
    "u": "user name (HTTP Basic), else '-'",
    "t": "date of the request, [10/Oct/2000:13:55:36 -0700]",
    "r": "request line (GET /path?q HTTP/1.1)",
    "m": "method",
    "U": "URL path without the query",
    "q": "query string",
    "H": "protocol (HTTP/1.1)",
    "s": "status",
    "B": "response body length",
    "b": "response body length, '-' for none",
    "f": "referer",
    "a": "user agent",
    "T": "request time, whole seconds",
    "M": "request time, whole milliseconds",
    "D": "request time, whole microseconds",
    "L": "request time, decimal seconds",
    "p": "process id",
}
COMMON = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s'
PRESETS = {
    "combined": COMMON + ' "%(f)s" "%(a)s" %(L)s',
    "common": COMMON,
    "json": "",
}
_KEY = re.compile(r"%\(([^)]*)\)s")
_UNSAFE_IN_LOG = re.compile(rb'["\\]|[^\x20-\x7e]')


def log_field(data: bytes) -> str:
    """``data`` for a quoted field of the access log, escaped as Apache escapes it:
    ``\\"``, ``\\\\``, and ``\\xhh`` for every byte that is not printable ASCII."""
    if not _UNSAFE_IN_LOG.search(data):
        return data.decode("ascii")
    return _UNSAFE_IN_LOG.sub(_escape_byte, data).decode("ascii")


def _escape_byte(match: re.Match[bytes]) -> bytes:
    byte = match.group()
    if byte in (b'"', b"\\"):
        return b"\\" + byte
    return b"\\x%02x" % byte[0]


def check_access_format(text: str) -> None:
    """``ValueError`` naming what is wrong with an access log format."""
    if text in PRESETS:
        return
    keys = _KEY.findall(text)
    if not keys:
        raise ValueError(
            f"{text!r} has no atom such as %(h)s; give one of {', '.join(PRESETS)} or a "
            "format with gunicorn's atoms"
        )
    for key in keys:
        if key not in ATOMS and not (
            key.startswith("{") and key[-2:] in ("}i", "}o") and len(key) > 3
        ):
            raise ValueError(
                f"unknown atom %({key})s (known: {' '.join(ATOMS)}, {{name}}i, {{name}}o)"
            )
    try:
        text % dict.fromkeys(keys, "")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{text!r}: {exc} (write a % as %%)") from None


class LoggedExchange(Protocol):
    """What the access log reads of a finished request (``http.exchange.HttpExchange``)."""

    client: tuple[str, int] | None
    method: str
    path: bytes
    query: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    started: float  # time.time() when the request head arrived
    body_sent: int
    response_headers: list[tuple[str, str]]

    @property
    def status_code(self) -> int: ...


class AccessLog:
    """Writes one line per request to ``logger`` in ``fmt``, except for the paths of
    ``exclude`` (exact, or a prefix ending in ``*``)."""

    def __init__(
        self, logger: logging.Logger, fmt: str = "combined", exclude: Iterable[str] = ()
    ) -> None:
        self.logger = logger
        self.json = fmt == "json"
        self.format = PRESETS.get(fmt, fmt)
        self.keys = tuple(dict.fromkeys(_KEY.findall(self.format)))
        exact = [p for p in exclude if not p.endswith("*")]
        self.exclude = frozenset(p.encode("utf-8") for p in exact)
        self.exclude_prefixes = tuple(p[:-1].encode("utf-8") for p in exclude if p.endswith("*"))

    def write(self, exchange: LoggedExchange) -> None:
        path = exchange.path
        if path in self.exclude or (
            self.exclude_prefixes and path.startswith(self.exclude_prefixes)
        ):
            return
        took = max(0.0, time.time() - exchange.started)
        if self.json:
            line = self._json(exchange, took)
        else:
            values = {key: self._atom(key, exchange, took) for key in self.keys}
            line = self.format % values
        self.logger.info("%s", line)

    def _json(self, exchange: LoggedExchange, took: float) -> str:
        headers = _header_map(exchange.headers)
        record = {
            "time": _iso(exchange.started),
            "remote": exchange.client[0] if exchange.client else None,
            "method": exchange.method,
            "path": exchange.path.decode("latin-1"),
            "query": exchange.query.decode("latin-1"),
            "protocol": f"HTTP/{exchange.http_version}",
            "status": exchange.status_code,
            "bytes": exchange.body_sent,
            "duration_ms": round(took * 1000, 3),
            "host": _text(headers.get(b"host")),
            "referer": _text(headers.get(b"referer")),
            "user_agent": _text(headers.get(b"user-agent")),
            "pid": os.getpid(),
        }
        return json.dumps(record, separators=(",", ":"))

    def _atom(self, key: str, exchange: LoggedExchange, took: float) -> str:
        get = _ATOM_VALUES.get(key)
        if get is not None:
            return get(exchange, took)
        name = key[1:-2].lower()
        if key.endswith("i"):
            value = _header_map(exchange.headers).get(name.encode("latin-1"))
            return "-" if value is None else log_field(value)
        for header, text in exchange.response_headers:
            if header.lower() == name:
                return log_field(text.encode("latin-1", "replace"))
        return "-"


def _header_map(headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in headers}


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _iso(when: float) -> str:
    local = time.localtime(when)
    millis = int(when % 1 * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{millis:03d}" + time.strftime("%z", local)


def _header(name: bytes) -> Callable[[LoggedExchange, float], str]:
    def get(exchange: LoggedExchange, took: float) -> str:
        for header, value in exchange.headers:
            if header.lower() == name:
                return log_field(value)
        return "-"

    return get


def _user(exchange: LoggedExchange, took: float) -> str:
    for header, value in exchange.headers:
        if header.lower() == b"authorization" and value[:6].lower() == b"basic ":
            try:
                decoded = base64.b64decode(value[6:].strip(), validate=True)
            except ValueError:
                return "-"
            return log_field(decoded.partition(b":")[0]) or "-"
    return "-"


def _target(exchange: LoggedExchange) -> bytes:
    return exchange.path + (b"?" + exchange.query if exchange.query else b"")


_ATOM_VALUES: dict[str, Callable[[LoggedExchange, float], str]] = {
    "h": lambda e, t: e.client[0] if e.client else "-",
    "l": lambda e, t: "-",
    "u": _user,
    "t": lambda e, t: time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(e.started)),
    "r": lambda e, t: f"{e.method} {log_field(_target(e))} HTTP/{e.http_version}",
    "m": lambda e, t: e.method,
    "U": lambda e, t: log_field(e.path),
    "q": lambda e, t: log_field(e.query),
    "H": lambda e, t: f"HTTP/{e.http_version}",
    "s": lambda e, t: str(e.status_code),
    "B": lambda e, t: str(e.body_sent),
    "b": lambda e, t: str(e.body_sent) if e.body_sent else "-",
    "f": _header(b"referer"),
    "a": _header(b"user-agent"),
    "T": lambda e, t: str(int(t)),
    "M": lambda e, t: str(int(t * 1000)),
    "D": lambda e, t: str(int(t * 1_000_000)),
    "L": lambda e, t: f"{t:.6f}",
    "p": lambda e, t: str(os.getpid()),
}


# --------------------------------------------------------------------------------------
# Handlers, files and reopening
# --------------------------------------------------------------------------------------

_error_file = ""  # the error log's path when it is a file (stderr is that file)


class ReopenableFileHandler(logging.FileHandler):
    """A file handler that :func:`reopen` opens again (after logrotate renames it)."""


def _open_error_file(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        sys.stderr.flush()
        os.dup2(fd, 2)  # stderr itself: children and direct writes land in the file too
    finally:
        os.close(fd)


def setup_logging(
    level: str,
    *,
    access: bool = True,
    error_file: str = "-",
    access_file: str = "-",
    config_file: str = "",
) -> None:
    """Send the error log at ``level`` to stderr (``error_file``: that file, in place of
    stderr) and (``access``) the access log to stdout (``access_file``: that file);
    handlers already there (an embedding application's) are kept. ``config_file``: a
    dictConfig file applied after, ``ValueError`` naming what is wrong with it."""
    global _error_file
    if error_file not in ("", "-"):
        _open_error_file(error_file)
        _error_file = error_file
    error = logging.getLogger("asyncwsgi.error")
    if not error.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(ERROR_FORMAT))
        error.addHandler(handler)
        error.propagate = False
    error.setLevel(level.upper())
    if access:
        access_log = logging.getLogger("asyncwsgi.access")
        if not access_log.handlers:
            line: logging.Handler
            if access_file not in ("", "-"):
                line = ReopenableFileHandler(access_file, encoding="utf-8")
            else:
                line = logging.StreamHandler(sys.stdout)
            line.setFormatter(logging.Formatter("%(message)s"))
            access_log.addHandler(line)
            access_log.propagate = False
        access_log.setLevel(logging.INFO)
    if config_file:
        apply_config_file(config_file)


def read_config_file(path: str) -> dict[str, Any]:
    """A dictConfig from a JSON or TOML file; ``ValueError`` saying what is wrong."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if path.endswith(".toml"):
            try:
                tomllib = importlib.import_module("tomllib")
            except ImportError:
                raise ValueError(f"{path}: TOML needs Python 3.11 or later; give JSON") from None
            data: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ValueError(f"{path}: a logging dictConfig needs 'version': 1 at its top")
    return data


def apply_config_file(path: str) -> None:
    data = read_config_file(path)
    data.setdefault("disable_existing_loggers", False)  # asyncwsgi's own keep logging
    try:
        logging.config.dictConfig(data)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _file_handlers() -> list[logging.FileHandler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            loggers.append(logger)
    found: list[logging.FileHandler] = []
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and handler not in found:
                found.append(handler)
    return found


def reopen() -> int:
    """Open the log files again (SIGUSR1, after a rotation): the error log file in place
    of stderr, and every file handler. Returns how many files were reopened."""
    count = 0
    if _error_file:
        try:
            _open_error_file(_error_file)
            count += 1
        except OSError as exc:
            logging.getLogger("asyncwsgi.error").error("cannot reopen %s: %s", _error_file, exc)
    for handler in _file_handlers():
        handler.acquire()
        try:
            # The new file first: if it cannot be opened, the old one goes on taking
            # lines. Appended to, never truncated (a "w" handler would empty it).
            handler.mode = "a"
            fresh = handler._open()
        except OSError as exc:
            logging.getLogger("asyncwsgi.error").error(
                "cannot reopen %s (still writing to the old file): %s", handler.baseFilename, exc
            )
        else:
            old, handler.stream = handler.stream, fresh
            if old is not None:
                old.close()
            count += 1
        finally:
            handler.release()
    return count
