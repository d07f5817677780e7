"""The values of directives: one argument, On/Off, a group name, option=value words, a
path from the config file's folder; and the names of the contexts. Shared by the readers
of this package.

Rule: imports nothing of the package but this package's ``model`` and ``syntax``; no
asyncio. Every error is a ``ConfigFileError`` naming the file and line.
"""

from __future__ import annotations

import os

from asyncwsgi.sites.model import EMBEDDED
from asyncwsgi.sites.syntax import Directive

# The contexts a directive may be in, as Apache names them.
SERVER = "server config"
VHOST = "virtual host"
DIRECTORY = "directory"
HTACCESS_CONTEXT = ".htaccess"


def one(d: Directive) -> str:
    if len(d.args) != 1:
        raise d.error(f"{d.name} takes one argument, not {len(d.args)}")
    return d.args[0]


def on_off(d: Directive) -> bool:
    value = one(d).lower()
    if value not in ("on", "off"):
        raise d.error(f"{d.name} takes On or Off, not {d.args[0]!r}")
    return value == "on"


def callable_name(d: Directive) -> str:
    value = one(d)
    if not value.isidentifier():
        raise d.error(f"{d.name}: {value!r} is not a Python identifier")
    return value


def group_name(d: Directive, value: str) -> str:
    if value == "%{GLOBAL}":
        return EMBEDDED
    if value.startswith("%{"):
        raise d.error(f"{d.name}: {value!r}: only %{{GLOBAL}} is understood")
    if not value or any(c.isspace() or c == "/" for c in value) or not value.isprintable():
        raise d.error(f"{d.name}: {value!r} is not a usable process group name")
    return value


def path(root: str, value: str) -> str:
    return os.path.normpath(os.path.join(root, os.path.expanduser(value)))


def options(d: Directive, words: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise d.error(f"{d.name}: {word!r} is not an option=value pair")
        key = key.lower()
        if key in found:
            raise d.error(f"{d.name}: option {key} given twice")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]  # lang='en_US.UTF-8', as mod_wsgi's documentation writes it
        found[key] = value
    return found
