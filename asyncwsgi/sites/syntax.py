"""Apache httpd's config file syntax: lines, words, sections and ``Include``.

Rule: imports nothing of the package but ``errors``, and no asyncio. Every error is a
``ConfigFileError`` whose message starts with ``FILE:LINE:``.

Lines are read as Apache reads them: a backslash at the very end of a line continues it, a
line whose first non-blank character is ``#`` is a comment, arguments are split on blanks
and may be quoted with ``"`` or ``'`` (``\\"`` inside a quoted argument is a quote),
directive names are not case sensitive. ``Include``/``IncludeOptional`` take a file, a
folder (read in name order) or a wildcard; relative paths are taken from the main file's
folder (Apache's ServerRoot). What the directives mean is :mod:`asyncwsgi.sites.directives`'
business.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass

from asyncwsgi.errors import ConfigFileError

# The names <IfModule> knows mod_wsgi and mod_alias (Alias: static files) by; any other
# module is taken as absent.
WSGI_MODULE_NAMES = ("mod_wsgi.c", "wsgi_module", "mod_wsgi")
PRESENT_MODULES = (*WSGI_MODULE_NAMES, "mod_alias.c", "alias_module", "mod_alias")
_MAX_INCLUDE_DEPTH = 16


@dataclass(slots=True)
class Directive:
    """One directive, or a section with the directives inside it."""

    name: str  # as written
    args: list[str]
    file: str
    line: int
    children: list[Directive] | None = None  # a section's body

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def origin(self) -> str:
        return f"{self.file}:{self.line}"

    def error(self, message: str) -> ConfigFileError:
        return ConfigFileError(f"{self.origin}: {message}")


# --------------------------------------------------------------------------------------
# Lines and words
# --------------------------------------------------------------------------------------


def split_words(text: str) -> list[str]:
    """Split a directive's arguments as Apache does: blanks separate, ``"`` or ``'``
    quote; a backslash escapes a backslash, and inside quotes also the quote character.
    Raises ``ValueError`` for a quote that is not closed."""
    words: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return words
        quote = text[i] if text[i] in "\"'" else ""
        if quote:
            i += 1
        chunk: list[str] = []
        while i < n and (text[i] != quote if quote else text[i] not in " \t"):
            if text[i] == "\\" and i + 1 < n and text[i + 1] in ("\\", quote or "\\"):
                i += 1
            chunk.append(text[i])
            i += 1
        if quote:
            if i >= n:
                raise ValueError(f"no closing {quote} in {text.strip()!r}")
            i += 1
        words.append("".join(chunk))


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each line that is not blank or a comment, with
    continued lines joined."""
    physical = text.splitlines()
    i = 0
    while i < len(physical):
        number = i + 1
        line = physical[i]
        i += 1
        # A backslash at the very end continues the line; an escaped one does not.
        while line.endswith("\\") and not line.endswith("\\\\") and i < len(physical):
            line = line[:-1] + physical[i]
            i += 1
        line = line.strip()
        if line and not line.startswith("#"):
            yield number, line


def parse_text(text: str, file: str) -> list[Directive]:
    """The directives of one file, sections nested; ``Include`` is not followed here."""
    top: list[Directive] = []
    stack: list[tuple[Directive, list[Directive]]] = []
    for number, line in logical_lines(text):
        body = stack[-1][1] if stack else top
        where = f"{file}:{number}"
        if line.startswith("</"):
            if not line.endswith(">"):
                raise ConfigFileError(f"{where}: {line!r}: a closing tag ends with '>'")
            name = line[2:-1].strip()
            if not stack:
                raise ConfigFileError(f"{where}: </{name}> without a matching <{name}> section")
            opened, _ = stack.pop()
            if name.lower() != opened.key:
                raise ConfigFileError(
                    f"{where}: </{name}> closes <{opened.name}>, opened at {opened.origin}"
                )
            continue
        if line.startswith("<"):
            if not line.endswith(">"):
                raise ConfigFileError(f"{where}: {line!r}: a section tag ends with '>'")
            inner = line[1:-1].strip()
            name, _, rest = inner.partition(" ")
            if "\t" in name:
                name, _, more = name.partition("\t")
                rest = more + " " + rest
            try:
                args = split_words(rest)
            except ValueError as exc:
                raise ConfigFileError(f"{where}: {exc}") from None
            section = Directive(name, args, file, number, [])
            body.append(section)
            assert section.children is not None
            stack.append((section, section.children))
            continue
        name = line.replace("\t", " ").partition(" ")[0]
        try:
            args = split_words(line[len(name) :])
        except ValueError as exc:
            raise ConfigFileError(f"{where}: {exc}") from None
        body.append(Directive(name, args, file, number))
    if stack:
        opened, _ = stack[-1]
        raise ConfigFileError(f"{opened.origin}: <{opened.name}> has no </{opened.name}>")
    return top


def read_file(path: str, *, root: str, display: str, depth: int = 0) -> list[Directive]:
    """Parse one file and the files it includes, in place of their Include lines."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigFileError(f"{display}: cannot read: {reason}") from None
    return _expand(parse_text(text, display), root, depth)


def _expand(directives: list[Directive], root: str, depth: int) -> list[Directive]:
    result: list[Directive] = []
    for d in directives:
        if d.key in ("include", "includeoptional"):
            result += _include(d, root, depth)
            continue
        # The body of an <IfModule> that does not hold is skipped unread, Includes too.
        if d.children is not None and (d.key != "ifmodule" or ifmodule_holds(d) is not False):
            d.children = _expand(d.children, root, depth)
        result.append(d)
    return result


def ifmodule_holds(d: Directive) -> bool | None:
    """Whether an <IfModule> section's body is read (None: malformed, reported later)."""
    if len(d.args) != 1:
        return None
    name = d.args[0]
    wanted = not name.startswith("!")
    return (name.lstrip("!").lower() in PRESENT_MODULES) == wanted


def _include(d: Directive, root: str, depth: int) -> list[Directive]:
    if len(d.args) != 1:
        raise d.error(f"{d.name} takes one file, folder or wildcard pattern")
    if depth >= _MAX_INCLUDE_DEPTH:
        raise d.error(f"{d.name}: files include each other more than {depth} deep (a loop?)")
    pattern = os.path.join(root, d.args[0])
    optional = d.key == "includeoptional"
    if glob.has_magic(pattern):
        paths = sorted(glob.glob(pattern))
        if not paths and not optional:
            raise d.error(f"Include: no file matches {d.args[0]!r} (IncludeOptional allows that)")
    elif os.path.exists(pattern):
        paths = [pattern]
    elif optional:
        paths = []
    else:
        raise d.error(f"Include: no such file or folder {d.args[0]!r}")
    found: list[Directive] = []
    for path in paths:
        found += _read_tree(path, root, depth + 1)
    return found


def _read_tree(path: str, root: str, depth: int) -> list[Directive]:
    """A file, or every file below a folder: its entries sorted by name, files and
    folders together, as Apache reads them."""
    if not os.path.isdir(path):
        return read_file(path, root=root, display=path, depth=depth)
    found: list[Directive] = []
    for name in sorted(os.listdir(path)):
        found += _read_tree(os.path.join(path, name), root, depth)
    return found
