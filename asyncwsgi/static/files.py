"""Which file a request names, and what to answer: validators, conditions and ranges.

Rule: imports nothing of the package; no asyncio, no sockets. Values in, a decision out
(plus the ``stat`` and ``realpath`` of the file asked for).

A request path below a static mount is taken as segments of the folder (percent-decoded
as PEP 3333 does, the bytes then read as the file system's). A request is refused when
it could leave the folder: an empty, ``.`` or ``..`` segment inside the path, an encoded
slash, a NUL, or a path whose real location (symlinks followed) is outside the folder.
Folders are not listed. ``ETag`` is ``"MTIME_NS-SIZE"`` in hex; ``Last-Modified`` the
modification time. Conditions are RFC 9110's, in its order: ``If-Match``,
``If-Unmodified-Since``, ``If-None-Match``, ``If-Modified-Since``, then ``If-Range``
and ``Range`` (one range of bytes is served as 206; several ranges get the whole file).
"""

from __future__ import annotations

import functools
import mimetypes
import os
import stat
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime

NOT_FOUND = "404 Not Found"
BAD_REQUEST = "400 Bad Request"

_TEXT_TYPES = ("text/", "application/javascript", "application/json", "image/svg+xml")


@dataclass(frozen=True, slots=True)
class Found:
    """A regular file to serve: its path and the ``os.stat`` it was chosen by."""

    path: str
    size: int
    mtime_ns: int

    @property
    def etag(self) -> str:
        return f'"{self.mtime_ns:x}-{self.size:x}"'

    @property
    def last_modified(self) -> str:
        return _http_date(self.mtime_ns // 1_000_000_000)

    @property
    def content_type(self) -> str:
        name = os.path.basename(self.path)
        dot = name.find(".", 1)  # every suffix: "a.tar.gz" is a gzip, ".bashrc" none
        return _content_type(name[dot:].lower() if dot > 0 else "")


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


@functools.lru_cache(maxsize=1024)
def _content_type(suffixes: str) -> str:
    """The Content-Type for a file name's suffixes (".css", ".tar.gz", "")."""
    kind, encoding = mimetypes.guess_type("file" + suffixes, strict=False)
    if encoding is not None:  # a .gz: what it is, not what it holds
        return {"gzip": "application/gzip", "bzip2": "application/x-bzip2"}.get(
            encoding, "application/octet-stream"
        )
    if kind is None:
        return "application/octet-stream"
    if kind.startswith(_TEXT_TYPES):
        return f"{kind}; charset=utf-8"
    return kind


def locate(folder: str, rest: str, *, exact_file: bool = False) -> Found | str:
    """The file below ``folder`` (absolute, real) that ``rest`` (the request path after
    the mount, PEP 3333 text, "" or starting with "/") names, or the status to answer.

    ``exact_file``: ``folder`` is one file, served for the mount path alone."""
    if exact_file:
        if rest:
            return NOT_FOUND  # the file's own path only, not "/robots.txt/"
        real = os.path.realpath(folder)
    else:
        if "\0" in rest:
            return BAD_REQUEST
        segments = rest.split("/")[1:] if rest else []
        if segments and segments[-1] == "":
            return NOT_FOUND  # a trailing slash names a folder, and folders are not listed
        if any(s in ("", ".", "..") for s in segments):
            return BAD_REQUEST
        if not segments:
            return NOT_FOUND
        # The folder as it is now (a "current -> release-N" symlink may have moved).
        root = os.path.realpath(folder)
        names = [os.fsdecode(s.encode("latin-1")) for s in segments]
        real = os.path.realpath(os.path.join(root, *names))
        if not real.startswith(root.rstrip(os.sep) + os.sep):
            return NOT_FOUND  # a symlink out of the folder
    try:
        info = os.stat(real)
    except (OSError, ValueError):
        return NOT_FOUND
    if not stat.S_ISREG(info.st_mode):
        return NOT_FOUND  # folders are not listed; devices and pipes are not served
    return Found(real, info.st_size, info.st_mtime_ns)


def open_found(found: Found) -> int:
    """A descriptor of the file :func:`locate` found, or -1 when it is no longer that
    regular file (swapped for a symlink, a pipe or a folder since): opened without
    following a final symlink and without blocking, then checked."""
    try:
        fd = os.open(found.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return -1
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return -1


# --------------------------------------------------------------------------------------
# Conditions and ranges
# --------------------------------------------------------------------------------------


def _tags(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def _weak_match(tags: list[str], etag: str) -> bool:
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def _date(value: str) -> int | None:
    """An HTTP date as whole seconds since the epoch (None: not a date)."""
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def condition(found: Found, headers: dict[str, str], method: str) -> str | None:
    """The status the request's conditions give (412 or 304), or None: go on."""
    seconds = found.mtime_ns // 1_000_000_000
    if_match = headers.get("if-match")
    if if_match is not None:
        tags = _tags(if_match)
        if "*" not in tags and found.etag not in tags:  # strong comparison
            return "412 Precondition Failed"
    else:
        since = headers.get("if-unmodified-since")
        when = _date(since) if since is not None else None
        if when is not None and seconds > when:
            return "412 Precondition Failed"
    if_none = headers.get("if-none-match")
    if if_none is not None:
        if _weak_match(_tags(if_none), found.etag):
            return "304 Not Modified" if method in ("GET", "HEAD") else "412 Precondition Failed"
        return None
    if method in ("GET", "HEAD"):
        since = headers.get("if-modified-since")
        when = _date(since) if since is not None else None
        if when is not None and seconds <= when:
            return "304 Not Modified"
    return None


def byte_range(found: Found, headers: dict[str, str]) -> tuple[int, int] | str | None:
    """The one range of bytes asked for, as (first, count); ``"416"`` when none of it
    lies in the file; None for the whole file (no Range, several ranges, a Range that
    does not parse, or an If-Range that no longer holds)."""
    value = headers.get("range")
    if value is None:
        return None
    if_range = headers.get("if-range")
    if if_range is not None:
        if if_range.startswith(('"', 'W/"')):
            if if_range != found.etag:
                return None
        elif _date(if_range) != found.mtime_ns // 1_000_000_000:
            return None
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash:
        return None
    first_text, last_text = first_text.strip(), last_text.strip()
    if not all(t.isascii() and t.isdigit() and len(t) <= 19 for t in (first_text, last_text) if t):
        return None  # (19 digits: any file size; a longer number is no range of this file)
    size = found.size
    if not first_text:  # the last N bytes
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0:
            return "416"
        first, last = max(0, size - suffix), size - 1
    else:
        first = int(first_text)
        last = int(last_text) if last_text else max(first, size - 1)
    if last < first:
        return None  # not a range: the whole file
    if first >= size:
        return "416"
    last = min(last, size - 1)
    return first, last - first + 1
